package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// ARGV: id, at ms. Returns 0 when there is no record.
var dlvRetryScript = redis.NewScript(timetableLua + `
if redis.call('HEXISTS', KEYS[5], ARGV[1]) == 0 then return 0 end
tt_schedule(ARGV[1], tonumber(ARGV[2]), 3)
return 1
`)

func errNoDelivery(k store.DeliveryKey) error {
	return fmt.Errorf("redis: delivery of %s to %s: %w", k.Topic, k.Callback, store.ErrNotFound)
}

// RetryDelivery implements store.DeliveryStore.
func (s *Store) RetryDelivery(ctx context.Context, k store.DeliveryKey, at time.Time) error {
	n, err := dlvRetryScript.Run(ctx, s.rdb, s.dlvKeys(k.Topic)[:5], dlvID(k), msOf(at)).Int()
	if err != nil {
		return s.wrap("retry delivery", err)
	}
	if n == 0 {
		return errNoDelivery(k)
	}
	return nil
}

// DeliveryJob implements store.DeliveryStore.
func (s *Store) DeliveryJob(ctx context.Context, k store.DeliveryKey, now time.Time) (store.DeliveryJob, error) {
	id := dlvID(k)
	keys := s.dlvKeys(k.Topic)
	var exists *redis.BoolCmd
	var due *redis.FloatCmd
	var lease *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.HExists(ctx, keys[4], id)
		due = p.ZScore(ctx, keys[0], id)
		lease = p.HGet(ctx, keys[1], id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return store.DeliveryJob{}, s.wrap("read delivery job", err)
	}
	if !exists.Val() {
		return store.DeliveryJob{}, errNoDelivery(k)
	}
	var job store.DeliveryJob
	if due.Err() == nil {
		job.Due = time.UnixMilli(int64(due.Val()))
	}
	// A lease is "token|until".
	if _, until, ok := strings.Cut(lease.Val(), "|"); ok {
		if u, err := strconv.ParseInt(until, 10, 64); err == nil && u > msOf(now) {
			job.Leased = true
		}
	}
	return job, nil
}
