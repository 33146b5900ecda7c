package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

// Webhook deliveries (store.DeliveryStore) live in buckets of their own:
//
//	deliveries/<topic,callback,login>  store.Delivery as JSON
//	dlvTopics/<topic>                  number of deliveries of the topic
//	dlvJobs, dlvDue                    the delivery timetable (see
//	                                   timetable.go); a job is named by
//	                                   its record's key
//
// The key order lists a topic's deliveries together, by callback then
// login; the job timetable is separate from ingest's.
var (
	bucketDeliveries = []byte("deliveries")
	bucketDlvTopics  = []byte("dlvTopics")
	bucketDlvJobs    = []byte("dlvJobs")
	bucketDlvDue     = []byte("dlvDue")
)

var _ store.DeliveryStore = (*Store)(nil)

func (s *Store) deliveryJobs() *timetable {
	return &timetable{s: s, jobs: bucketDlvJobs, due: bucketDlvDue}
}

func deliveryKey(k store.DeliveryKey) []byte { return tupleKey(k.Topic, k.Callback, k.Login) }

func checkDeliveryKey(k store.DeliveryKey) error {
	for _, p := range []struct{ what, v string }{{"login", k.Login}, {"topic", k.Topic}, {"callback", k.Callback}} {
		if err := checkName(p.what, p.v); err != nil {
			return fmt.Errorf("embedded store: delivery: %w", err)
		}
	}
	return nil
}

// dlvBuckets are the delivery buckets inside a write transaction.
type dlvBuckets struct {
	recs, topics *bolt.Bucket
	jobs
}

func (s *Store) openDeliveries(tx *bolt.Tx) (b dlvBuckets, err error) {
	if b.recs, err = createBucket(tx, bucketDeliveries); err != nil {
		return b, err
	}
	if b.topics, err = createBucket(tx, bucketDlvTopics); err != nil {
		return b, err
	}
	b.jobs, err = s.deliveryJobs().open(tx)
	return b, err
}

func decodeDelivery(v []byte) (store.Delivery, error) {
	var d store.Delivery
	if err := json.Unmarshal(v, &d); err != nil {
		return d, fmt.Errorf("embedded store: a delivery record is corrupt: %w", err)
	}
	return d, nil
}

func (b dlvBuckets) addTopic(topic string, delta int64) error {
	n := int64(countOf(b.topics.Get([]byte(topic)))) + delta
	if n <= 0 {
		return b.topics.Delete([]byte(topic))
	}
	return b.topics.Put([]byte(topic), countValue(uint64(n)))
}

// PutDelivery implements store.DeliveryStore.
func (s *Store) PutDelivery(ctx context.Context, d store.Delivery, due time.Time) (store.Delivery, bool, error) {
	if err := checkDeliveryKey(d.DeliveryKey); err != nil {
		return d, false, err
	}
	rk := deliveryKey(d.DeliveryKey)
	var stored store.Delivery
	created := false
	err := s.write(ctx, func(tx *bolt.Tx) error {
		created = false
		b, err := s.openDeliveries(tx)
		if err != nil {
			return err
		}
		stored = d
		if v := b.recs.Get(rk); v != nil {
			old, err := decodeDelivery(v)
			if err != nil {
				return err
			}
			stored.CreatedAt, stored.Progress = old.CreatedAt, old.Progress
		} else {
			created = true
			if err := b.addTopic(d.Topic, 1); err != nil {
				return err
			}
		}
		v, err := json.Marshal(stored)
		if err != nil {
			return fmt.Errorf("embedded store: cannot encode delivery: %w", err)
		}
		if err := b.recs.Put(rk, v); err != nil {
			return err
		}
		if !due.IsZero() {
			// A renewal may cut a back-off short.
			_, err := b.schedule(rk, ms(due), store.Override)
			return err
		}
		return nil
	}, nil)
	if err != nil {
		return d, false, err
	}
	return stored, created, nil
}

// Delivery implements store.DeliveryStore.
func (s *Store) Delivery(ctx context.Context, k store.DeliveryKey) (store.Delivery, error) {
	var d store.Delivery
	found := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := bucket(tx, bucketDeliveries)
		if b == nil || checkDeliveryKey(k) != nil {
			return nil
		}
		v := b.Get(deliveryKey(k))
		if v == nil {
			return nil
		}
		found = true
		var err error
		d, err = decodeDelivery(v)
		return err
	})
	if err != nil {
		return store.Delivery{}, err
	}
	if !found {
		return store.Delivery{}, fmt.Errorf("embedded store: delivery of %s to %s: %w", k.Topic, k.Callback, store.ErrNotFound)
	}
	return d, nil
}

// DeleteDelivery implements store.DeliveryStore.
func (s *Store) DeleteDelivery(ctx context.Context, k store.DeliveryKey) (bool, error) {
	if checkDeliveryKey(k) != nil {
		return false, nil
	}
	rk := deliveryKey(k)
	found := false
	err := s.write(ctx, func(tx *bolt.Tx) error {
		found = false
		b, err := s.openDeliveries(tx)
		if err != nil {
			return err
		}
		if b.recs.Get(rk) == nil {
			return nil
		}
		found = true
		if err := b.recs.Delete(rk); err != nil {
			return err
		}
		if err := b.addTopic(k.Topic, -1); err != nil {
			return err
		}
		return b.remove(rk)
	}, nil)
	return found, err
}

