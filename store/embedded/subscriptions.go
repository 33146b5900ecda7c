package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

func checkSubscription(login, topic, callback string) error {
	if err := checkName("login", login); err != nil {
		return err
	}
	if err := checkName("topic", topic); err != nil {
		return err
	}
	if len(callback) > maxNameLen {
		return fmt.Errorf("callback is %d bytes long; the limit is %d", len(callback), maxNameLen)
	}
	return nil
}

func countOf(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func countValue(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// PutSubscription stores or replaces a subscription and reports whether it
// is new. The topic becomes tracked.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription) (bool, error) {
	if err := checkSubscription(sub.Login, sub.Topic, sub.Callback); err != nil {
		return false, fmt.Errorf("embedded store: cannot store subscription: %w", err)
	}
	v, err := json.Marshal(sub)
	if err != nil {
		return false, fmt.Errorf("embedded store: cannot encode subscription: %w", err)
	}
	k := tupleKey(sub.Topic, sub.Callback, sub.Login)
	lk := tupleKey(sub.Login, sub.Topic, sub.Callback)
	created := false
	err = s.write(ctx, func(tx *bolt.Tx) error {
		subs := tx.Bucket(bucketSubs)
		created = subs.Get(k) == nil
		if err := subs.Put(k, v); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSubsByLogin).Put(lk, v); err != nil {
			return err
		}
		if !created {
			return nil
		}
		tr := tx.Bucket(bucketTracked)
		return tr.Put([]byte(sub.Topic), countValue(countOf(tr.Get([]byte(sub.Topic)))+1))
	}, nil)
	if err != nil {
		return false, err
	}
	return created, nil
}

// DeleteSubscription removes a subscription and returns how many
// subscriptions of the topic remain; an error wrapping store.ErrNotFound when
// it does not exist.
func (s *Store) DeleteSubscription(ctx context.Context, login, topic, callback string) (int, error) {
	notFound := fmt.Errorf("embedded store: no subscription of %q to %q with callback %q: %w", login, topic, callback, store.ErrNotFound)
	if checkSubscription(login, topic, callback) != nil {
		return 0, notFound
	}
	defer s.changes.Unsubscribed(login, topic)
	k := tupleKey(topic, callback, login)
	found := false
	var remaining uint64
	err := s.write(ctx, func(tx *bolt.Tx) error {
		subs := tx.Bucket(bucketSubs)
		found = subs.Get(k) != nil
		if !found {
			return nil
		}
		if err := subs.Delete(k); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSubsByLogin).Delete(tupleKey(login, topic, callback)); err != nil {
			return err
		}
		tr := tx.Bucket(bucketTracked)
		remaining = countOf(tr.Get([]byte(topic)))
		if remaining > 0 {
			remaining--
		}
		if remaining == 0 {
			return tr.Delete([]byte(topic))
		}
		return tr.Put([]byte(topic), countValue(remaining))
	}, nil)
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, notFound
	}
	return int(remaining), nil
}

func decodeSub(v []byte) (store.Subscription, error) {
	var sub store.Subscription
	if err := json.Unmarshal(v, &sub); err != nil {
		return sub, fmt.Errorf("embedded store: a subscription record is corrupt: %w", err)
	}
	return sub, nil
}

// scanPrefix calls fn for every key with the prefix, in key order, until fn
// returns false or an error.
func scanPrefix(b *bolt.Bucket, prefix []byte, fn func(k, v []byte) (bool, error)) error {
	c := b.Cursor()
	k, v := c.First()
	if len(prefix) > 0 {
		k, v = c.Seek(prefix)
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// ListSubscriptions returns a user's subscriptions (everyone's when login is
// empty) ordered by topic, callback and login, from offset, at most limit,
// and how many there are in all.
func (s *Store) ListSubscriptions(ctx context.Context, login string, offset, limit int) ([]store.Subscription, int, error) {
	offset = max(offset, 0)
	var out []store.Subscription
	total := 0
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, prefix := tx.Bucket(bucketSubs), []byte(nil)
		if login != "" {
			b, prefix = tx.Bucket(bucketSubsByLogin), tupleKey(login)
		}
		return scanPrefix(b, prefix, func(_, v []byte) (bool, error) {
			if total >= offset && len(out) < limit {
				sub, err := decodeSub(v)
				if err != nil {
					return false, err
				}
				out = append(out, sub)
			}
			total++
			return true, nil
		})
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// IsSubscribed reports whether the user has any subscription to topic.
func (s *Store) IsSubscribed(ctx context.Context, login, topic string) (bool, error) {
	found := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return scanPrefix(tx.Bucket(bucketSubsByLogin), tupleKey(login, topic), func(_, _ []byte) (bool, error) {
			found = true
			return false, nil
		})
	})
	return found, err
}

// TopicSubscriptions returns every subscription to topic, ordered by
// callback and login.
func (s *Store) TopicSubscriptions(ctx context.Context, topic string) ([]store.Subscription, error) {
	var out []store.Subscription
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return scanPrefix(tx.Bucket(bucketSubs), tupleKey(topic), func(_, v []byte) (bool, error) {
			sub, err := decodeSub(v)
			if err != nil {
				return false, err
			}
			out = append(out, sub)
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// TrackedTopics returns every topic with at least one subscription, in
// byte order.
func (s *Store) TrackedTopics(ctx context.Context) ([]string, error) {
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTracked).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
