package embedded

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

// Ingest's part of the bbolt file (see store.IngestStore):
//
//	ingestState/<topic>             store.IngestState as JSON
//	upstreams/<id>                  store.Upstream as JSON
//	upstreamsByTopic/<topic,id>     (empty): the topic's upstream subscriptions
//	jobs/<job>                      jobRecord as JSON: due time and lease
//	jobsDue/<due ms><job>           (empty): jobs by due time
var (
	bucketIngestState      = []byte("ingestState")
	bucketUpstreams        = []byte("upstreams")
	bucketUpstreamsByTopic = []byte("upstreamsByTopic")
	bucketJobs             = []byte("jobs")
	bucketJobsDue          = []byte("jobsDue")
)

var _ store.IngestStore = (*Store)(nil)

// jobRecord is a job of the timetable.
type jobRecord struct {
	// Due is when the job is due, in Unix milliseconds; while leased, when
	// the lease ends (or earlier, when ScheduleJob asked for it).
	Due int64 `json:"due"`
	// Token, Until and Claimed describe the lease: its holder's token,
	// when it ends, and the due time set when it was taken.
	Token   string `json:"token,omitempty"`
	Until   int64  `json:"until,omitempty"`
	Claimed int64  `json:"claimed,omitempty"`
}

func dueKey(due int64, job string) []byte {
	k := make([]byte, 8, 8+len(job))
	// Offset so that negative times (never expected) still sort first.
	binary.BigEndian.PutUint64(k, uint64(due)^(1<<63))
	return append(k, job...)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func bucket(tx *bolt.Tx, name []byte) *bolt.Bucket { return tx.Bucket(name) }

func createBucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	return tx.CreateBucketIfNotExists(name)
}

// IngestState implements store.IngestStore.
func (s *Store) IngestState(ctx context.Context, topic string) (store.IngestState, error) {
	st := store.IngestState{Topic: topic}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := bucket(tx, bucketIngestState)
		if b == nil || topic == "" || len(topic) > maxNameLen {
			return nil
		}
		return decodeJSON(b.Get([]byte(topic)), &st, "ingest state of topic", topic)
	})
	st.Topic = topic
	return st, err
}

func decodeJSON(v []byte, into any, what, name string) error {
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(v, into); err != nil {
		return fmt.Errorf("embedded store: %s %q is corrupt: %w", what, name, err)
	}
	return nil
}

// UpdateIngestState implements store.IngestStore. fn runs inside the
// store's write transaction: it must be quick and must not call the store.
func (s *Store) UpdateIngestState(ctx context.Context, topic string, fn func(*store.IngestState) error) error {
	if err := checkName("topic", topic); err != nil {
		return fmt.Errorf("embedded store: cannot update ingest state: %w", err)
	}
	var fnErr error
	err := s.write(ctx, func(tx *bolt.Tx) error {
		fnErr = nil
		b, err := createBucket(tx, bucketIngestState)
		if err != nil {
			return err
		}
		st := store.IngestState{Topic: topic}
		if err := decodeJSON(b.Get([]byte(topic)), &st, "ingest state of topic", topic); err != nil {
			return err
		}
		if fnErr = fn(&st); fnErr != nil {
			return nil
		}
		st.Topic = topic
		v, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("embedded store: cannot encode ingest state of %q: %w", topic, err)
		}
		return b.Put([]byte(topic), v)
	}, nil)
	if err != nil {
		return err
	}
	return fnErr
}

// DeleteIngestState implements store.IngestStore.
func (s *Store) DeleteIngestState(ctx context.Context, topic string) error {
	if topic == "" || len(topic) > maxNameLen {
		return nil
	}
	return s.write(ctx, func(tx *bolt.Tx) error {
		if b := bucket(tx, bucketIngestState); b != nil {
			return b.Delete([]byte(topic))
		}
		return nil
	}, nil)
}

