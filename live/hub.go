// Package live is the node hub: the one place a gateway node hears of new
// items. It owns the node's single live subscription to the store (a
// store.Listener), keeps on it exactly the topics some consumer of the
// node wants (reference counts from every consumer), reopens it when it
// breaks and then re-reads each topic once from its last cursor, and fans
// each notification out to the topic's consumers: stream clients, held
// long-polls, the retrieve cache and webhook scheduling.
//
// An announcement carries the items and the topic's state as of the
// append, so delivering a notification reads nothing from the store. The
// hub tracks the newest cursor announced per topic; as cursors grow by one
// per item, an announcement that skips cursors (a lost message) is held
// while the missing items are read from the store, off the fan-out path,
// and the topic's later announcements wait behind it so that consumers get
// every item once and in order. Fan-out is sharded by topic over workers;
// each notification is encoded once per form, and the same bytes go to
// every client.
//
// The hub also keeps the node's live connections (see Conn): per-user
// limits, shutdown, and the revalidation of their credentials.
package live

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// Consumer receives the notifications of the topics it subscribed to.
type Consumer interface {
	// Notify hands over a notification of one of the consumer's topics.
	// It is called by a fan-out worker, in cursor order per topic, with
	// items directly following the previous notification's; it must not
	// block, and must not call Subscribe or Unsubscribe.
	Notify(n *Notification)
	// Lost says that announcements of topic were lost and could not be
	// read from the store (it was unreachable for too long after the live
	// link came back): the consumer must start the topic over from its
	// own cursor. The same rules as Notify apply.
	Lost(topic string)
}

// Defaults of Options.
const (
	DefaultLinger          = 5 * time.Second
	DefaultFillers         = 8
	DefaultRevalidateEvery = 2 * time.Second
)

// Internal limits.
const (
	// readyTimeout bounds how long Subscribe waits for a topic's live
	// subscription (the store may be unreachable).
	readyTimeout = 15 * time.Second
	// storeTimeout bounds each store call of the hub's own loops.
	storeTimeout = 5 * time.Second
	// fillPage is how many items one store read fetches when filling a
	// hole or catching up.
	fillPage = 100
	// fillAttempts bounds the reads of a topic's missing items before its
	// consumers are told they were lost.
	fillAttempts = 4
	// maxHeld bounds the announcements held behind a fill; beyond it they
	// are dropped and the fill reads up to the newest item instead.
	maxHeld = 1024
	// fanOutChunk is the number of consumers below which one worker fans
	// a notification out alone; above it the work is split over
	// GOMAXPROCS goroutines.
	fanOutChunk = 256
)

// Options tune a Hub. The zero value is usable.
type Options struct {
	// HubURL is the gateway's hub URL, the rel=hub link of Atom documents.
	HubURL string
	// Linger keeps a topic's live subscription this long after its last
	// consumer left, so that reconnecting clients find it ready. Default
	// 5 s; negative: drop it at once.
	Linger time.Duration
	// Shards is the number of fan-out workers, each owning the topics
	// that hash to it (default GOMAXPROCS).
	Shards int
	// Fillers bounds the store reads run at once to fill holes and to
	// re-read topics after the live link came back. Default 8.
	Fillers int
	// MaxConnsPerUser bounds the live connections (streams, sockets, held
	// long-polls) a user may have open on this node (429 beyond); 0: no
	// limit.
	MaxConnsPerUser int
	// Revalidate, when set, is asked every RevalidateEvery whether the
	// credential of each connected principal still holds: an error
	// matching auth.ErrRevoked or auth.ErrExpired drops the principal's
	// connections (ReasonRevoked, ReasonExpired); other errors (an
	// unreachable store) change nothing. It must answer for removals made
	// on other nodes too (auth.Authenticator.Revalidate does).
	Revalidate func(ctx context.Context, p *auth.Principal) error
	// RevalidateEvery is the period of Revalidate. Default 2 s.
	RevalidateEvery time.Duration
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// Registry receives the metrics (none when nil).
	Registry prometheus.Registerer
}

