package embedded

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// itemCache keeps decoded items so that reads of recent items, the hot path
// of retrieve, skip JSON decoding. An item never changes once stored under
// its cursor, so entries never go stale; they are evicted oldest-inserted
// first when a shard exceeds its share of the byte budget. Items go in when
// appended and when read.
type itemCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
}

const cacheShards = 32

// defaultCacheBytes is the approximate memory the cache may hold.
const defaultCacheBytes = 64 << 20

type cacheKey struct {
	topic  string
	cursor feed.Cursor
}

type cacheShard struct {
	mu     sync.RWMutex
	items  map[cacheKey]feed.Item
	order  []cacheKey // insertion order, for eviction
	head   int        // first live element of order
	size   int
	budget int
}

func (c *itemCache) init(budget int) {
	c.seed = maphash.MakeSeed()
	for i := range c.shards {
		c.shards[i].items = make(map[cacheKey]feed.Item)
		c.shards[i].budget = budget / cacheShards
	}
}

func (c *itemCache) shard(k cacheKey) *cacheShard {
	var h maphash.Hash
	h.SetSeed(c.seed)
	_, _ = h.WriteString(k.topic)
	var b [8]byte
	for i := range b {
		b[i] = byte(k.cursor >> (8 * i))
	}
	_, _ = h.Write(b[:])
	return &c.shards[h.Sum64()%cacheShards]
}

// get returns a private copy of the cached item.
func (c *itemCache) get(topic string, cursor feed.Cursor) (feed.Item, bool) {
	k := cacheKey{topic, cursor}
	s := c.shard(k)
	s.mu.RLock()
	it, ok := s.items[k]
	s.mu.RUnlock()
	if !ok {
		return feed.Item{}, false
	}
	return cloneItem(it), true
}

// put caches a private copy of the item under its cursor.
func (c *itemCache) put(topic string, it feed.Item) {
	k := cacheKey{topic, it.Cursor}
	n := it.MemSize()
	s := c.shard(k)
	if n > s.budget/4 {
		return // too big to be worth it
	}
	it = cloneItem(it)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[k]; ok {
		return
	}
	s.items[k] = it
	s.order = append(s.order, k)
	s.size += n
	for s.size > s.budget && s.head < len(s.order) {
		old := s.order[s.head]
		s.order[s.head] = cacheKey{}
		s.head++
		if v, ok := s.items[old]; ok {
			s.size -= v.MemSize()
			delete(s.items, old)
		}
	}
	if s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
}

// cloneItem copies what an item points to, so that a caller changing its
// copy cannot change the cache's.
func cloneItem(it feed.Item) feed.Item {
	if it.StandardLinks != nil {
		l := *it.StandardLinks
		l.Alternate, l.Self, l.Hub = slices.Clone(l.Alternate), slices.Clone(l.Self), slices.Clone(l.Hub)
		it.StandardLinks = &l
	}
	if it.Actor != nil {
		a := *it.Actor
		it.Actor = &a
	}
	it.Categories = slices.Clone(it.Categories)
	return it
}

// stateCache keeps decoded topic states, keyed by topic and checked
// against the stored bytes, so a read that finds the bytes it decoded last
// time skips decoding them again.
type stateCache struct {
	mu  sync.RWMutex
	m   map[string]stateEntry
	max int
}

type stateEntry struct {
	raw string
	ts  store.TopicState
}

// maxCachedStates bounds stateCache.
const maxCachedStates = 10000

func (c *stateCache) init(max int) {
	c.m = make(map[string]stateEntry)
	c.max = max
}

// decode sets *ts from v, the stored state of topic (nil: none).
func (c *stateCache) decode(topic string, v []byte, ts *store.TopicState) error {
	*ts = store.TopicState{Topic: topic}
	if v == nil {
		return nil
	}
	c.mu.RLock()
	e, ok := c.m[topic]
	c.mu.RUnlock()
	if ok && e.raw == string(v) {
		*ts = cloneState(e.ts)
		return nil
	}
	if err := json.Unmarshal(v, ts); err != nil {
		*ts = store.TopicState{Topic: topic}
		return fmt.Errorf("embedded store: state of topic %q is corrupt: %w", topic, err)
	}
	ts.Topic = topic
	c.mu.Lock()
	if len(c.m) >= c.max {
		for k := range c.m { // drop an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[topic] = stateEntry{raw: string(v), ts: cloneState(*ts)}
	c.mu.Unlock()
	return nil
}

func cloneState(ts store.TopicState) store.TopicState {
	if l := ts.Meta.StandardLinks; l != nil {
		c := *l
		c.Alternate, c.Self, c.Hub = slices.Clone(c.Alternate), slices.Clone(c.Self), slices.Clone(c.Hub)
		ts.Meta.StandardLinks = &c
	}
	return ts
}