// PutUpstream implements store.IngestStore.
func (s *Store) PutUpstream(ctx context.Context, u store.Upstream) error {
	if err := checkName("upstream id", u.ID); err != nil {
		return fmt.Errorf("embedded store: cannot store upstream subscription: %w", err)
	}
	if err := checkName("topic", u.Topic); err != nil {
		return fmt.Errorf("embedded store: cannot store upstream subscription: %w", err)
	}
	v, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("embedded store: cannot encode upstream subscription: %w", err)
	}
	return s.write(ctx, func(tx *bolt.Tx) error {
		return putUpstream(tx, u, v)
	}, nil)
}

func putUpstream(tx *bolt.Tx, u store.Upstream, v []byte) error {
	ub, err := createBucket(tx, bucketUpstreams)
	if err != nil {
		return err
	}
	tb, err := createBucket(tx, bucketUpstreamsByTopic)
	if err != nil {
		return err
	}
	if old := ub.Get([]byte(u.ID)); old != nil {
		var o store.Upstream
		if json.Unmarshal(old, &o) == nil && o.Topic != u.Topic {
			if err := tb.Delete(tupleKey(o.Topic, o.ID)); err != nil {
				return err
			}
		}
	}
	if err := ub.Put([]byte(u.ID), v); err != nil {
		return err
	}
	return tb.Put(tupleKey(u.Topic, u.ID), nil)
}

// Upstream implements store.IngestStore.
func (s *Store) Upstream(ctx context.Context, id string) (store.Upstream, error) {
	var u store.Upstream
	found := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := bucket(tx, bucketUpstreams)
		if b == nil || id == "" || len(id) > maxNameLen {
			return nil
		}
		v := b.Get([]byte(id))
		found = v != nil
		return decodeJSON(v, &u, "upstream subscription", id)
	})
	if err != nil {
		return store.Upstream{}, err
	}
	if !found {
		return store.Upstream{}, fmt.Errorf("upstream subscription %q: %w", id, store.ErrNotFound)
	}
	return u, nil
}

// UpdateUpstream implements store.IngestStore. fn runs inside the store's
// write transaction: it must be quick and must not call the store.
func (s *Store) UpdateUpstream(ctx context.Context, id string, fn func(*store.Upstream) error) error {
	if id == "" || len(id) > maxNameLen {
		return fmt.Errorf("upstream subscription %q: %w", id, store.ErrNotFound)
	}
	var fnErr error
	err := s.write(ctx, func(tx *bolt.Tx) error {
		fnErr = nil
		b := bucket(tx, bucketUpstreams)
		var v []byte
		if b != nil {
			v = b.Get([]byte(id))
		}
		if v == nil {
			fnErr = fmt.Errorf("upstream subscription %q: %w", id, store.ErrNotFound)
			return nil
		}
		var u store.Upstream
		if err := decodeJSON(v, &u, "upstream subscription", id); err != nil {
			return err
		}
		if fnErr = fn(&u); fnErr != nil {
			return nil
		}
		u.ID = id
		nv, err := json.Marshal(u)
		if err != nil {
			return fmt.Errorf("embedded store: cannot encode upstream subscription: %w", err)
		}
		return putUpstream(tx, u, nv)
	}, nil)
	if err != nil {
		return err
	}
	return fnErr
}

// DeleteUpstream implements store.IngestStore.
func (s *Store) DeleteUpstream(ctx context.Context, id string) error {
	if id == "" || len(id) > maxNameLen {
		return nil
	}
	return s.write(ctx, func(tx *bolt.Tx) error {
		b := bucket(tx, bucketUpstreams)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		var u store.Upstream
		if json.Unmarshal(v, &u) == nil {
			if tb := bucket(tx, bucketUpstreamsByTopic); tb != nil {
				if err := tb.Delete(tupleKey(u.Topic, id)); err != nil {
					return err
				}
			}
		}
		return b.Delete([]byte(id))
	}, nil)
}

