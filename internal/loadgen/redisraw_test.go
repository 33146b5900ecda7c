package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

func TestRedisRaw(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	topic := "http://t/feed"
	key := RedisItemsKey(topic)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	cfg := RedisConfig{URL: srv.URL(), Topic: topic, Conns: 4, Count: 10, Warmup: 20 * time.Millisecond, Duration: 200 * time.Millisecond}

	if _, err := RunRedisRaw(ctx, cfg); err == nil || !strings.Contains(err.Error(), "loadgen seed") {
		t.Fatalf("an empty stream must be reported with a hint, got %v", err)
	}
	for i := range 12 {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"i", strings.Repeat("x", i)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, pipeline := range []bool{false, true} {
		cfg.Pipeline = pipeline
		res, err := RunRedisRaw(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		if res.OK == 0 || res.OK != res.Requests || res.Errors.Total() != 0 {
			t.Fatalf("%s", res)
		}
	}
}

func TestRedisItemsKeyMatchesTheStore(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	st, err := redisstore.New(ctx, srv.URL(), store.Options{Retention: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	topic := "http://example.com/feed"
	it := feed.Item{ID: "a", Title: "a"}
	it.Hash = it.ContentHash()
	if _, err := st.Append(ctx, topic, []feed.Item{it}); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if n, err := rdb.XLen(ctx, RedisItemsKey(topic)).Result(); err != nil || n != 1 {
		t.Fatalf("XLEN %s = %d, %v: the store keeps a topic's items elsewhere; update RedisItemsKey", RedisItemsKey(topic), n, err)
	}
}
