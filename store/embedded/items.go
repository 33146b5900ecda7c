package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// record is how an item is kept: the item (its cursor is the key) and the
// content hash, which feed.Item does not render.
type record struct {
	Item feed.Item `json:"item"`
	Hash string    `json:"hash,omitempty"`
}

func encodeItem(it feed.Item) ([]byte, error) {
	it.Cursor = 0
	return json.Marshal(record{Item: it, Hash: it.Hash})
}

func decodeItem(k, v []byte) (feed.Item, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return feed.Item{}, fmt.Errorf("embedded store: item %d is corrupt: %w", keyCursor(k), err)
	}
	r.Item.Cursor = keyCursor(k)
	r.Item.Hash = r.Hash
	return r.Item, nil
}

// pending is an item prepared for the writer outside its transaction.
type pending struct {
	rec  []byte
	seen []byte
	id   []byte
}

// Append stores the items not stored before (by ID and Hash) under the
// topic's next cursors, trims the topic to the retention and, once that is
// durable, announces the stored items to listeners.
func (s *Store) Append(ctx context.Context, topic string, items []feed.Item) ([]feed.Item, error) {
	if err := checkName("topic", topic); err != nil {
		return nil, fmt.Errorf("embedded store: cannot append: %w", err)
	}
	if len(items) == 0 {
		return nil, ctx.Err()
	}
	prep := make([]pending, len(items))
	idx := make([]int, len(items)) // index in items of each prep
	for i, it := range items {
		prep[i] = pending{seen: seenKey(it.ID, it.Hash), id: idKey(it.ID)}
		idx[i] = i
	}
	// Most appends re-deliver entries already stored (a poll of an unchanged
	// feed): sort those out with a read, so that they cost no write. Seen
	// pairs are never forgotten, so what is seen now stays seen.
	err := s.view(ctx, func(tx *bolt.Tx) error {
		tb := topicBucket(tx, topic)
		if tb == nil {
			return nil
		}
		sb := tb.Bucket(bucketSeen)
		if sb == nil {
			return nil
		}
		n := 0
		for j, p := range prep {
			if sb.Get(p.seen) == nil {
				prep[n], idx[n] = p, idx[j]
				n++
			}
		}
		prep, idx = prep[:n], idx[:n]
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(prep) == 0 {
		return nil, nil
	}
	for j := range prep {
		rec, err := encodeItem(items[idx[j]])
		if err != nil {
			return nil, fmt.Errorf("embedded store: cannot encode item %q: %w", items[idx[j]].ID, err)
		}
		prep[j].rec = rec
	}
	retention := feed.Cursor(s.retention)
	var stored []feed.Item
	// The topic's state as stored in the append's transaction (it sees an
	// UpdateTopic committed before, also in the same group), announced
	// with the items.
	var stateRaw []byte
	apply := func(tx *bolt.Tx) error {
		stored = stored[:0]
		stateRaw = nil
		tb, err := tx.Bucket(bucketTopics).CreateBucketIfNotExists([]byte(topic))
		if err != nil {
			return err
		}
		var ib, sb, idb *bolt.Bucket
		for _, b := range []struct {
			name []byte
			dst  **bolt.Bucket
		}{{bucketItems, &ib}, {bucketSeen, &sb}, {bucketIDs, &idb}} {
			if *b.dst, err = tb.CreateBucketIfNotExists(b.name); err != nil {
				return err
			}
		}
		last := getCursor(tb, keyLast)
		for j, p := range prep {
			if sb.Get(p.seen) != nil {
				continue
			}
			last++
			ck := cursorKey(last)
			if err := ib.Put(ck, p.rec); err != nil {
				return err
			}
			if err := sb.Put(p.seen, ck); err != nil {
				return err
			}
			if err := idb.Put(p.id, ck); err != nil {
				return err
			}
			it := items[idx[j]]
			it.Cursor = last
			stored = append(stored, it)
		}
		if len(stored) == 0 {
			return nil
		}
		if err := tb.Put(keyLast, cursorKey(last)); err != nil {
			return err
		}
		stateRaw = bytes.Clone(tb.Get(keyState))
		if last > retention {
			keep := last - retention + 1
			c := ib.Cursor()
			for k, _ := c.First(); k != nil && keyCursor(k) < keep; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	committed := func() {
		if len(stored) == 0 {
			return
		}
		for _, it := range stored {
			s.cache.put(topic, it)
		}
		state := new(store.TopicState)
		if err := s.states.decode(topic, stateRaw, state); err != nil {
			// Announce what can be: the consumer re-reads the topic, and
			// its read reports the corrupt state.
			s.live.resync(topic)
			return
		}
		s.live.publish(topic, append([]feed.Item(nil), stored...), state)
	}
	if err := s.write(ctx, apply, committed); err != nil {
		return nil, err
	}
	if len(stored) > 0 {
		s.changes.Changed(topic)
	}
	return stored, nil
}

// Read returns a page of the topic's items, newest first.
func (s *Store) Read(ctx context.Context, topic string, q store.Query) (store.Page, error) {
	page := store.Page{Topic: store.TopicState{Topic: topic}}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		tb := topicBucket(tx, topic)
		if tb == nil {
			return nil
		}
		if err := s.states.decode(topic, tb.Get(keyState), &page.Topic); err != nil {
			return err
		}
		page.Last = getCursor(tb, keyLast)
		ib := tb.Bucket(bucketItems)
		if ib == nil || page.Last == 0 || q.Count <= 0 {
			return nil
		}
		c := ib.Cursor()
		k, _ := c.First()
		if k == nil {
			return nil
		}
		first := max(keyCursor(k), page.Last-min(page.Last, feed.Cursor(s.retention))+1)
		lo, hi, gap := window(q, first, page.Last)
		page.Gap = gap
		if lo > hi {
			return nil
		}
		page.Items = make([]feed.Item, 0, hi-lo+1)
		for k, v := c.Seek(cursorKey(hi)); k != nil; k, v = c.Prev() {
			cur := keyCursor(k)
			if cur < lo {
				break
			}
			if cur > hi {
				continue
			}
			it, ok := s.cache.get(topic, cur)
			if !ok {
				var err error
				if it, err = decodeItem(k, v); err != nil {
					return err
				}
				s.cache.put(topic, it)
			}
			page.Items = append(page.Items, it)
		}
		return nil
	})
	if err != nil {
		return store.Page{}, err
	}
	return page, nil
}

// window computes the cursors lo..hi a query reads from a topic holding
// first..last, and whether an After query skipped trimmed items.
func window(q store.Query, first, last feed.Cursor) (lo, hi feed.Cursor, gap bool) {
	n := feed.Cursor(q.Count)
	switch q.From {
	case store.After:
		if q.Cursor >= last {
			return 1, 0, false
		}
		lo = q.Cursor + 1
		if lo < first {
			lo, gap = first, true
		}
		if lo > last {
			return 1, 0, false
		}
		hi = min(last, lo+n-1)
	case store.Before:
		if q.Cursor <= first {
			return 1, 0, false
		}
		hi = min(q.Cursor-1, last)
		lo = first
		if hi >= n && hi-n+1 > first {
			lo = hi - n + 1
		}
	default:
		hi = last
		lo = first
		if last >= n && last-n+1 > first {
			lo = last - n + 1
		}
	}
	return lo, hi, gap
}

// CursorOf returns the cursor of the newest item stored with the entry id,
// also when that item has been trimmed since.
func (s *Store) CursorOf(ctx context.Context, topic, id string) (feed.Cursor, error) {
	var c feed.Cursor
	err := s.view(ctx, func(tx *bolt.Tx) error {
		tb := topicBucket(tx, topic)
		if tb == nil {
			return nil
		}
		c = getCursor(tb.Bucket(bucketIDs), idKey(id))
		return nil
	})
	if err != nil {
		return 0, err
	}
	if c == 0 {
		return 0, fmt.Errorf("embedded store: no entry %q in topic %q: %w", id, topic, store.ErrNotFound)
	}
	return c, nil
}