// TopicUpstreams implements store.IngestStore.
func (s *Store) TopicUpstreams(ctx context.Context, topic string) ([]store.Upstream, error) {
	var out []store.Upstream
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = nil
		tb, ub := bucket(tx, bucketUpstreamsByTopic), bucket(tx, bucketUpstreams)
		if tb == nil || ub == nil || topic == "" {
			return nil
		}
		prefix := tupleKey(topic)
		c := tb.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id := k[len(prefix):]
			id = id[:max(len(id)-2, 0)] // the tuple terminator; ids hold no NUL
			var u store.Upstream
			v := ub.Get(id)
			if v == nil {
				continue
			}
			if err := decodeJSON(v, &u, "upstream subscription", string(id)); err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

// jobs returns the two job buckets, creating them.
func jobBuckets(tx *bolt.Tx) (jobs, due *bolt.Bucket, err error) {
	if jobs, err = createBucket(tx, bucketJobs); err != nil {
		return nil, nil, err
	}
	if due, err = createBucket(tx, bucketJobsDue); err != nil {
		return nil, nil, err
	}
	return jobs, due, nil
}

func getJob(jobs *bolt.Bucket, job string) (jobRecord, bool, error) {
	var r jobRecord
	v := jobs.Get([]byte(job))
	if v == nil {
		return r, false, nil
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, false, fmt.Errorf("embedded store: job %q is corrupt: %w", job, err)
	}
	return r, true, nil
}

// putJob stores r, moving the job's entry in the due index.
func putJob(jobs, due *bolt.Bucket, job string, r jobRecord, old *jobRecord) error {
	if old != nil {
		if err := due.Delete(dueKey(old.Due, job)); err != nil {
			return err
		}
	}
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := jobs.Put([]byte(job), v); err != nil {
		return err
	}
	return due.Put(dueKey(r.Due, job), nil)
}

func deleteJob(jobs, due *bolt.Bucket, job string, r jobRecord) error {
	if err := due.Delete(dueKey(r.Due, job)); err != nil {
		return err
	}
	return jobs.Delete([]byte(job))
}

func checkJob(job string) error {
	if err := checkName("job", job); err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	return nil
}

// ScheduleJob implements store.IngestStore.
func (s *Store) ScheduleJob(ctx context.Context, job string, at time.Time) error {
	if err := checkJob(job); err != nil {
		return err
	}
	_, err := s.scheduleJob(ctx, job, ms(at), true, true)
	return err
}

// ExpediteJob implements store.IngestStore.
func (s *Store) ExpediteJob(ctx context.Context, job string, at time.Time) (bool, error) {
	if err := checkJob(job); err != nil {
		return false, err
	}
	return s.scheduleJob(ctx, job, ms(at), false, true)
}

// AddJob implements store.IngestStore.
func (s *Store) AddJob(ctx context.Context, job string, at time.Time) (bool, error) {
	if err := checkJob(job); err != nil {
		return false, err
	}
	var added bool
	err := s.write(ctx, func(tx *bolt.Tx) error {
		added = false
		jobs, due, err := jobBuckets(tx)
		if err != nil {
			return err
		}
		_, ok, err := getJob(jobs, job)
		if err != nil || ok {
			return err
		}
		added = true
		return putJob(jobs, due, job, jobRecord{Due: ms(at)}, nil)
	}, nil)
	return added, err
}

// scheduleJob moves a job earlier (adding it when add is set); it reports
// whether the job existed.
func (s *Store) scheduleJob(ctx context.Context, job string, at int64, add, earlier bool) (bool, error) {
	var existed bool
	err := s.write(ctx, func(tx *bolt.Tx) error {
		jobs, due, err := jobBuckets(tx)
		if err != nil {
			return err
		}
		r, ok, err := getJob(jobs, job)
		existed = ok
		switch {
		case err != nil:
			return err
		case !ok && !add:
			return nil
		case !ok:
			return putJob(jobs, due, job, jobRecord{Due: at}, nil)
		case earlier && at >= r.Due:
			return nil
		}
		old := r
		r.Due = at
		return putJob(jobs, due, job, r, &old)
	}, nil)
	return existed, err
}

// JobDue implements store.IngestStore.
func (s *Store) JobDue(ctx context.Context, job string) (time.Time, bool, error) {
	var r jobRecord
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		jobs := bucket(tx, bucketJobs)
		if jobs == nil || job == "" || len(job) > maxNameLen {
			return nil
		}
		var err error
		r, ok, err = getJob(jobs, job)
		return err
	})
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	return time.UnixMilli(r.Due), true, nil
}

