package embedded

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

// Ingest's part of the bbolt file (see store.IngestStore):
//
//	ingestState/<topic>             store.IngestState as JSON
//	upstreams/<id>                  store.Upstream as JSON
//	upstreamsByTopic/<topic,id>     (empty): the topic's upstream subscriptions
//	jobs, jobsDue                   the timetable of ingest's jobs
//	                                (see timetable.go)
var (
	bucketIngestState      = []byte("ingestState")
	bucketUpstreams        = []byte("upstreams")
	bucketUpstreamsByTopic = []byte("upstreamsByTopic")
	bucketJobs             = []byte("jobs")
	bucketJobsDue          = []byte("jobsDue")
)

var _ store.IngestStore = (*Store)(nil)

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

// IngestJobs implements store.IngestStore: the timetable in the buckets
// jobs and jobsDue.
func (s *Store) IngestJobs() store.Timetable {
	return &timetable{s: s, jobs: bucketJobs, due: bucketJobsDue}
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