// TopicDeliveries implements store.DeliveryStore.
func (s *Store) TopicDeliveries(ctx context.Context, topic string) ([]store.Delivery, error) {
	var out []store.Delivery
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := bucket(tx, bucketDeliveries)
		if b == nil || topic == "" {
			return nil
		}
		return scanPrefix(b, tupleKey(topic), func(_, v []byte) (bool, error) {
			d, err := decodeDelivery(v)
			if err != nil {
				return false, err
			}
			out = append(out, d)
			return true, nil
		})
	})
	return out, err
}

// DeliveryTopics implements store.DeliveryStore.
func (s *Store) DeliveryTopics(ctx context.Context) ([]string, error) {
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := bucket(tx, bucketDlvTopics)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// ScheduleDeliveries implements store.DeliveryStore.
func (s *Store) ScheduleDeliveries(ctx context.Context, topic string, at time.Time) (int, error) {
	if topic == "" || len(topic) > maxNameLen {
		return 0, nil
	}
	n := 0
	err := s.write(ctx, func(tx *bolt.Tx) error {
		n = 0
		if bucket(tx, bucketDeliveries) == nil {
			return nil
		}
		b, err := s.openDeliveries(tx)
		if err != nil {
			return err
		}
		prefix := tupleKey(topic)
		var keys [][]byte
		if err := scanPrefix(b.recs, prefix, func(k, _ []byte) (bool, error) {
			keys = append(keys, bytes.Clone(k))
			return true, nil
		}); err != nil {
			return err
		}
		for _, rk := range keys {
			if _, err := b.schedule(rk, ms(at), store.Earlier); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	}, nil)
	return n, err
}

// ClaimDeliveries implements store.DeliveryStore.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.DeliveryClaim, error) {
	if max <= 0 {
		return nil, nil
	}
	token := newToken()
	until := ms(now.Add(lease))
	var claims []store.DeliveryClaim
	err := s.write(ctx, func(tx *bolt.Tx) error {
		claims = claims[:0]
		if bucket(tx, bucketDlvDue) == nil {
			return nil
		}
		b, err := s.openDeliveries(tx)
		if err != nil {
			return err
		}
		// A job without its record is dropped.
		cs, err := b.claim(ms(now), until, max, token, func(rk []byte) bool { return b.recs.Get(rk) != nil })
		if err != nil {
			return err
		}
		for _, c := range cs {
			d, err := decodeDelivery(b.recs.Get(c.job))
			if err != nil {
				return err
			}
			claims = append(claims, store.DeliveryClaim{
				Claim:    store.Claim{Job: string(c.job), Token: token, Until: time.UnixMilli(until), Retaken: c.retaken},
				Delivery: d,
			})
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// ReleaseDelivery implements store.DeliveryStore.
func (s *Store) ReleaseDelivery(ctx context.Context, c store.DeliveryClaim, p store.DeliveryProgress, next time.Time) error {
	k := c.Delivery.DeliveryKey
	if checkDeliveryKey(k) != nil {
		return store.ErrLeaseLost
	}
	rk := deliveryKey(k)
	lost := false
	err := s.write(ctx, func(tx *bolt.Tx) error {
		lost = false
		b, err := s.openDeliveries(tx)
		if err != nil {
			return err
		}
		held, err := b.held(rk, c.Token)
		if err != nil {
			return err
		}
		v := b.recs.Get(rk)
		if !held || v == nil {
			lost = true
			return nil
		}
		d, err := decodeDelivery(v)
		if err != nil {
			return err
		}
		d.Progress = p
		if v, err = json.Marshal(d); err != nil {
			return fmt.Errorf("embedded store: cannot encode delivery: %w", err)
		}
		if err := b.recs.Put(rk, v); err != nil {
			return err
		}
		var n int64
		if !next.IsZero() {
			n = ms(next)
		}
		return b.release(rk, n, p.Attempts > 0)
	}, nil)
	if err != nil {
		return err
	}
	if lost {
		return fmt.Errorf("embedded store: delivery of %s to %s: %w", k.Topic, k.Callback, store.ErrLeaseLost)
	}
	return nil
}

// DeliveryStats implements store.DeliveryStore.
func (s *Store) DeliveryStats(ctx context.Context, now time.Time) (store.DeliveryStats, error) {
	var st store.DeliveryStats
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if b := bucket(tx, bucketDeliveries); b != nil {
			st.Deliveries = b.Stats().KeyN
		}
		j, ok := s.deliveryJobs().read(tx)
		if !ok {
			return nil
		}
		ts, err := j.stats(ms(now))
		st.Due, st.Leased = ts.Due, ts.Leased
		return err
	})
	return st, err
}
