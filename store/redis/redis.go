// Package redisstore is the Redis backend of store.Store, for gateways that
// run on several nodes: on one Redis server, a Sentinel-managed master with
// replicas, or a Redis Cluster.
//
// Layout. Every key of a topic carries the same hash tag, a digest of the
// topic URL, so a topic's keys share one Redis Cluster slot, its Lua
// scripts run on Cluster unchanged, and topics spread over every slot:
//
//	fg:{t}:items      stream of the topic's items; entry id "<cursor>-0"
//	fg:{t}:ids        hash: entry id -> newest cursor, (id, hash) digest -> cursor
//	fg:{t}:seq        the newest cursor (the topic's item counter)
//	fg:{t}:meta       the topic's state (store.TopicState as JSON)
//	fg:{t}:live       channel announcing appended items (sharded on Cluster)
//	fg:{t}:ann        with WAIT: the newest cursor announced
//	fg:{t}:ingest     ingest's state of the topic
//	fg:{t}:upstreams  set: ids of the topic's upstream hub subscriptions
//
// What is shared by every topic is spread over 16 buckets, each a hash tag
// of its own ({subs:<b>}, {ingest:<b>}, {dlv:<b>}), a topic's entries in the
// bucket of the topic (or of the job): the subscriptions and the set of
// tracked topics (subscriptions.go), the timetables of ingest and webhook
// deliveries (timetable.go, delivery.go). A login's own index of its
// subscriptions sits under a hash tag of the login; an upstream
// subscription's record under its id. The users are one hash, fg:users: they
// are few, every read of one is cached by the nodes, and one key makes
// AddUser's check-and-create atomic. "fg" is Config.Prefix.
//
// Append runs append.lua: dedup by (id, content hash), cursor assignment,
// XADD, exact trim to the retention, and PUBLISH (SPUBLISH on Cluster) of
// the stored items with the topic's state, in one atomic step. With
// Config.WaitReplicas, the append is followed on the same connection by
// WAIT, and it is acknowledged only once that many replicas have it (see
// durable.go). A read is one round trip (a pipeline of the range read and
// the topic's counter and state). Live listeners share one pub/sub
// connection per node (one per shard on Cluster) and re-read by cursor
// after any interruption (Resync).
package redisstore

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
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

// DefaultWaitTimeout bounds WAIT when Config.WaitTimeout is zero.
const DefaultWaitTimeout = time.Second

// Config says how to reach Redis: exactly one of URL, Cluster and Sentinel.
type Config struct {
	// URL of one server: redis://[user:password@]host:port/db, or rediss://
	// for TLS; go-redis URL options such as pool_size or read_timeout are
	// honoured.
	URL string
	// Cluster lists seed nodes (host:port) of a Redis Cluster.
	Cluster []string
	// Sentinel lists the sentinels (host:port) watching the master named
	// Master.
	Sentinel []string
	Master   string

	// Username and Password authenticate to Redis (for URL, when the URL
	// names none). SentinelPassword authenticates to the sentinels.
	Username, Password string
	SentinelPassword   string
	// TLS, when set, is used to connect (a rediss:// URL sets it too).
	TLS *tls.Config

	// WaitReplicas, when above 0, makes every append (and every new
	// subscription or webhook delivery) acknowledged only once that many
	// replicas confirm they have it (WAIT), within WaitTimeout
	// (DefaultWaitTimeout when 0); otherwise it fails with
	// store.ErrNotReplicated.
	WaitReplicas int
	WaitTimeout  time.Duration

	// Prefix starts every key ("fg" when empty): stores with different
	// prefixes share a Redis without seeing each other's data.
	Prefix string
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "fg"
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = DefaultWaitTimeout
	}
	return c
}

// mode is how the store reaches Redis.
type mode int