func (o Options) withDefaults() (Options, error) {
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.Linger < 0 {
		o.Linger = 0
	}
	if o.Shards == 0 {
		o.Shards = runtime.GOMAXPROCS(0)
	}
	if o.Fillers == 0 {
		o.Fillers = DefaultFillers
	}
	if o.RevalidateEvery == 0 {
		o.RevalidateEvery = DefaultRevalidateEvery
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Shards < 1:
		return o, fmt.Errorf("live: Shards must be at least 1 (got %d)", o.Shards)
	case o.Fillers < 1:
		return o, fmt.Errorf("live: Fillers must be at least 1 (got %d)", o.Fillers)
	case o.MaxConnsPerUser < 0:
		return o, fmt.Errorf("live: MaxConnsPerUser must be 0 (no limit) or positive (got %d)", o.MaxConnsPerUser)
	case o.RevalidateEvery < 0:
		return o, fmt.Errorf("live: RevalidateEvery must be positive (got %v)", o.RevalidateEvery)
	}
	return o, nil
}

// Source is what the hub needs of the store: reads by cursor, and the
// live subscription.
type Source interface {
	store.Items
	store.Live
}

// Hub is a node's live fan-out. Create it with New; stop it with Shutdown
// (tell connections to reconnect) and Close.
type Hub struct {
	st   Source
	opts Options
	log  *slog.Logger
	m    *metrics
	seed maphash.Seed

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	loops  sync.WaitGroup

	mu     sync.Mutex
	topics map[string]*topic
	closed bool

	lmu      sync.Mutex
	listener store.Listener // nil while (re)connecting
	syncWake chan struct{}

	shards    []*shard
	fills     fillQueue
	resyncing atomic.Int64 // topics being re-read after the link came back

	conns conns
}

// New returns a running Hub over st.
func New(st Source, opts Options) (*Hub, error) {
	if st == nil {
		return nil, errors.New("live: New needs a store")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		st:       st,
		opts:     opts,
		log:      opts.Logger,
		m:        newMetrics(opts.Registry),
		seed:     maphash.MakeSeed(),
		ctx:      ctx,
		cancel:   cancel,
		topics:   make(map[string]*topic),
		syncWake: make(chan struct{}, 1),
	}
	h.fills.init()
	h.conns.init(h)
	h.shards = make([]*shard, opts.Shards)
	for i := range h.shards {
		h.shards[i] = &shard{h: h, wake: make(chan struct{}, 1)}
	}
	h.loops.Add(2 + len(h.shards) + opts.Fillers)
	go h.run()
	go h.syncLoop()
	for _, s := range h.shards {
		go s.loop()
	}
	for range opts.Fillers {
		go h.fillLoop()
	}
	if opts.Revalidate != nil {
		h.loops.Add(1)
		go h.conns.revalidateLoop()
	}
	return h, nil
}

// HubURL returns the hub URL notifications name.
func (h *Hub) HubURL() string { return h.opts.HubURL }

// Healthy reports whether live fan-out works: the store's live link is up
// and no topic is waiting to be re-read after it came back.
func (h *Hub) Healthy() bool {
	l := h.currentListener()
	return l != nil && l.Healthy() && h.resyncing.Load() == 0
}

// Close drops every connection still open, stops the hub and closes its
// live subscription. The store itself stays open.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.conns.shutdown(ReasonShutdown, true)
	h.cancel()
	h.loops.Wait()
	return nil
}

// topic is the hub's state of one topic some consumer wants.
type topic struct {
	name  string
	shard *shard
	ready chan struct{} // closed once subscribed and last is known

	// Guarded by Hub.mu.
	refs      int
	idleSince time.Time

	// cmu guards the consumers; fan-out holds it for reading.
	cmu  sync.RWMutex
	cons []Consumer
	idx  map[Consumer]int

	// smu guards the announcement state.
	smu     sync.Mutex
	last    feed.Cursor // newest cursor announced, or known at ready
	known   bool        // last is known
	state   store.TopicState
	filling bool          // a fill of missing items is under way
	held    []store.Batch // announcements waiting for the fill
	// catchUp asks for another read up to the newest item once the fill
	// under way ends (the link came back meanwhile, or too much was held).
	catchUp bool
	// resync: the fill under way counts in Hub.resyncing.
	resync bool
}

