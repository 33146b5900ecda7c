package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// Ingest's keys (see store.IngestStore). The per-topic ingest state and
// the index of the topic's upstream subscriptions sit with the topic's
// other keys; each upstream subscription is a key of its own (spread over
// Cluster slots by its id); the jobs are in the timetable "ingest" (see
// timetable.go).
//
//	fg:{t}:ingest     the topic's store.IngestState as JSON
//	fg:{t}:upstreams  set: the topic's upstream ids
//	fg:up:<id>        store.Upstream as JSON
//
// An upstream's record and its topic's index are written one after the
// other (index first, record last; removed in the reverse order), so a
// reader may meet an index entry without its record, which it skips.

var _ store.IngestStore = (*Store)(nil)

func (s *Store) upstreamKey(id string) string { return s.key("up", id) }

// IngestState implements store.IngestStore.
func (s *Store) IngestState(ctx context.Context, topic string) (store.IngestState, error) {
	st := store.IngestState{Topic: topic}
	v, err := s.rdb.Get(ctx, s.keysOf(topic).ingest).Result()
	if errors.Is(err, redis.Nil) {
		return st, nil
	}
	if err != nil {
		return st, s.wrap("ingest state", err)
	}
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		return store.IngestState{Topic: topic}, fmt.Errorf("redis: ingest state of %q is corrupt: %w", topic, err)
	}
	st.Topic = topic
	return st, nil
}

// UpdateIngestState implements store.IngestStore.
func (s *Store) UpdateIngestState(ctx context.Context, topic string, fn func(*store.IngestState) error) error {
	key := s.keysOf(topic).ingest
	return s.update(ctx, "update ingest state", key, func(tx *redis.Tx) (string, error) {
		st := store.IngestState{Topic: topic}
		v, err := tx.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return "", err
		default:
			if err := json.Unmarshal([]byte(v), &st); err != nil {
				return "", errFn{fmt.Errorf("redis: ingest state of %q is corrupt: %w", topic, err)}
			}
		}
		if err := fn(&st); err != nil {
			return "", errFn{err}
		}
		st.Topic = topic
		b, err := json.Marshal(st)
		if err != nil {
			return "", errFn{fmt.Errorf("encode ingest state of %q: %w", topic, err)}
		}
		return string(b), nil
	})
}

// DeleteIngestState implements store.IngestStore.
func (s *Store) DeleteIngestState(ctx context.Context, topic string) error {
	return s.wrap("delete ingest state", s.rdb.Del(ctx, s.keysOf(topic).ingest).Err())
}

// PutUpstream implements store.IngestStore.
func (s *Store) PutUpstream(ctx context.Context, u store.Upstream) error {
	if u.ID == "" || u.Topic == "" {
		return errors.New("redis: an upstream subscription needs an id and a topic")
	}
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode upstream subscription: %w", err)
	}
	if err := s.rdb.SAdd(ctx, s.keysOf(u.Topic).upstreams, u.ID).Err(); err != nil {
		return s.wrap("put upstream", err)
	}
	return s.wrap("put upstream", s.rdb.Set(ctx, s.upstreamKey(u.ID), b, 0).Err())
}

// Upstream implements store.IngestStore.
func (s *Store) Upstream(ctx context.Context, id string) (store.Upstream, error) {
	v, err := s.rdb.Get(ctx, s.upstreamKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return store.Upstream{}, fmt.Errorf("upstream subscription %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Upstream{}, s.wrap("upstream", err)
	}
	var u store.Upstream
	if err := json.Unmarshal([]byte(v), &u); err != nil {
		return store.Upstream{}, fmt.Errorf("redis: upstream subscription %q is corrupt: %w", id, err)
	}
	return u, nil
}

// UpdateUpstream implements store.IngestStore.
func (s *Store) UpdateUpstream(ctx context.Context, id string, fn func(*store.Upstream) error) error {
	key := s.upstreamKey(id)
	return s.update(ctx, "update upstream", key, func(tx *redis.Tx) (string, error) {
		v, err := tx.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return "", errFn{fmt.Errorf("upstream subscription %q: %w", id, store.ErrNotFound)}
		}
		if err != nil {
			return "", err
		}
		var u store.Upstream
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return "", errFn{fmt.Errorf("redis: upstream subscription %q is corrupt: %w", id, err)}
		}
		topic := u.Topic
		if err := fn(&u); err != nil {
			return "", errFn{err}
		}
		u.ID, u.Topic = id, topic
		b, err := json.Marshal(u)
		if err != nil {
			return "", errFn{fmt.Errorf("encode upstream subscription: %w", err)}
		}
		return string(b), nil
	})
}

// DeleteUpstream implements store.IngestStore.
func (s *Store) DeleteUpstream(ctx context.Context, id string) error {
	u, err := s.Upstream(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.rdb.Del(ctx, s.upstreamKey(id)).Err(); err != nil {
		return s.wrap("delete upstream", err)
	}
	return s.wrap("delete upstream", s.rdb.SRem(ctx, s.keysOf(u.Topic).upstreams, id).Err())
}

// TopicUpstreams implements store.IngestStore.
func (s *Store) TopicUpstreams(ctx context.Context, topic string) ([]store.Upstream, error) {
	ids, err := s.rdb.SMembers(ctx, s.keysOf(topic).upstreams).Result()
	if err != nil {
		return nil, s.wrap("topic upstreams", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	// The records are spread over slots: one GET each, pipelined.
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.Get(ctx, s.upstreamKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.wrap("topic upstreams", err)
	}
	vals := make([]any, len(ids))
	for i, c := range cmds {
		if v, err := c.Result(); err == nil {
			vals[i] = v
		}
	}
	var out []store.Upstream
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var u store.Upstream
		if err := json.Unmarshal([]byte(str), &u); err != nil {
			return nil, fmt.Errorf("redis: upstream subscription %q is corrupt: %w", ids[i], err)
		}
		if u.Topic == topic {
			out = append(out, u)
		}
	}
	return out, nil
}

// IngestJobs implements store.IngestStore: the timetable "ingest".
func (s *Store) IngestJobs() store.Timetable { return &timetable{s: s, name: "ingest"} }