const (
	modeSingle mode = iota
	modeSentinel
	modeCluster
)

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	mode mode
	// where names the configured Redis in error messages.
	where     string
	prefix    string
	retention int
	// opTimeout bounds waits of listeners (Add) for Redis.
	opTimeout time.Duration
	// keep is how many stored items of a topic the dedup memory reaches
	// back (see append.lua).
	keep int
	meta metaCache
	// changes hears of this client's appends and topic updates.
	changes *store.ChangeHook
	// waitReplicas and waitTimeout: see Config.
	waitReplicas int
	waitTimeout  time.Duration
	// topo follows which node serves which slot (Cluster only).
	topo *topology

	mu        sync.Mutex
	listeners map[*listener]struct{}
	closed    bool
}

// New connects to the Redis server at url (see Config.URL) and checks that
// it answers.
func New(ctx context.Context, url string, opts store.Options) (*Store, error) {
	return Open(ctx, Config{URL: url}, opts)
}

// Open connects to Redis as cfg says and checks that it answers.
func Open(ctx context.Context, cfg Config, opts store.Options) (*Store, error) {
	cfg = cfg.withDefaults()
	s := &Store{
		prefix:       cfg.Prefix,
		retention:    opts.RetentionOrDefault(),
		changes:      opts.Changes,
		waitReplicas: cfg.WaitReplicas,
		waitTimeout:  cfg.WaitTimeout,
		listeners:    make(map[*listener]struct{}),
	}
	s.keep = max(4*s.retention, 5000)
	base, err := baseOptions(cfg)
	if err != nil {
		return nil, err
	}
	s.opTimeout = base.DialTimeout + base.ReadTimeout
	switch {
	case len(cfg.Cluster) > 0:
		s.mode = modeCluster
		s.where = "--redis-cluster " + strings.Join(cfg.Cluster, ",")
		co := &redis.ClusterOptions{
			Addrs:                 cfg.Cluster,
			Username:              base.Username,
			Password:              base.Password,
			TLSConfig:             base.TLSConfig,
			DialTimeout:           base.DialTimeout,
			ReadTimeout:           base.ReadTimeout,
			WriteTimeout:          base.WriteTimeout,
			PoolTimeout:           base.PoolTimeout,
			PoolSize:              base.PoolSize,
			PipelinePoolSize:      base.PipelinePoolSize,
			MaxRetries:            base.MaxRetries,
			DialerRetries:         base.DialerRetries,
			DialerRetryTimeout:    base.DialerRetryTimeout,
			ContextTimeoutEnabled: true,
			DisableIdentity:       true,
			// Enough redirections to ride out a slot migration.
			MaxRedirects: 8,
		}
		cc := redis.NewClusterClient(co)
		s.rdb = cc
		s.topo = newTopology(cc, base)
	case len(cfg.Sentinel) > 0:
		if cfg.Master == "" {
			return nil, errors.New("redis: --redis-sentinel needs --redis-master, the name the sentinels know the master by")
		}
		s.mode = modeSentinel
		s.where = "--redis-sentinel " + strings.Join(cfg.Sentinel, ",") + " (master " + cfg.Master + ")"
		s.rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:            cfg.Master,
			SentinelAddrs:         cfg.Sentinel,
			SentinelPassword:      cfg.SentinelPassword,
			Username:              base.Username,
			Password:              base.Password,
			DB:                    base.DB,
			TLSConfig:             base.TLSConfig,
			DialTimeout:           base.DialTimeout,
			ReadTimeout:           base.ReadTimeout,
			WriteTimeout:          base.WriteTimeout,
			PoolTimeout:           base.PoolTimeout,
			PoolSize:              base.PoolSize,
			MaxRetries:            base.MaxRetries,
			ContextTimeoutEnabled: true,
			DisableIdentity:       true,
		})
	default:
		s.mode = modeSingle
		s.where = "--redis-url " + redactURL(cfg.URL) + " (" + base.Addr + ")"
		s.rdb = redis.NewClient(base)
	}
	if err := s.Ping(ctx); err != nil {
		s.closeClients()
		return nil, err
	}
	if s.mode == modeCluster {
		if err := s.checkClusterVersion(ctx); err != nil {
			s.closeClients()
			return nil, err
		}
	}
	if err := s.migrate(ctx); err != nil {
		s.closeClients()
		return nil, err
	}
	return s, nil
}

