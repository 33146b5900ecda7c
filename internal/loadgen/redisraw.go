package loadgen

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig is one raw Redis XREVRANGE run.
type RedisConfig struct {
	URL      string
	Key      string // empty: the gateway's items key of Topic
	Topic    string
	Conns    int
	Count    int64
	Warmup   time.Duration
	Duration time.Duration
	// PID of redis-server, to report its CPU use (0: not reported).
	RedisPID int
	// Pipeline adds, as the gateway's Redis read does, MGET of the topic's
	// counter and state keys to each XREVRANGE in one pipeline.
	Pipeline bool
}

// RedisItemsKey is the key of a topic's item stream in the gateway's Redis
// layout (store/redis: fg:{<first 16 bytes of SHA-1(topic), hex>}:items).
func RedisItemsKey(topic string) string {
	sum := sha1.Sum([]byte(topic))
	return "fg:{" + hex.EncodeToString(sum[:16]) + "}:items"
}

// NewRedis opens a go-redis client on a loopback Redis URL.
func NewRedis(rawurl string, pool int) (*redis.Client, error) {
	opt, err := redis.ParseURL(rawurl)
	if err != nil {
		return nil, fmt.Errorf("--redis-url %q: %w", rawurl, err)
	}
	addr, err := CheckLoopbackAddr(opt.Addr)
	if err != nil {
		return nil, fmt.Errorf("--redis-url %q: %w", rawurl, err)
	}
	opt.Addr = addr
	opt.PoolSize = max(pool, 1)
	opt.MinIdleConns = max(pool, 1)
	return redis.NewClient(opt), nil
}

// RunRedisRaw measures go-redis XREVRANGE key + - COUNT n with Conns
// goroutines sharing a pool of Conns connections: the ceiling the gateway's
// retrieve on Redis is compared with.
func RunRedisRaw(ctx context.Context, c RedisConfig) (RetrieveResult, error) {
	if c.Conns < 1 || c.Duration <= 0 {
		return RetrieveResult{}, fmt.Errorf("--conns must be at least 1 and --duration positive")
	}
	if c.Key == "" {
		c.Key = RedisItemsKey(c.Topic)
	}
	rdb, err := NewRedis(c.URL, c.Conns)
	if err != nil {
		return RetrieveResult{}, err
	}
	defer rdb.Close()
	n, err := rdb.XLen(ctx, c.Key).Result()
	if err != nil {
		return RetrieveResult{}, fmt.Errorf("XLEN %s on %s: %w", c.Key, c.URL, err)
	}
	if n < c.Count {
		return RetrieveResult{}, fmt.Errorf("the stream %s holds %d entries, fewer than --count %d: seed the topic first (loadgen seed) or give --key", c.Key, n, c.Count)
	}
	prefix := strings.TrimSuffix(c.Key, "items")
	seqKey, metaKey := prefix+"seq", prefix+"meta"
	run := func(ctx context.Context, w *worker, win *window, size *atomic.Int64) {
		for ctx.Err() == nil {
			measured := win.on.Load()
			t0 := time.Now()
			var msgs []redis.XMessage
			var err error
			if c.Pipeline {
				pipe := rdb.Pipeline()
				rng := pipe.XRevRangeN(ctx, c.Key, "+", "-", c.Count)
				pipe.MGet(ctx, seqKey, metaKey)
				if _, err = pipe.Exec(ctx); err == nil || errors.Is(err, redis.Nil) {
					msgs, err = rng.Val(), nil
				}
			} else {
				msgs, err = rdb.XRevRangeN(ctx, c.Key, "+", "-", c.Count).Result()
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if win.on.Load() {
					w.errs[errKind(err)]++
				}
				sleepCtx(ctx, 20*time.Millisecond)
				continue
			}
			if measured && win.on.Load() {
				w.lat = append(w.lat, time.Since(t0))
				if len(msgs) == int(c.Count) {
					w.status["ok"]++
				} else {
					w.status[fmt.Sprintf("%d entries", len(msgs))]++
				}
			}
		}
	}
	ws, cpu, _ := runWorkers(ctx, c.Conns, c.Warmup, c.Duration, c.RedisPID, "redis-server", run)
	lat, status, errs := merge(ws)
	kind := fmt.Sprintf("redis-raw XREVRANGE %s + - COUNT %d", c.Key, c.Count)
	if c.Pipeline {
		kind += " pipelined with MGET seq meta"
	}
	res := RetrieveResult{Kind: kind, Conns: c.Conns, Duration: c.Duration,
		Status: status, Errors: errs, CPU: cpu}
	res.Requests = status.Total()
	res.OK = status["ok"]
	res.PerSecond = float64(res.Requests) / c.Duration.Seconds()
	res.Latency = lat.Summarize()
	return res, ctx.Err()
}
