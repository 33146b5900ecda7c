package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// Sources of stored documents (metrics label, status wording).
const (
	sourcePoll    = "poll"
	sourcePush    = "push"
	sourcePublish = "publish"
)

// StoreFeed parses a feed document and stores its new entries in topic, the
// one store path of fat pings, hub content and fetches. It returns the items
// stored (none when every entry was already stored). A body that does not
// parse stores nothing, is recorded in the topic's status, and returns an
// error wrapping feed.ErrNotFeed.
func (s *Service) StoreFeed(ctx context.Context, topic string, body []byte, contentType string) ([]feed.Item, error) {
	res, err := s.storeDocument(ctx, topic, body, contentType, sourcePublish)
	return res.stored, err
}

// stored is the outcome of storeDocument.
type stored struct {
	doc    *feed.Document
	stored []feed.Item
}

// storeDocument parses and appends; the status records the parse time and
// the feed's metadata, or why the document did not parse. For polls the
// caller updates the status itself (with the fetch's outcome).
func (s *Service) storeDocument(ctx context.Context, topic string, body []byte, contentType, source string) (res stored, err error) {
	doc, perr := feed.ParseWithBase(body, contentType, topic)
	now := time.Now()
	if perr != nil {
		if source != sourcePoll {
			msg := fmt.Sprintf("%s content discarded: %v", sourceName(source), perr)
			if uerr := s.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error {
				ts.Topic = topic
				ts.Status.Feed = topic
				ts.Status.HTTP = msg
				return nil
			}); uerr != nil {
				s.log.LogAttrs(ctx, slogWarn, "recording a parse failure", attrTopic(topic), attrErr(uerr))
			}
		}
		return res, perr
	}
	res.doc = doc
	if source != sourcePoll && s.firstDocument(topic) {
		// The feed's title and metadata go in before its first items, so
		// that the notification announcing them (which reads the topic's
		// state) names the feed. Later documents update them after. (A
		// poll's state is written by the scheduler, which knows whether
		// the topic is still tracked.)
		if err := s.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error {
			ts.Topic = topic
			applyMeta(ts, doc, now)
			return nil
		}); err != nil {
			s.log.LogAttrs(ctx, slogWarn, "storing the feed's metadata", attrTopic(topic), attrErr(err))
		}
	}
	items, err := s.st.Append(ctx, topic, doc.Items)
	if err != nil {
		return res, errorf(err, "storing the entries of %s", topic)
	}
	res.stored = items
	s.m.itemsStored.WithLabelValues(source).Add(float64(len(items)))
	if source == sourcePoll {
		return res, nil
	}
	msg := fmt.Sprintf("%s: %s", sourceName(source), entriesSummary(len(doc.Items), len(items)))
	if err := s.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error {
		ts.Topic = topic
		applyMeta(ts, doc, now)
		ts.Status.HTTP = msg
		return nil
	}); err != nil {
		// The items are stored; a stale status is not worth failing for.
		s.log.LogAttrs(ctx, slogWarn, "updating the status", attrTopic(topic), attrErr(err))
	}
	return res, nil
}

// maxMetaWritten bounds the topics remembered by firstDocument; past it the
// set starts over (which costs one more metadata write per topic).
const maxMetaWritten = 100_000

// firstDocument reports whether topic has had no document stored by this
// node yet, and remembers it.
func (s *Service) firstDocument(topic string) bool {
	s.metaMu.Lock()
	defer s.metaMu.Unlock()
	if _, ok := s.metaWritten[topic]; ok {
		return false
	}
	if len(s.metaWritten) >= maxMetaWritten {
		clear(s.metaWritten)
	}
	s.metaWritten[topic] = struct{}{}
	return true
}

// applyMeta records a parsed document's metadata in the topic state.
func applyMeta(ts *store.TopicState, doc *feed.Document, now time.Time) {
	ts.Meta = doc.Meta
	ts.Status.Feed = ts.Topic
	ts.Status.Title = doc.Meta.Title
	ts.Status.LastParse = now.Unix()
}

func sourceName(source string) string {
	switch source {
	case sourcePush:
		return "pushed by the hub"
	case sourcePublish:
		return "published"
	}
	return "fetched"
}

func entriesSummary(parsed, stored int) string {
	plural := "entries"
	if parsed == 1 {
		plural = "entry"
	}
	return fmt.Sprintf("%d %s parsed, %d new", parsed, plural, stored)
}
