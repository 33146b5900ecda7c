package hub

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/store"
)

// Defaults of Options.
const (
	DefaultLeaseMin        = time.Minute
	DefaultLease           = 10 * 24 * time.Hour
	DefaultLeaseMax        = 365 * 24 * time.Hour
	DefaultConcurrency     = 128
	DefaultPerCallback     = 4
	DefaultMaxBatch        = 100
	DefaultDeliveryTimeout = 15 * time.Second
	DefaultVerifyTimeout   = 10 * time.Second
	DefaultPollInterval    = 250 * time.Millisecond
	DefaultSweepInterval   = time.Minute
	DefaultTopicRefresh    = 5 * time.Second
	DefaultAsyncVerifiers  = 4
	DefaultAsyncQueue      = 1024
)

// RetryPolicy bounds the retries of a failed delivery: the n-th retry waits
// First × Multiplier^(n-1), at most Max, spread by ± Jitter; after
// MaxAttempts failed attempts, or once the first failure is MaxAge old, the
// items are given up on (counted as dropped in the subscription's health)
// and delivery goes on with the items that follow.
type RetryPolicy struct {
	First       time.Duration
	Multiplier  float64
	Max         time.Duration
	Jitter      float64
	MaxAttempts int
	MaxAge      time.Duration
}

// DefaultRetry is the retry policy unless configured: retries after about
// 1, 2, 4, 8 ... seconds, at most an hour apart, 16 attempts or a day.
var DefaultRetry = RetryPolicy{
	First:       time.Second,
	Multiplier:  2,
	Max:         time.Hour,
	Jitter:      0.2,
	MaxAttempts: 16,
	MaxAge:      24 * time.Hour,
}

func (r *RetryPolicy) fill() {
	d := DefaultRetry
	if r.First <= 0 {
		r.First = d.First
	}
	if r.Multiplier < 1 {
		r.Multiplier = d.Multiplier
	}
	if r.Max <= 0 {
		r.Max = d.Max
	}
	if r.Max < r.First {
		r.Max = r.First
	}
	if r.Jitter < 0 || r.Jitter >= 1 {
		r.Jitter = d.Jitter
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = d.MaxAttempts
	}
	if r.MaxAge <= 0 {
		r.MaxAge = d.MaxAge
	}
}

// Options configure a Service. Zero values take the defaults. Subscriptions
// with a callback need PublicHubURL, Fetcher and a DeliveryStore; without
// them a callback is refused with ErrCallbacksUnsupported.
type Options struct {
	// PublicHubURL is the hub endpoint subscribers know, sent as
	// Link: <PublicHubURL>; rel="hub" with every delivery.
	PublicHubURL string
	// Fetcher makes every outgoing request (verification GETs, delivery
	// POSTs) through the address guard; share the one of ingest.
	Fetcher *fetch.Fetcher
	// Deliveries keeps delivery records and jobs; by default the Store
	// itself when it implements store.DeliveryStore.
	Deliveries store.DeliveryStore

	// LeaseMin, LeaseDefault and LeaseMax bound hub.lease_seconds; a
	// subscription without one gets LeaseDefault.
	LeaseMin, LeaseDefault, LeaseMax time.Duration
	// Signature is the method of X-Hub-Signature: sha1, sha256 (the
	// default), sha384 or sha512 (see SignatureMethods).
	Signature string
	// Retry is the retry policy of failed deliveries.
	Retry RetryPolicy
	// Concurrency bounds the POSTs this node has in flight; PerCallback
	// bounds those to one callback URL (one subscriber with many topics),
	// so a slow or dead callback never takes the slots of the others.
	Concurrency int
	PerCallback int
	// MaxBatch bounds the items of one POST.
	MaxBatch int
	// DeliveryTimeout bounds one delivery POST, VerifyTimeout one
	// verification GET (the fetcher's own limits apply too).
	DeliveryTimeout time.Duration
	VerifyTimeout   time.Duration
	// JobLease is how long a node holds a claimed delivery job before
	// another node may take it over (default DeliveryTimeout + 30 s).
	JobLease time.Duration
	// PollInterval is how often Run looks for due jobs (jobs scheduled on
	// this node are seen at once); SweepInterval how often it compares
	// every callback subscription's progress with its topic; TopicRefresh
	// how often it picks up topics subscribed through other nodes.
	PollInterval  time.Duration
	SweepInterval time.Duration
	TopicRefresh  time.Duration
	// AsyncVerifiers verify hub.verify=async requests and send
	// hub.mode=replay&async=true POSTs; AsyncQueue bounds the requests of
	// each kind waiting for them.
	AsyncVerifiers int
	AsyncQueue     int

	// Live is the node hub through which Run hears of new items (one
	// store listener per node); nil: Run opens a hub of its own.
	Live *live.Hub

	// Registerer receives the metrics (none are registered when nil).
	Registerer prometheus.Registerer
	// Logger logs (slog.Default() when nil).
	Logger *slog.Logger
}

// withDefaults fills in the defaults of unset fields.
func (o Options) withDefaults() Options {
	if o.LeaseMin <= 0 {
		o.LeaseMin = DefaultLeaseMin
	}
	if o.LeaseMax <= 0 {
		o.LeaseMax = DefaultLeaseMax
	}
	if o.LeaseMax < o.LeaseMin {
		o.LeaseMax = o.LeaseMin
	}
	if o.LeaseDefault <= 0 {
		o.LeaseDefault = DefaultLease
	}
	o.LeaseDefault = min(max(o.LeaseDefault, o.LeaseMin), o.LeaseMax)
	if signatureHash(o.Signature) == nil {
		o.Signature = SignSHA256
	}
	o.Retry.fill()
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.PerCallback <= 0 {
		o.PerCallback = DefaultPerCallback
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.DeliveryTimeout <= 0 {
		o.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if o.VerifyTimeout <= 0 {
		o.VerifyTimeout = DefaultVerifyTimeout
	}
	if o.JobLease <= 0 {
		o.JobLease = o.DeliveryTimeout + 30*time.Second
	}
	if o.JobLease < o.DeliveryTimeout+time.Second {
		// A lease shorter than a POST would let another node deliver the
		// same items while this one still waits for the answer.
		o.JobLease = o.DeliveryTimeout + time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.TopicRefresh <= 0 {
		o.TopicRefresh = DefaultTopicRefresh
	}
	if o.AsyncVerifiers <= 0 {
		o.AsyncVerifiers = DefaultAsyncVerifiers
	}
	if o.AsyncQueue <= 0 {
		o.AsyncQueue = DefaultAsyncQueue
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
