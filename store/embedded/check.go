package embedded

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Check verifies the database: bbolt's own page checks, then feedgate's
// invariants — each topic's items are contiguous up to its last cursor and
// decode, the dedup and id indexes cover them, and the subscription indexes
// and counts agree. It reads a snapshot and may run while the store is in
// use.
func (s *Store) Check() error {
	err := s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("bbolt check: %w", errors.Join(errs...))
		}
		err := tx.Bucket(bucketTopics).ForEachBucket(func(name []byte) error {
			return checkTopic(string(name), tx.Bucket(bucketTopics).Bucket(name))
		})
		if err != nil {
			return err
		}
		return checkSubscriptions(tx)
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return errClosed
	}
	return err
}

func checkTopic(topic string, tb *bolt.Bucket) error {
	last := getCursor(tb, keyLast)
	ib, sb, idb := tb.Bucket(bucketItems), tb.Bucket(bucketSeen), tb.Bucket(bucketIDs)
	if ib == nil {
		if last != 0 {
			return fmt.Errorf("topic %q: last cursor %d but no items bucket", topic, last)
		}
		return nil
	}
	if sb == nil || idb == nil {
		return fmt.Errorf("topic %q: items without dedup or id index", topic)
	}
	var prev uint64
	n := 0
	err := ib.ForEach(func(k, v []byte) error {
		c := keyCursor(k)
		if c == 0 {
			return fmt.Errorf("topic %q: bad item key %x", topic, k)
		}
		if prev != 0 && uint64(c) != prev+1 {
			return fmt.Errorf("topic %q: cursor %d follows %d", topic, c, prev)
		}
		prev = uint64(c)
		n++
		it, err := decodeItem(k, v)
		if err != nil {
			return fmt.Errorf("topic %q: %w", topic, err)
		}
		if got := sb.Get(seenKey(it.ID, it.Hash)); !bytes.Equal(got, k) {
			return fmt.Errorf("topic %q: item %d (%q) is not in the dedup index", topic, c, it.ID)
		}
		if got := getCursor(idb, idKey(it.ID)); got < c {
			return fmt.Errorf("topic %q: id index points %q to %d, older than item %d", topic, it.ID, got, c)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n > 0 && prev != uint64(last) {
		return fmt.Errorf("topic %q: newest item is %d, last cursor %d", topic, prev, last)
	}
	if n == 0 && last != 0 {
		return fmt.Errorf("topic %q: last cursor %d but no items", topic, last)
	}
	return nil
}

func checkSubscriptions(tx *bolt.Tx) error {
	counts := map[string]uint64{}
	subs, byLogin := tx.Bucket(bucketSubs), tx.Bucket(bucketSubsByLogin)
	err := subs.ForEach(func(k, v []byte) error {
		sub, err := decodeSub(v)
		if err != nil {
			return err
		}
		if !bytes.Equal(k, tupleKey(sub.Topic, sub.Callback, sub.Login)) {
			return fmt.Errorf("subscription %q/%q/%q under a wrong key", sub.Login, sub.Topic, sub.Callback)
		}
		if !bytes.Equal(byLogin.Get(tupleKey(sub.Login, sub.Topic, sub.Callback)), v) {
			return fmt.Errorf("subscription %q/%q/%q missing from the per-login index", sub.Login, sub.Topic, sub.Callback)
		}
		counts[sub.Topic]++
		return nil
	})
	if err != nil {
		return err
	}
	if a, b := subs.Stats().KeyN, byLogin.Stats().KeyN; a != b {
		return fmt.Errorf("%d subscriptions but %d in the per-login index", a, b)
	}
	tracked := tx.Bucket(bucketTracked)
	if n := tracked.Stats().KeyN; n != len(counts) {
		return fmt.Errorf("%d tracked topics, %d topics with subscriptions", n, len(counts))
	}
	for topic, n := range counts {
		if got := countOf(tracked.Get([]byte(topic))); got != n {
			return fmt.Errorf("topic %q: tracked count %d, %d subscriptions", topic, got, n)
		}
	}
	return nil
}