// RemoveJob implements store.IngestStore.
func (s *Store) RemoveJob(ctx context.Context, job string) error {
	if job == "" || len(job) > maxNameLen {
		return nil
	}
	return s.write(ctx, func(tx *bolt.Tx) error {
		jobs, due, err := jobBuckets(tx)
		if err != nil {
			return err
		}
		r, ok, err := getJob(jobs, job)
		if err != nil || !ok {
			return err
		}
		return deleteJob(jobs, due, job, r)
	}, nil)
}

// claimScan bounds how many due entries one claim looks at beyond max
// (due jobs that are leased are skipped).
const claimScan = 256

// ClaimJobs implements store.IngestStore.
func (s *Store) ClaimJobs(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.Claim, error) {
	if max <= 0 {
		return nil, nil
	}
	token := newToken()
	nowMs, until := ms(now), ms(now.Add(lease))
	var claims []store.Claim
	err := s.write(ctx, func(tx *bolt.Tx) error {
		claims = claims[:0]
		jobs, due, err := jobBuckets(tx)
		if err != nil {
			return err
		}
		type pick struct {
			job string
			r   jobRecord
		}
		var picks []pick
		c := due.Cursor()
		scanned := 0
		for k, _ := c.First(); k != nil && len(picks) < max && scanned < max+claimScan; k, _ = c.Next() {
			scanned++
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])^(1<<63)) > nowMs {
				break
			}
			job := string(k[8:])
			r, ok, err := getJob(jobs, job)
			if err != nil {
				return err
			}
			if !ok || (r.Token != "" && r.Until > nowMs) {
				continue
			}
			picks = append(picks, pick{job, r})
		}
		for _, p := range picks {
			old := p.r
			r := jobRecord{Due: until, Token: token, Until: until, Claimed: until}
			if err := putJob(jobs, due, p.job, r, &old); err != nil {
				return err
			}
			claims = append(claims, store.Claim{Job: p.job, Token: token, Until: time.UnixMilli(until)})
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return claims, nil
}

// ReleaseJob implements store.IngestStore.
func (s *Store) ReleaseJob(ctx context.Context, c store.Claim, next time.Time) error {
	if c.Job == "" || len(c.Job) > maxNameLen {
		return store.ErrLeaseLost
	}
	lost := false
	err := s.write(ctx, func(tx *bolt.Tx) error {
		lost = false
		jobs, due, err := jobBuckets(tx)
		if err != nil {
			return err
		}
		r, ok, err := getJob(jobs, c.Job)
		if err != nil {
			return err
		}
		if !ok || r.Token != c.Token {
			lost = true
			return nil
		}
		if next.IsZero() {
			return deleteJob(jobs, due, c.Job, r)
		}
		old := r
		n := ms(next)
		if r.Due != r.Claimed && r.Due < n {
			n = r.Due // asked for earlier while claimed
		}
		return putJob(jobs, due, c.Job, jobRecord{Due: n}, &old)
	}, nil)
	if err != nil {
		return err
	}
	if lost {
		return fmt.Errorf("job %q: %w", c.Job, store.ErrLeaseLost)
	}
	return nil
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
