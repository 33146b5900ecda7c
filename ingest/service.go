// Package ingest keeps tracked topics fresh: it discovers a feed's WebSub
// hubs and subscribes there (answering the hubs' verifications and taking
// their signed content at /callback/:id), takes publisher pings and fat
// pings, and polls feeds on a schedule adapted to how often they change.
// Every document, fetched or pushed, takes the one path StoreFeed: parse,
// append (deduplicated), update the topic's status.
//
// Work is shared by every node on one store through leased jobs
// (store.IngestStore): "f:<topic>" fetches a topic, "s:<id>" maintains an
// upstream subscription (renewal, unsubscription). Exactly one node runs a
// job at a time.
package ingest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/internal/ratelog"
	"github.com/feedgate/feedgate/store"
)

// Defaults of Options.
const (
	DefaultConcurrency    = 16
	DefaultMinPeriod      = time.Minute
	DefaultMaxPeriod      = time.Hour
	DefaultInitialPeriod  = 15 * time.Minute
	DefaultMaxBackoff     = 6 * time.Hour
	DefaultPollInterval   = 500 * time.Millisecond
	DefaultLeaseSeconds   = 10 * 24 * 3600
	DefaultPendingTimeout = time.Hour
	DefaultResubscribe    = time.Hour
	DefaultJitter         = 0.1
	// maxRetryAfter bounds how long a Retry-After can hold a topic back.
	maxRetryAfter = 24 * time.Hour
)

// Options configure a Service. Zero values take the defaults.
type Options struct {
	// PublicURL is the gateway's public base URL: callbacks are
	// <PublicURL>/callback/<id>, and it is named in the User-Agent.
	PublicURL string
	// Version goes into the User-Agent.
	Version string
	// AllowPrivate lets the fetcher reach loopback, private and link-local
	// addresses (--allow-private).
	AllowPrivate bool
	// AllowAddrs are non-public dial addresses the fetcher may reach
	// anyway (see fetch.Options.AllowAddrs).
	AllowAddrs []netip.AddrPort
	// Fetch tunes the fetcher (timeouts, MaxBody, MaxRedirects, Resolver);
	// AllowPrivate, AllowAddrs and UserAgent above take precedence.
	Fetch fetch.Options
	// Fetcher, when set, is used instead of building one from the options
	// above (share one between ingest and webhook delivery).
	Fetcher *fetch.Fetcher

	// Concurrency bounds the jobs (fetches, hub requests) this node runs
	// at once.
	Concurrency int
	// MinPeriod and MaxPeriod bound the polling period; InitialPeriod is
	// the first one when a feed's entry dates say nothing. Hubbed topics
	// are polled every MaxPeriod as a safety net.
	MinPeriod     time.Duration
	MaxPeriod     time.Duration
	InitialPeriod time.Duration
	// MaxBackoff bounds the delay after repeated failures.
	MaxBackoff time.Duration
	// Jitter spreads fetch times by ± this fraction of the delay.
	Jitter float64
	// PollInterval is how often Run looks for due jobs in the store (jobs
	// scheduled on this node are seen at once).
	PollInterval time.Duration
	// JobLease is how long a claimed job is held before another node may
	// take it over (default: twice the fetch timeout plus 30 s).
	JobLease time.Duration

	// LeaseSeconds is the hub.lease_seconds asked of upstream hubs.
	LeaseSeconds int
	// PendingTimeout is how long a subscription request may wait for the
	// hub's verification before it is tried again (and how long an
	// unsubscription is kept for its verification).
	PendingTimeout time.Duration
	// Resubscribe is how long to wait before trying a hub again that
	// failed or denied a subscription.
	Resubscribe time.Duration

	// Registerer receives the metrics (prometheus.DefaultRegisterer when
	// nil).
	Registerer prometheus.Registerer
	// Logger logs (slog.Default() when nil).
	Logger *slog.Logger
}

