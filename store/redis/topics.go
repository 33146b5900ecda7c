package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// maxTxAttempts bounds the optimistic transactions of UpdateTopic.
const maxTxAttempts = 100

// Topic implements store.Topics.
func (s *Store) Topic(ctx context.Context, topic string) (store.TopicState, error) {
	v, err := s.rdb.Get(ctx, s.keysOf(topic).meta).Result()
	if errors.Is(err, redis.Nil) {
		return store.TopicState{Topic: topic}, nil
	}
	if err != nil {
		return store.TopicState{}, s.wrap("topic", err)
	}
	return decodeTopicState(topic, v)
}

// UpdateTopic implements store.Topics with an optimistic transaction:
// WATCH the state, apply fn, write it in MULTI; retried when another writer
// changed the state in between.
func (s *Store) UpdateTopic(ctx context.Context, topic string, fn func(*store.TopicState) error) error {
	key := s.keysOf(topic).meta
	err := s.update(ctx, "update topic", key, func(tx *redis.Tx) (string, error) {
		ts := store.TopicState{Topic: topic}
		v, err := tx.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return "", err
		default:
			if ts, err = decodeTopicState(topic, v); err != nil {
				return "", err
			}
		}
		if err := fn(&ts); err != nil {
			return "", errFn{err}
		}
		ts.Topic = topic
		b, err := json.Marshal(ts)
		if err != nil {
			return "", errFn{fmt.Errorf("encode state of topic %q: %w", topic, err)}
		}
		return string(b), nil
	})
	if err == nil {
		s.changes.Changed(topic)
	}
	return err
}

// errFn carries an error of the caller's function through update unchanged.
type errFn struct{ err error }

func (e errFn) Error() string { return e.err.Error() }

// update runs a WATCH/GET/compute/MULTI SET transaction on key, retrying
// with a short random pause when the key changed under it. compute reads
// the current value through tx and returns the new one.
func (s *Store) update(ctx context.Context, op, key string, compute func(tx *redis.Tx) (string, error)) error {
	for attempt := 0; attempt < maxTxAttempts; attempt++ {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			v, err := compute(tx)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, v, 0)
				return nil
			})
			return err
		}, key)
		var fe errFn
		switch {
		case err == nil:
			return nil
		case errors.As(err, &fe):
			return fe.err
		case errors.Is(err, redis.TxFailedErr):
			pause := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 5)))
			select {
			case <-ctx.Done():
				return s.wrap(op, ctx.Err())
			case <-time.After(pause):
			}
		default:
			return s.wrap(op, err)
		}
	}
	return fmt.Errorf("redis %s: %s kept changing during %d attempts; try again", op, key, maxTxAttempts)
}
