package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// The layout before the one described in redis.go kept subscriptions,
// upstream subscriptions, jobs and webhook deliveries each under one hash
// tag ({subs}, {fg-ingest}, {dlv}). A store opened on such data moves it to
// the current layout once (one node does it; the others wait), then marks
// the data with fg:layout = 2.
const layoutVersion = "2"

// migrationWait bounds how long a node waits for another to migrate.
const migrationWait = 2 * time.Minute

func (s *Store) migrate(ctx context.Context) error {
	if s.prefix != "fg" {
		return nil // only the default prefix ever had the old layout
	}
	marker, lock := s.key("layout"), s.key("layout-migration")
	v, err := s.rdb.Get(ctx, marker).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return s.wrap("read layout", err)
	}
	if v == layoutVersion {
		return nil
	}
	token := newToken()
	got, err := s.rdb.SetNX(ctx, lock, token, migrationWait).Result()
	if err != nil {
		return s.wrap("migrate layout", err)
	}
	if !got {
		// Another node migrates: wait for its mark.
		deadline := time.Now().Add(migrationWait)
		for time.Now().Before(deadline) {
			if !sleep(ctx, 200*time.Millisecond) {
				return ctx.Err()
			}
			if v, _ := s.rdb.Get(ctx, marker).Result(); v == layoutVersion {
				return nil
			}
		}
		return fmt.Errorf("redis: another node has been moving the data to the current layout for %v; when no node is starting, delete %s and start again", migrationWait, lock)
	}
	for _, step := range []func(context.Context) error{s.migrateSubscriptions, s.migrateIngest, s.migrateDeliveries} {
		if err := step(ctx); err != nil {
			return fmt.Errorf("redis: moving the data to the current layout: %w", err)
		}
	}
	if err := s.rdb.Set(ctx, marker, layoutVersion, 0).Err(); err != nil {
		return s.wrap("migrate layout", err)
	}
	return s.wrap("migrate layout", s.rdb.Del(ctx, lock).Err())
}

func (s *Store) migrateSubscriptions(ctx context.Context) error {
	old := s.key("{subs}", "data")
	recs, err := s.rdb.HGetAll(ctx, old).Result()
	if err != nil {
		return s.wrap("read old subscriptions", err)
	}
	for _, v := range recs {
		var sub store.Subscription
		if err := json.Unmarshal([]byte(v), &sub); err != nil {
			return fmt.Errorf("an old subscription is not valid JSON: %w", err)
		}
		if _, err := s.PutSubscription(ctx, sub); err != nil {
			return err
		}
	}
	return s.dropKeys(ctx, s.key("{subs}", "*"))
}

func (s *Store) migrateIngest(ctx context.Context) error {
	err := s.scanKeys(ctx, s.key("{fg-ingest}", "up", "*"), func(key string) error {
		v, err := s.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return s.wrap("read old upstream", err)
		}
		var u store.Upstream
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return fmt.Errorf("an old upstream subscription is not valid JSON: %w", err)
		}
		return s.PutUpstream(ctx, u)
	})
	if err != nil {
		return err
	}
	jobs, err := s.rdb.ZRangeWithScores(ctx, s.key("{fg-ingest}", "jobs"), 0, -1).Result()
	if err != nil {
		return s.wrap("read old jobs", err)
	}
	tt := s.IngestJobs()
	for _, z := range jobs {
		job, _ := z.Member.(string)
		if _, err := tt.Schedule(ctx, job, time.UnixMilli(int64(z.Score)), store.IfAbsent); err != nil {
			return err
		}
	}
	return s.dropKeys(ctx, s.key("{fg-ingest}", "*"))
}

func (s *Store) migrateDeliveries(ctx context.Context) error {
	var recs, progs, created map[string]string
	for _, r := range []struct {
		key string
		dst *map[string]string
	}{{"rec", &recs}, {"prog", &progs}, {"created", &created}} {
		m, err := s.rdb.HGetAll(ctx, s.key("{dlv}", r.key)).Result()
		if err != nil {
			return s.wrap("read old deliveries", err)
		}
		*r.dst = m
	}
	now := time.Now()
	for id, rec := range recs {
		d, err := decodeDelivery(rec, progs[id], created[id])
		if err != nil {
			return err
		}
		if _, _, err := s.PutDelivery(ctx, d, now); err != nil {
			return err
		}
	}
	return s.dropKeys(ctx, s.key("{dlv}", "*"))
}

// scanKeys calls fn with every key matching pattern (on every master, on
// Cluster).
func (s *Store) scanKeys(ctx context.Context, pattern string, fn func(key string) error) error {
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			if err := fn(iter.Val()); err != nil {
				return err
			}
		}
		return s.wrap("scan", iter.Err())
	}
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, s.rdb)
}

// dropKeys deletes every key matching pattern.
func (s *Store) dropKeys(ctx context.Context, pattern string) error {
	return s.scanKeys(ctx, pattern, func(key string) error {
		return s.wrap("delete old key", s.rdb.Del(ctx, key).Err())
	})
}
