package ingest

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/tracing"
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
	_, span := tracing.Start(ctx, "feed.parse", tracing.Topic(topic), attribute.Int("feedgate.bytes", len(body)), attribute.String("feedgate.source", source))
	doc, perr := feed.ParseWithBase(body, contentType, topic)
	if perr == nil {
		span.SetAttributes(attribute.Int("feedgate.entries", len(doc.Items)))
	}
	tracing.Fail(span, perr)
	span.End()
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
	ctx, span := tracing.Start(ctx, "store.append", tracing.Topic(topic), attribute.Int("feedgate.entries", len(doc.Items)))
	defer span.End()
	// Recorded before the append: the live hub may fan the items out
	// before Append returns.
	appended := tracing.Appending(ctx, topic)
	items, err := s.st.Append(ctx, topic, doc.Items)
	var first, last feed.Cursor
	if len(items) > 0 {
		first, last = items[0].Cursor, items[0].Cursor
		for _, it := range items {
			first, last = min(first, it.Cursor), max(last, it.Cursor)
		}
		span.SetAttributes(tracing.Cursors(first, last)...)
	}
	appended(first, last)
	span.SetAttributes(attribute.Int("feedgate.stored", len(items)))
	tracing.Fail(span, err)
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
