package redisstore

import (
	"sync"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// metaCacheSize bounds the decoded topic states kept; when full, the cache
// starts over.
const metaCacheSize = 4096

// metaCache remembers the decoded form of each topic's stored state, keyed
// by the exact JSON it came from: reads of a hot topic skip the JSON
// decoding while the state is unchanged, and a changed state is decoded
// afresh (the JSON differs), so the cache is never stale.
type metaCache struct {
	mu sync.RWMutex
	m  map[string]metaEntry
}

type metaEntry struct {
	raw string
	ts  store.TopicState
}

func (c *metaCache) decode(topic, raw string) (store.TopicState, error) {
	c.mu.RLock()
	e, ok := c.m[topic]
	c.mu.RUnlock()
	if ok && e.raw == raw {
		return copyState(e.ts), nil
	}
	ts, err := decodeTopicState(topic, raw)
	if err != nil {
		return store.TopicState{}, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= metaCacheSize {
		c.m = make(map[string]metaEntry)
	}
	c.m[topic] = metaEntry{raw: raw, ts: ts}
	c.mu.Unlock()
	return copyState(ts), nil
}

// copyState copies what a TopicState holds by reference, so that callers
// may change what they get.
func copyState(ts store.TopicState) store.TopicState {
	if l := ts.Meta.StandardLinks; l != nil {
		ts.Meta.StandardLinks = &feed.Links{
			Alternate: append([]feed.Link(nil), l.Alternate...),
			Self:      append([]feed.Link(nil), l.Self...),
			Hub:       append([]feed.Link(nil), l.Hub...),
		}
	}
	return ts
}