// baseOptions are the connection options of every mode: from the URL when
// there is one, else from the defaults, with cfg's credentials and TLS.
func baseOptions(cfg Config) (*redis.Options, error) {
	modes := 0
	for _, set := range []bool{cfg.URL != "", len(cfg.Cluster) > 0, len(cfg.Sentinel) > 0} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return nil, errors.New("redis: give exactly one of --redis-url, --redis-cluster and --redis-sentinel")
	}
	o := &redis.Options{}
	if cfg.URL != "" {
		var err error
		if o, err = redis.ParseURL(cfg.URL); err != nil {
			return nil, fmt.Errorf("redis URL %q: %w (expected redis://host:port/db)", redactURL(cfg.URL), err)
		}
	}
	if o.Username == "" && o.Password == "" {
		o.Username, o.Password = cfg.Username, cfg.Password
	}
	if cfg.TLS != nil {
		o.TLSConfig = cfg.TLS
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
		o.PoolSize = max(8*runtime.GOMAXPROCS(0), 16)
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
	return o, nil
}

// Ping reports whether Redis answers: on Cluster, every master serving
// slots, and the error names the first that does not.
func (s *Store) Ping(ctx context.Context) error {
	if s.mode == modeCluster {
		return s.pingCluster(ctx)
	}
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
	return s.closeClients()
}

func (s *Store) closeClients() error {
	if s.topo != nil {
		s.topo.close()
	}
	return s.rdb.Close()
}

// Client returns the underlying go-redis client, for benchmarks and
// diagnostics.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Prefix is what every key of the store starts with.
func (s *Store) Prefix() string { return s.prefix }

// topicKeys are the keys of one topic.
type topicKeys struct {
	items, ids, seq, meta, live, ann, ingest, upstreams string
}

// keysOf derives a topic's keys. The hash tag is the first 128 bits of the
// topic's SHA-1, so topics spread over Cluster slots and keys stay short.
func (s *Store) keysOf(topic string) topicKeys {
	sum := sha1.Sum([]byte(topic))
	p := s.prefix + ":{" + hex.EncodeToString(sum[:16]) + "}:"
	return topicKeys{items: p + "items", ids: p + "ids", seq: p + "seq", meta: p + "meta", live: p + "live",
		ann: p + "ann", ingest: p + "ingest", upstreams: p + "upstreams"}
}

// key names a key of the store.
func (s *Store) key(parts ...string) string {
	return s.prefix + ":" + strings.Join(parts, ":")
}

// wrap turns a go-redis error into a store error: failures to reach Redis
// (network, timeouts, a server that is loading, read-only or failing over)
// wrap store.ErrUnavailable; a caller's cancellation stays what it is.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotReplicated) {
		return fmt.Errorf("redis %s: %w", op, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: redis %s at %s: %w (check that Redis is running and reachable)", store.ErrUnavailable, op, s.where, err)
	}
	return fmt.Errorf("redis %s: %w", op, err)
}

// unavailable tells failures to reach a working Redis from errors in a
// command itself.
func unavailable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "BUSY", "OOM", "NOREPLICAS", "MISCONF", "MOVED", "ASK", "UNBLOCKED", "FAILOVER"} {
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
	if p, err := url.Parse(u); err == nil && p.User != nil {
		if _, set := p.User.Password(); set {
			p.User = url.UserPassword(p.User.Username(), "…")
			return p.String()
		}
	}
	at := strings.LastIndexByte(u, '@')
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	return u[:scheme+3] + "…@" + u[at+1:]
}
