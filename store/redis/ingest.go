package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// Ingest's keys (see store.IngestStore). The per-topic ingest state sits
// with the topic's other keys; the upstream subscriptions carry the hash
// tag {fg-ingest}, and the jobs are in the timetable "ingest" (see
// timetable.go).
//
//	fg:{t}:ingest                    the topic's store.IngestState as JSON
//	fg:{fg-ingest}:up:<id>           store.Upstream as JSON
//	fg:{fg-ingest}:upt:<topic hash>  set: the topic's upstream ids
const (
	keyUpstreamPfx = "fg:{fg-ingest}:up:"
	keyUpTopicPfx  = "fg:{fg-ingest}:upt:"
)

var _ store.IngestStore = (*Store)(nil)

func ingestKey(topic string) string {
	return strings.TrimSuffix(keysOf(topic).meta, "meta") + "ingest"
}

func upstreamKey(id string) string { return keyUpstreamPfx + id }

func upTopicKey(topic string) string {
	sum := sha1.Sum([]byte(topic))
	return keyUpTopicPfx + hex.EncodeToString(sum[:16])
}

// IngestState implements store.IngestStore.
func (s *Store) IngestState(ctx context.Context, topic string) (store.IngestState, error) {
	st := store.IngestState{Topic: topic}
	v, err := s.rdb.Get(ctx, ingestKey(topic)).Result()
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
	key := ingestKey(topic)
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
	return s.wrap("delete ingest state", s.rdb.Del(ctx, ingestKey(topic)).Err())
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
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, upstreamKey(u.ID), b, 0)
		p.SAdd(ctx, upTopicKey(u.Topic), u.ID)
		return nil
	})
	return s.wrap("put upstream", err)
}

// Upstream implements store.IngestStore.
func (s *Store) Upstream(ctx context.Context, id string) (store.Upstream, error) {
	v, err := s.rdb.Get(ctx, upstreamKey(id)).Result()
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
	key := upstreamKey(id)
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
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, upstreamKey(id))
		p.SRem(ctx, upTopicKey(u.Topic), id)
		return nil
	})
	return s.wrap("delete upstream", err)
}

// TopicUpstreams implements store.IngestStore.
func (s *Store) TopicUpstreams(ctx context.Context, topic string) ([]store.Upstream, error) {
	ids, err := s.rdb.SMembers(ctx, upTopicKey(topic)).Result()
	if err != nil {
		return nil, s.wrap("topic upstreams", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = upstreamKey(id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, s.wrap("topic upstreams", err)
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
