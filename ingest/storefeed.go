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
// one store path of fat pings and hub content. It returns the items stored
// (none when every entry was already stored). A body that does not parse
// stores nothing, is recorded in the topic's status, and returns an error
// wrapping feed.ErrNotFeed.
func (s *Service) StoreFeed(ctx context.Context, topic string, body []byte, contentType string) ([]feed.Item, error) {
	return s.storeDocument(ctx, topic, body, contentType, sourcePublish)
}

// storeDocument parses a pushed or published document, records the feed's
// metadata and the status of this document, then appends the entries.
//
// The status goes in first: a store announces an append with the topic's
// state as it stands at that append, so every notification carries the
// status of the document that brought its items. (It therefore says how
// many entries were parsed, not how many were new.)
func (s *Service) storeDocument(ctx context.Context, topic string, body []byte, contentType, source string) ([]feed.Item, error) {
	doc, perr := feed.ParseWithBase(body, contentType, topic)
	now := time.Now()
	if perr != nil {
		msg := fmt.Sprintf("%s content discarded: %v", sourceName(source), perr)
		if uerr := s.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error {
			ts.Topic = topic
			ts.Status.Feed = topic
			ts.Status.HTTP = msg
			return nil
		}); uerr != nil {
			s.log.LogAttrs(ctx, slogWarn, "recording a parse failure", attrTopic(topic), attrErr(uerr))
		}
		return nil, perr
	}
	msg := fmt.Sprintf("%s: %s", sourceName(source), parsedSummary(len(doc.Items)))
	if err := s.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error {
		ts.Topic = topic
		applyMeta(ts, doc, now)
		ts.Status.HTTP = msg
		return nil
	}); err != nil {
		// The entries matter more than a stale status.
		s.log.LogAttrs(ctx, slogWarn, "updating the status", attrTopic(topic), attrErr(err))
	}
	return s.appendDocument(ctx, topic, doc, source)
}

// appendDocument stores a parsed document's entries.
func (s *Service) appendDocument(ctx context.Context, topic string, doc *feed.Document, source string) ([]feed.Item, error) {
	items, err := s.st.Append(ctx, topic, doc.Items)
	if err != nil {
		return nil, errorf(err, "storing the entries of %s", topic)
	}
	s.m.itemsStored.WithLabelValues(source).Add(float64(len(items)))
	return items, nil
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

func parsedSummary(parsed int) string {
	if parsed == 1 {
		return "1 entry parsed"
	}
	return fmt.Sprintf("%d entries parsed", parsed)
}
