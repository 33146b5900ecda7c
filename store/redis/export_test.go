package redisstore

import (
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// SetHealthInterval shortens the pub/sub health check for a test and
// returns a function restoring it.
func SetHealthInterval(d time.Duration) (restore func()) {
	old := healthInterval
	healthInterval = d
	return func() { healthInterval = old }
}

// SetQueueLimits shrinks listener queues for a test and returns a function
// restoring them.
func SetQueueLimits(batches, bytes int) (restore func()) {
	ob, oy := maxQueuedBatches, maxQueuedBytes
	maxQueuedBatches, maxQueuedBytes = batches, bytes
	return func() { maxQueuedBatches, maxQueuedBytes = ob, oy }
}

// Decode exposes the item codec to fuzzing.
var (
	EncodeItem = encodeItem
	DecodeItem = decodeItem
)

// DecodeLive exposes the live payload decoder: the topic, the raw state and
// the items.
func DecodeLive(payload string) (topic, state string, items []feed.Item, err error) {
	m, err := decodeLive(payload)
	return m.topic, m.state, m.items, err
}

// ItemsKey is the stream key of a topic.
func ItemsKey(s *Store, topic string) string { return s.keysOf(topic).items }

// SetDedupMemory changes how many stored items the dedup memory of s
// reaches back.
func SetDedupMemory(s *Store, n int) { s.keep = n }

// IDsKey is the dedup hash key of a topic.
func IDsKey(s *Store, topic string) string { return s.keysOf(topic).ids }

// Received is how many announcements the listener has read from its link.
func Received(l store.Listener) int64 { return l.(*listener).received.Load() }