func (t *topic) isReady() bool {
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

// add registers c; false when it was registered already.
func (t *topic) add(c Consumer) bool {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	if _, ok := t.idx[c]; ok {
		return false
	}
	t.idx[c] = len(t.cons)
	t.cons = append(t.cons, c)
	return true
}

// remove unregisters c; false when it was not registered.
func (t *topic) remove(c Consumer) bool {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	i, ok := t.idx[c]
	if !ok {
		return false
	}
	last := len(t.cons) - 1
	if i != last {
		t.cons[i] = t.cons[last]
		t.idx[t.cons[i]] = i
	}
	t.cons[last] = nil
	t.cons = t.cons[:last]
	delete(t.idx, c)
	if len(t.cons) == 0 && cap(t.cons) > 64 {
		t.cons = nil
	}
	return true
}

func (t *topic) consumers() int {
	t.cmu.RLock()
	defer t.cmu.RUnlock()
	return len(t.cons)
}

func (h *Hub) shardOf(name string) *shard {
	return h.shards[maphash.String(h.seed, name)%uint64(len(h.shards))]
}

// errShuttingDown is the answer to a live request on a node going away.
func errShuttingDown() error {
	return api.Errorf(http.StatusServiceUnavailable, "this gateway node is shutting down; reconnect (to another node) in a moment")
}

// Subscribe registers c for the topics and waits until their live
// subscription is in place: from then on every item appended to them
// reaches c, so a consumer that reads a topic's history after Subscribe
// returns misses nothing. On failure c is not subscribed to any of them.
func (h *Hub) Subscribe(ctx context.Context, c Consumer, names ...string) error {
	var wait, added []*topic
	created := false
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return errShuttingDown()
	}
	for _, n := range names {
		t := h.topics[n]
		if t == nil {
			t = &topic{name: n, shard: h.shardOf(n), ready: make(chan struct{}), idx: make(map[Consumer]int)}
			h.topics[n] = t
			created = true
		}
		if t.add(c) {
			t.refs++
			added = append(added, t)
		}
		wait = append(wait, t)
	}
	h.mu.Unlock()
	if created {
		h.wakeSync()
	}
	var timeout <-chan time.Time
	for _, t := range wait {
		if t.isReady() {
			continue
		}
		if timeout == nil {
			tm := time.NewTimer(readyTimeout)
			defer tm.Stop()
			timeout = tm.C
		}
		var err error
		select {
		case <-t.ready:
			continue
		case <-ctx.Done():
			err = ctx.Err()
		case <-h.ctx.Done():
			err = errShuttingDown()
		case <-timeout:
			err = api.Errorf(http.StatusServiceUnavailable, "live delivery of %s is not available right now (the store cannot be reached); retry in a few seconds", t.name)
		}
		h.release(c, added)
		return err
	}
	return nil
}

// Unsubscribe stops delivering the topics to c.
func (h *Hub) Unsubscribe(c Consumer, names ...string) {
	ts := make([]*topic, 0, len(names))
	h.mu.Lock()
	for _, n := range names {
		if t := h.topics[n]; t != nil {
			ts = append(ts, t)
		}
	}
	h.mu.Unlock()
	h.release(c, ts)
}

func (h *Hub) release(c Consumer, ts []*topic) {
	wake := false
	now := time.Now()
	h.mu.Lock()
	for _, t := range ts {
		if !t.remove(c) {
			continue
		}
		t.refs--
		if t.refs == 0 {
			t.idleSince = now
			wake = wake || h.opts.Linger == 0
		}
	}
	h.mu.Unlock()
	if wake {
		h.wakeSync()
	}
}

// Topics returns how many topics the hub holds a subscription for.
func (h *Hub) Topics() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.topics)
}

func (h *Hub) lookup(name string) *topic {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topics[name]
}

func (h *Hub) wakeSync() {
	select {
	case h.syncWake <- struct{}{}:
	default:
	}
}

// after returns the items (oldest first) with a cursor greater than c.
func after(items []feed.Item, c feed.Cursor) []feed.Item {
	for len(items) > 0 && items[0].Cursor <= c {
		items = items[1:]
	}
	return items
}
