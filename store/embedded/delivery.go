package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
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
//	dlvJobs/<topic,callback,login>     dlvJob as JSON: due time and lease
//	dlvDue/<ms><topic,callback,login>  (empty): jobs by due time (for a
//	                                   leased job: when its lease ends)
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

// dlvJob is a delivery job. Times are Unix milliseconds.
type dlvJob struct {
	// Due is when the job is due; while leased, when the lease ends.
	Due int64 `json:"due"`
	// Token and Until describe the lease; Again is the earliest time
	// asked for while leased (0: none).
	Token string `json:"token,omitempty"`
	Until int64  `json:"until,omitempty"`
	Again int64  `json:"again,omitempty"`
	// Hold is the end of a back-off: ScheduleDeliveries does not make the
	// job due before it.
	Hold int64 `json:"hold,omitempty"`
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

func dlvDueKey(at int64, rk []byte) []byte {
	k := make([]byte, 8, 8+len(rk))
	binary.BigEndian.PutUint64(k, uint64(at)^(1<<63))
	return append(k, rk...)
}

type dlvBuckets struct {
	recs, topics, jobs, due *bolt.Bucket
}

func createDlvBuckets(tx *bolt.Tx) (b dlvBuckets, err error) {
	for _, p := range []struct {
		dst  **bolt.Bucket
		name []byte
	}{{&b.recs, bucketDeliveries}, {&b.topics, bucketDlvTopics}, {&b.jobs, bucketDlvJobs}, {&b.due, bucketDlvDue}} {
		if *p.dst, err = createBucket(tx, p.name); err != nil {
			return b, err
		}
	}
	return b, nil
}

func decodeDelivery(v []byte) (store.Delivery, error) {
	var d store.Delivery
	if err := json.Unmarshal(v, &d); err != nil {
		return d, fmt.Errorf("embedded store: a delivery record is corrupt: %w", err)
	}
	return d, nil
}

func (b dlvBuckets) job(rk []byte) (dlvJob, bool, error) {
	v := b.jobs.Get(rk)
	if v == nil {
		return dlvJob{}, false, nil
	}
	var j dlvJob
	if err := json.Unmarshal(v, &j); err != nil {
		return j, false, fmt.Errorf("embedded store: a delivery job is corrupt: %w", err)
	}
	return j, true, nil
}

// putJob stores j, moving its timetable entry from old (when there was one).
func (b dlvBuckets) putJob(rk []byte, j dlvJob, old *dlvJob) error {
	if old != nil {
		if err := b.due.Delete(dlvDueKey(old.Due, rk)); err != nil {
			return err
		}
	}
	v, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := b.jobs.Put(rk, v); err != nil {
		return err
	}
	return b.due.Put(dlvDueKey(j.Due, rk), nil)
}

func (b dlvBuckets) deleteJob(rk []byte) error {
	j, ok, err := b.job(rk)
	if err != nil || !ok {
		return err
	}
	if err := b.due.Delete(dlvDueKey(j.Due, rk)); err != nil {
		return err
	}
	return b.jobs.Delete(rk)
}

// schedule makes the job due no later than at (ms); with hold, not before
// the end of its back-off.
func (b dlvBuckets) schedule(rk []byte, at int64, hold bool) error {
	j, ok, err := b.job(rk)
	if err != nil {
		return err
	}
	if hold && ok && j.Token == "" && j.Hold > at {
		at = j.Hold
	}
	switch {
	case !ok:
		return b.putJob(rk, dlvJob{Due: at}, nil)
	case j.Token != "":
		if j.Again == 0 || at < j.Again {
			j.Again = at
			v, err := json.Marshal(j)
			if err != nil {
				return err
			}
			return b.jobs.Put(rk, v)
		}
		return nil
	case at < j.Due:
		old := j
		j.Due = at
		return b.putJob(rk, j, &old)
	}
	return nil
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
		b, err := createDlvBuckets(tx)
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
			return b.schedule(rk, ms(due), false)
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
		b, err := createDlvBuckets(tx)
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
		return b.deleteJob(rk)
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
		b, err := createDlvBuckets(tx)
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
			if err := b.schedule(rk, ms(at), true); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	}, nil)
	return n, err
}

// deliveryClaimScan bounds how many timetable entries one claim looks at
// beyond max.
const deliveryClaimScan = 256

// ClaimDeliveries implements store.DeliveryStore.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.DeliveryClaim, error) {
	if max <= 0 {
		return nil, nil
	}
	token := newToken()
	nowMs, until := ms(now), ms(now.Add(lease))
	var claims []store.DeliveryClaim
	err := s.write(ctx, func(tx *bolt.Tx) error {
		claims = claims[:0]
		if bucket(tx, bucketDlvDue) == nil {
			return nil
		}
		b, err := createDlvBuckets(tx)
		if err != nil {
			return err
		}
		var due [][]byte
		c := b.due.Cursor()
		for k, _ := c.First(); k != nil && len(due) < max+deliveryClaimScan; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])^(1<<63)) > nowMs {
				break
			}
			due = append(due, bytes.Clone(k[8:]))
		}
		for _, rk := range due {
			if len(claims) >= max {
				break
			}
			j, ok, err := b.job(rk)
			if err != nil {
				return err
			}
			if !ok || (j.Token != "" && j.Until > nowMs) {
				continue
			}
			v := b.recs.Get(rk)
			if v == nil {
				// A job without its record: drop it.
				if err := b.deleteJob(rk); err != nil {
					return err
				}
				continue
			}
			d, err := decodeDelivery(v)
			if err != nil {
				return err
			}
			old := j
			// Requests made before the claim are served by it: the
			// claimer reads the topic after claiming.
			nj := dlvJob{Due: until, Token: token, Until: until}
			if err := b.putJob(rk, nj, &old); err != nil {
				return err
			}
			claims = append(claims, store.DeliveryClaim{
				Delivery: d, Token: token, Until: time.UnixMilli(until), Retaken: j.Token != "",
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
		b, err := createDlvBuckets(tx)
		if err != nil {
			return err
		}
		j, ok, err := b.job(rk)
		if err != nil {
			return err
		}
		v := b.recs.Get(rk)
		if !ok || j.Token != c.Token || v == nil {
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
		n := int64(0)
		if !next.IsZero() {
			n = ms(next)
		}
		backoff := p.Attempts > 0 && n != 0
		if !backoff && j.Again != 0 && (n == 0 || j.Again < n) {
			n = j.Again
		}
		if n == 0 {
			return b.deleteJob(rk)
		}
		old := j
		nj := dlvJob{Due: n}
		if backoff {
			nj.Hold = n
		}
		return b.putJob(rk, nj, &old)
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
	nowMs := ms(now)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if b := bucket(tx, bucketDeliveries); b != nil {
			st.Deliveries = b.Stats().KeyN
		}
		jobs := bucket(tx, bucketDlvJobs)
		if jobs == nil {
			return nil
		}
		return jobs.ForEach(func(_, v []byte) error {
			var j dlvJob
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("embedded store: a delivery job is corrupt: %w", err)
			}
			switch {
			case j.Token != "" && j.Until > nowMs:
				st.Leased++
			case j.Due <= nowMs:
				st.Due++
			}
			return nil
		})
	})
	return st, err
}
