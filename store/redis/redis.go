// Package redisstore is the Redis backend of store.Store, for gateways that
// run on several nodes.
//
// Layout. Every key of a topic carries the same hash tag, a digest of the
// topic URL, so a topic's keys share one Redis Cluster slot and its Lua
// script runs on Cluster unchanged:
//
//	fg:{t}:items  stream of the topic's items; entry id "<cursor>-0"
//	fg:{t}:ids    hash: entry id -> newest cursor, (id, hash) digest -> cursor
//	fg:{t}:seq    the newest cursor (the topic's item counter)
//	fg:{t}:meta   the topic's state (store.TopicState as JSON)
//	fg:{t}:live   pub/sub channel announcing appended items
//
// Users are one hash, fg:users (login -> JSON). Subscriptions live under
// the hash tag {subs} so that a subscription, its per-user, per-topic and
// global indexes and the set of tracked topics change together in one
// script: see subscriptions.go.
//
// Append runs append.lua: dedup by (id, content hash), cursor assignment,
// XADD, exact trim to the retention, and PUBLISH of the stored items, in one
// atomic step. A read is one round trip (a pipeline of the range read and
// the topic's counter and state). Live listeners share one pub/sub
// connection each and re-read by cursor after any interruption (Resync).
package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

var _ store.Store = (*Store)(nil)

// Timeouts applied unless the URL sets them (dial_timeout, read_timeout,
// write_timeout, pool_timeout): short, so that a gateway answers 503 quickly
// when Redis is away instead of holding requests.
const (
	defaultDialTimeout  = 2 * time.Second
	defaultReadTimeout  = 3 * time.Second
	defaultWriteTimeout = 3 * time.Second
	defaultPoolTimeout  = 4 * time.Second
)

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	rdb       *redis.Client
	addr      string
	retention int
	// opTimeout bounds waits of listeners (Add) for Redis.
	opTimeout time.Duration
	// keep is how many stored items of a topic the dedup memory reaches
	// back (see append.lua).
	keep int
	meta metaCache
	// changes hears of this client's appends and topic updates.
	changes *store.ChangeHook

	mu        sync.Mutex
	listeners map[*listener]struct{}
	closed    bool
}

// New connects to the Redis server at url (redis://[user:password@]host:port/db,
// or rediss:// for TLS; go-redis URL options such as pool_size or
// read_timeout are honoured) and checks that it answers.
func New(ctx context.Context, url string, opts store.Options) (*Store, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL %q: %w (expected redis://host:port/db)", redactURL(url), err)
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = defaultReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.PoolTimeout == 0 {
		o.PoolTimeout = defaultPoolTimeout
	}
	if o.PoolSize == 0 {
		// Commands are short; a few connections per core keep Redis busy
		// and let concurrent requests share connections instead of
		// opening hundreds.
		o.PoolSize = 8 * runtime.GOMAXPROCS(0)
		if o.PoolSize < 16 {
			o.PoolSize = 16
		}
	}
	if o.PipelinePoolSize == 0 {
		// Every Read is a pipeline.
		o.PipelinePoolSize = o.PoolSize
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 2
	}
	o.DialerRetries = 2
	o.DialerRetryTimeout = 50 * time.Millisecond
	o.ContextTimeoutEnabled = true
	o.DisableIdentity = true
	rdb := redis.NewClient(o)
	s := &Store{
		rdb:       rdb,
		addr:      o.Addr,
		retention: opts.RetentionOrDefault(),
		opTimeout: o.DialTimeout + o.ReadTimeout,
		changes:   opts.Changes,
		listeners: make(map[*listener]struct{}),
	}
	s.keep = max(4*s.retention, 5000)
	if err := s.Ping(ctx); err != nil {
		rdb.Close()
		return nil, err
	}
	return s, nil
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.wrap("ping", s.rdb.Ping(ctx).Err())
}

// Close closes open listeners and the connection pool.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ls := make([]*listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	for _, l := range ls {
		_ = l.Close()
	}
	return s.rdb.Close()
}

// Client returns the underlying go-redis client, for benchmarks and
// diagnostics.
func (s *Store) Client() *redis.Client { return s.rdb }

// topicKeys are the keys of one topic.
type topicKeys struct {
	items, ids, seq, meta, live string
}

// keysOf derives a topic's keys. The hash tag is the first 128 bits of the
// topic's SHA-1, so topics spread over Cluster slots and keys stay short.
func keysOf(topic string) topicKeys {
	sum := sha1.Sum([]byte(topic))
	p := "fg:{" + hex.EncodeToString(sum[:16]) + "}:"
	return topicKeys{items: p + "items", ids: p + "ids", seq: p + "seq", meta: p + "meta", live: p + "live"}
}

// wrap turns a go-redis error into a store error: failures to reach Redis
// (network, timeouts, a server that is loading or read-only) wrap
// store.ErrUnavailable; a caller's cancellation stays what it is.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("redis %s: %w", op, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: redis %s at %s: %w (check that Redis is running and reachable at --redis-url)", store.ErrUnavailable, op, s.addr, err)
	}
	return fmt.Errorf("redis %s: %w", op, err)
}

// unavailable tells failures to reach a working Redis from errors in a
// command itself.
func unavailable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "BUSY", "OOM", "NOREPLICAS", "MISCONF"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		isConnError(err)
}

// isConnError recognises connection failures go-redis reports without a
// typed error (EOF, reset, refused).
func isConnError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"EOF", "connection reset", "connection refused", "broken pipe", "use of closed network connection", "i/o timeout", "connection pool timeout"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// redactURL hides a password in a URL for error messages.
func redactURL(u string) string {
	at := strings.LastIndexByte(u, '@')
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	return u[:scheme+3] + "…@" + u[at+1:]
}