func (o *Options) fill() {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MinPeriod <= 0 {
		o.MinPeriod = DefaultMinPeriod
	}
	if o.MaxPeriod <= 0 {
		o.MaxPeriod = DefaultMaxPeriod
	}
	if o.MaxPeriod < o.MinPeriod {
		o.MaxPeriod = o.MinPeriod
	}
	if o.InitialPeriod <= 0 {
		o.InitialPeriod = DefaultInitialPeriod
	}
	o.InitialPeriod = clampDuration(o.InitialPeriod, o.MinPeriod, o.MaxPeriod)
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MaxPeriod {
		o.MaxBackoff = o.MaxPeriod
	}
	if o.Jitter < 0 || o.Jitter >= 1 {
		o.Jitter = DefaultJitter
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.LeaseSeconds <= 0 {
		o.LeaseSeconds = DefaultLeaseSeconds
	}
	if o.PendingTimeout <= 0 {
		o.PendingTimeout = DefaultPendingTimeout
	}
	if o.Resubscribe <= 0 {
		o.Resubscribe = DefaultResubscribe
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.DefaultRegisterer
	}
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
}

// Service is ingest on one gateway node. The request-path methods (Track,
// Untrack, Ping, StoreFeed, CheckURL, the callback handlers) work on every
// node; Run does the fetching and hub maintenance and runs on ingest nodes.
type Service struct {
	st      store.Store
	is      store.IngestStore
	jobs    store.Timetable
	opts    Options
	fetcher *fetch.Fetcher
	log     *slog.Logger
	m       *metrics
	// failLog keeps a dead feed from flooding the log.
	failLog *ratelog.Limiter

	jobLease time.Duration
	// wake tells Run that a job was scheduled here or a worker slot freed.
	wake    chan struct{}
	running atomic.Bool

	// upstreams caches upstream subscriptions by callback id for the
	// content path (see callback.go).
	upMu      sync.Mutex
	upstreams map[string]cachedUpstream
}

// New returns a Service on the store. is is usually the same backend as st.
func New(st store.Store, is store.IngestStore, opts Options) (*Service, error) {
	if st == nil || is == nil {
		return nil, errors.New("ingest: a store and an ingest store are required")
	}
	opts.fill()
	s := &Service{
		st:        st,
		is:        is,
		jobs:      is.IngestJobs(),
		opts:      opts,
		log:       opts.Logger.With("component", "ingest"),
		failLog:   ratelog.New(ratelog.Options{}),
		wake:      make(chan struct{}, 1),
		upstreams: make(map[string]cachedUpstream),
	}
	if opts.Fetcher != nil {
		s.fetcher = opts.Fetcher
	} else {
		fo := opts.Fetch
		fo.AllowPrivate = opts.AllowPrivate
		fo.AllowAddrs = slices.Concat(fo.AllowAddrs, opts.AllowAddrs)
		if fo.UserAgent == "" {
			fo.UserAgent = fetch.UserAgent(opts.Version, opts.PublicURL)
		}
		s.fetcher = fetch.New(fo)
	}
	s.jobLease = opts.JobLease
	if s.jobLease <= 0 {
		s.jobLease = 2*s.fetcher.Options().Timeout + 30*time.Second
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Fetcher returns the service's guarded fetcher (for webhook delivery).
func (s *Service) Fetcher() *fetch.Fetcher { return s.fetcher }

// CheckURL validates a topic URL at subscribe time (see fetch.Fetcher.CheckURL):
// a *fetch.RefusedError is the reason for a 422.
func (s *Service) CheckURL(ctx context.Context, rawurl string) error {
	return s.fetcher.CheckURL(ctx, rawurl)
}

// CallbackURL returns the callback URL of an upstream subscription id.
func (s *Service) CallbackURL(id string) string {
	return s.opts.PublicURL + "/callback/" + id
}

func (s *Service) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// randomToken returns n random bytes, URL-safe base64 encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func clampDuration(d, lo, hi time.Duration) time.Duration {
	return min(max(d, lo), hi)
}

// Job names in the store's timetable.
const (
	fetchJobPrefix    = "f:"
	upstreamJobPrefix = "s:"
)

func fetchJob(topic string) string { return fetchJobPrefix + topic }
func upstreamJob(id string) string { return upstreamJobPrefix + id }

// errorf wraps err with what was being done.
func errorf(err error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, err)...)
}

const (
	slogWarn = slog.LevelWarn
	slogInfo = slog.LevelInfo
)

func attrTopic(topic string) slog.Attr { return slog.String("topic", topic) }
func attrErr(err error) slog.Attr      { return slog.String("err", err.Error()) }
