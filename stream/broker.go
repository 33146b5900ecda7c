// Package stream serves the live forms of hub.mode=retrieve — wait=stream
// (NDJSON and Atom), Server-Sent Events and WebSocket — and, through package
// poll, wait=poll. At its heart is the node's Broker: one live store
// subscription per topic per node, fanned out in memory to every local
// client, each notification encoded once per format.
//
// Every client joins gap-free: it registers with the broker (live items
// queue up for it), reads history from the store, sends it, then sends the
// queued live items whose cursor is greater than the last one sent. As a
// topic's cursors grow by one per item, any skipped cursor is noticed and
// read from the store, by the broker for everyone and by each client for
// itself.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// Internal limits.
const (
	// readyTimeout bounds how long a joining client waits for its topics'
	// live subscription (the store may be unreachable).
	readyTimeout = 15 * time.Second
	// storeTimeout bounds each store call of the broker's own loops.
	storeTimeout = 5 * time.Second
	// fillPage is how many items one store read fetches when filling a
	// hole or catching up.
	fillPage = 100
	// resyncAttempts bounds re-reads of a topic after the live link came
	// back before its clients are told to reconnect instead.
	resyncAttempts = 4
	// pollQueue is the queue of a held long-poll, which needs one
	// notification.
	pollQueue = 8
)

// Broker is a node's live fan-out. It implements server.Live: ServeStream
// (wait=stream, SSE, WebSocket), ServePoll (wait=poll, through package
// poll) and Healthy.
type Broker struct {
	st   store.Store
	rs   *retrieve.Service
	opts Options
	log  *slog.Logger
	m    *metrics
	poll *poll.Service

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	loops  sync.WaitGroup

	mu          sync.Mutex
	topics      map[string]*topic
	perUser     map[string]int
	clients     map[*client]struct{}
	shutting    bool
	closed      bool
	closing     chan struct{} // closed by Shutdown and Close
	clientsDone sync.WaitGroup

	lmu      sync.Mutex
	listener store.Listener // nil while (re)connecting

	syncWake   chan struct{}
	resyncWake chan struct{}
	resyncMu   sync.Mutex
	resyncSet  map[string]bool
	degraded   atomic.Bool // a resync is under way or failed

	// Batches received from the listener wait here for the fan-out loop,
	// which takes all of them at once: when fan-out falls behind, what
	// queued up meanwhile goes out together.
	pmu     sync.Mutex
	pending []store.Batch
	pwake   chan struct{}
}

var _ poll.Source = (*Broker)(nil)

// New returns a running Broker serving items of st, first answers and
// authorization through rs. Stop it with Shutdown (tell clients to
// reconnect) and Close.
func New(st store.Store, rs *retrieve.Service, opts Options) (*Broker, error) {
	if st == nil || rs == nil {
		return nil, errors.New("stream: New needs a store and a retrieve service")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		st:         st,
		rs:         rs,
		opts:       opts,
		log:        opts.Logger,
		m:          newMetrics(opts.Registry),
		ctx:        ctx,
		cancel:     cancel,
		topics:     make(map[string]*topic),
		perUser:    make(map[string]int),
		clients:    make(map[*client]struct{}),
		closing:    make(chan struct{}),
		syncWake:   make(chan struct{}, 1),
		resyncWake: make(chan struct{}, 1),
		pwake:      make(chan struct{}, 1),
		resyncSet:  make(map[string]bool),
	}
	b.poll = poll.New(b, rs)
	b.loops.Add(3)
	go b.run()
	go b.syncLoop()
	go b.fanOutLoop()
	return b, nil
}

// Healthy reports whether live fan-out works: the store's live link is up
// and nothing announced is waiting to be re-read.
func (b *Broker) Healthy() bool {
	b.lmu.Lock()
	l := b.listener
	b.lmu.Unlock()
	return l != nil && l.Healthy() && !b.degraded.Load()
}

// Shutdown refuses new connections and tells every open stream to
// reconnect (SSE: a comment and retry:, WebSocket: close frame 1012,
// NDJSON and Atom: the response ends, held long-polls answer with no
// items). It returns when every client is gone or ctx ends.
func (b *Broker) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	if !b.shutting {
		b.shutting = true
		close(b.closing)
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		b.clientsDone.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stream: shutdown: clients still connected: %w", ctx.Err())
	}
}

// Close ends every connection that is still open, stops the broker and
// closes its live subscription. The store itself stays open.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	if !b.shutting {
		b.shutting = true
		close(b.closing)
	}
	for c := range b.clients {
		c.drop(reasonShutdown)
	}
	b.mu.Unlock()
	b.cancel()
	b.loops.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		b.clientsDone.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// ServePoll answers wait=poll (package poll).
func (b *Broker) ServePoll(w http.ResponseWriter, r *http.Request, req retrieve.Request) {
	b.poll.ServePoll(w, r, req)
}

// topic is the broker's state of one topic with local clients.
type topic struct {
	name  string
	ready chan struct{} // closed once subscribed and last is known

	// Guarded by Broker.mu.
	refs      int
	idleSince time.Time

	mu    sync.Mutex
	subs  map[*client]struct{}
	last  feed.Cursor // newest cursor announced to clients, or known at ready
	known bool        // last is known (ready passed)
	state store.TopicState
}

func newTopic(name string) *topic {
	return &topic{name: name, ready: make(chan struct{}), subs: make(map[*client]struct{})}
}

func (t *topic) isReady() bool {
	select {
	case <-t.ready:
		return true
	default:
		return false
	}
}

// attach admits a new client for principal p, or refuses it (shutdown,
// per-user limit).
func (b *Broker) attach(p *auth.Principal, k kind, queue int) (*client, error) {
	login := ""
	if p != nil {
		login = p.Login
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shutting {
		b.m.rejected.WithLabelValues("shutdown").Inc()
		return nil, api.Errorf(http.StatusServiceUnavailable, "this gateway node is shutting down; reconnect (to another node) in a moment")
	}
	if limit := b.opts.MaxConnsPerUser; limit > 0 && b.perUser[login] >= limit {
		b.m.rejected.WithLabelValues("user_limit").Inc()
		return nil, api.Errorf(http.StatusTooManyRequests, "you have %d live connections open on this node, the most allowed per user; close one, or merge topics into one stream (hub.topic may repeat)", limit)
	}
	b.perUser[login]++
	c := &client{
		b:      b,
		login:  login,
		kind:   k,
		q:      make(chan *event, queue),
		kick:   make(chan struct{}, 1),
		gone:   make(chan struct{}),
		topics: make(map[string]*topic),
	}
	b.clients[c] = struct{}{}
	b.clientsDone.Add(1)
	b.m.conns[k].Inc()
	return c, nil
}

// lifetime returns the connection's lifetime timer channel (nil when
// unlimited) and a stop function.
func (b *Broker) lifetime() (<-chan time.Time, func()) {
	limit := b.opts.MaxLifetime
	if limit <= 0 {
		return nil, func() {}
	}
	d := limit - time.Duration(rand.Int64N(int64(limit)/10+1))
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// subscribe registers c for names and waits until their live subscription
// is in place: from then on c's queue receives every announcement.
func (b *Broker) subscribe(ctx context.Context, c *client, names ...string) error {
	var wait []*topic
	created := false
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return api.Errorf(http.StatusServiceUnavailable, "this gateway node is shutting down; reconnect in a moment")
	}
	for _, n := range names {
		if _, ok := c.topics[n]; ok {
			continue
		}
		t := b.topics[n]
		if t == nil {
			t = newTopic(n)
			b.topics[n] = t
			created = true
		}
		t.refs++
		t.mu.Lock()
		t.subs[c] = struct{}{}
		t.mu.Unlock()
		c.topics[n] = t
		wait = append(wait, t)
	}
	b.mu.Unlock()
	if created {
		b.wakeSync()
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
		select {
		case <-t.ready:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.gone:
			return c.err()
		case <-b.closing:
			return api.Errorf(http.StatusServiceUnavailable, "this gateway node is shutting down; reconnect (to another node) in a moment")
		case <-timeout:
			return api.Errorf(http.StatusServiceUnavailable, "live delivery of %s is not available right now (the store cannot be reached); retry in a few seconds", t.name)
		}
	}
	return nil
}

// unsubscribe stops delivering names to c.
func (b *Broker) unsubscribe(c *client, names ...string) {
	wake := false
	b.mu.Lock()
	for _, n := range names {
		t, ok := c.topics[n]
		if !ok {
			continue
		}
		delete(c.topics, n)
		t.mu.Lock()
		delete(t.subs, c)
		t.mu.Unlock()
		t.refs--
		if t.refs == 0 {
			t.idleSince = time.Now()
			wake = wake || b.opts.Linger == 0
		}
	}
	b.mu.Unlock()
	if wake {
		b.wakeSync()
	}
}

// detach unsubscribes c from everything and forgets it.
func (b *Broker) detach(c *client) {
	names := make([]string, 0, len(c.topics))
	for n := range c.topics {
		names = append(names, n)
	}
	b.unsubscribe(c, names...)
	b.mu.Lock()
	if _, ok := b.clients[c]; ok {
		delete(b.clients, c)
		if b.perUser[c.login]--; b.perUser[c.login] <= 0 {
			delete(b.perUser, c.login)
		}
		b.m.conns[c.kind].Dec()
		b.clientsDone.Done()
	}
	b.mu.Unlock()
}

func (b *Broker) wakeSync() {
	select {
	case b.syncWake <- struct{}{}:
	default:
	}
}

func (b *Broker) currentListener() store.Listener {
	b.lmu.Lock()
	defer b.lmu.Unlock()
	return b.listener
}

func (b *Broker) setListener(l store.Listener) {
	b.lmu.Lock()
	b.listener = l
	b.lmu.Unlock()
	b.wakeSync()
}

// run opens the live subscription (again, should it end) and dispatches
// its batches until Close.
func (b *Broker) run() {
	defer b.loops.Done()
	pause := 100 * time.Millisecond
	for b.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(b.ctx, storeTimeout)
		l, err := b.st.Listen(ctx)
		cancel()
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			b.log.LogAttrs(b.ctx, slog.LevelWarn, "live subscription failed; retrying", slog.Any("err", err), slog.Duration("in", pause))
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, 5*time.Second)
			continue
		}
		pause = 100 * time.Millisecond
		b.setListener(l)
		b.dispatch(l)
		b.setListener(nil)
		_ = l.Close()
		if b.ctx.Err() == nil {
			b.log.LogAttrs(b.ctx, slog.LevelWarn, "live subscription ended; opening a new one")
		}
	}
}

// dispatch queues l's batches for the fan-out loop until l ends or the
// broker closes.
func (b *Broker) dispatch(l store.Listener) {
	for {
		select {
		case <-b.ctx.Done():
			return
		case bt, ok := <-l.Batches():
			if !ok {
				return
			}
			b.enqueue(bt)
		}
	}
}

// maxPending bounds the batches waiting for fan-out; beyond it they are
// replaced by one Resync, which re-reads every topic from its last
// announced cursor (nothing is lost, memory stays bounded).
const maxPending = 4096

func (b *Broker) enqueue(bt store.Batch) {
	b.pmu.Lock()
	if len(b.pending) >= maxPending {
		clear(b.pending)
		b.pending = append(b.pending[:0], store.Batch{Resync: true})
	} else {
		b.pending = append(b.pending, bt)
	}
	b.pmu.Unlock()
	select {
	case b.pwake <- struct{}{}:
	default:
	}
}

// fanOutLoop announces queued batches and runs requested re-reads until
// Close.
func (b *Broker) fanOutLoop() {
	defer b.loops.Done()
	var batches []store.Batch
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.pwake:
			b.pmu.Lock()
			batches, b.pending = b.pending, batches[:0]
			b.pmu.Unlock()
			b.handle(batches)
			clear(batches)
		case <-b.resyncWake:
			b.resyncMu.Lock()
			names := b.resyncSet
			b.resyncSet = make(map[string]bool)
			b.resyncMu.Unlock()
			var ts []*topic
			for n := range names {
				if t := b.lookup(n); t != nil && t.isReady() {
					ts = append(ts, t)
				}
			}
			b.resync(ts)
		}
	}
}

// handle delivers batches in order, merging a topic's batches whose cursors
// follow each other into one notification.
func (b *Broker) handle(batches []store.Batch) {
	var order []string
	merged := make(map[string][]feed.Item)
	flush := func() {
		for _, name := range order {
			if t := b.lookup(name); t != nil {
				b.deliver(t, merged[name])
			}
		}
		order = order[:0]
		clear(merged)
	}
	for _, bt := range batches {
		switch {
		case bt.Resync:
			flush()
			b.m.resyncs.Inc()
			b.resync(b.readyTopics())
		case len(bt.Items) == 0:
		default:
			items, seen := merged[bt.Topic]
			if seen && bt.Items[0].Cursor != items[len(items)-1].Cursor+1 {
				// Not contiguous: what was merged goes out first.
				flush()
				items, seen = nil, false
			}
			if !seen {
				order = append(order, bt.Topic)
			}
			merged[bt.Topic] = append(items, bt.Items...)
		}
	}
	flush()
}

func (b *Broker) lookup(name string) *topic {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topics[name]
}

func (b *Broker) readyTopics() []*topic {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*topic, 0, len(b.topics))
	for _, t := range b.topics {
		if t.isReady() {
			out = append(out, t)
		}
	}
	return out
}

// deliver announces a batch (oldest first) of t to its clients: items
// already announced are dropped, and skipped cursors are read from the
// store first.
func (b *Broker) deliver(t *topic, items []feed.Item) {
	t.mu.Lock()
	last, known, subs := t.last, t.known, len(t.subs)
	t.mu.Unlock()
	if known {
		items = after(items, last)
		if len(items) == 0 {
			return
		}
		if items[0].Cursor > last+1 && subs > 0 {
			b.m.holes.Inc()
			b.catchUp(t, items[0].Cursor-1)
			t.mu.Lock()
			last = t.last
			t.mu.Unlock()
			if items = after(items, last); len(items) == 0 {
				return
			}
		}
	}
	var state store.TopicState
	if subs > 0 {
		// The topic's state (status, title) is read once per batch for
		// every client of this node.
		ctx, cancel := context.WithTimeout(b.ctx, storeTimeout)
		st, err := b.st.Topic(ctx, t.name)
		cancel()
		if err == nil {
			t.mu.Lock()
			t.state = st
			t.mu.Unlock()
		}
	}
	t.mu.Lock()
	state = t.state
	t.mu.Unlock()
	b.announce(t, state, items)
}

// announce hands items (oldest first, all after t.last once known) to every
// client of t and records the newest cursor.
func (b *Broker) announce(t *topic, state store.TopicState, items []feed.Item) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.known {
		if items = after(items, t.last); len(items) == 0 {
			return
		}
	}
	if len(t.subs) > 0 {
		ev := newEvent(t.name, state, items, b.rs.HubURL())
		b.fanOut(ev, t.subs)
	}
	if c := items[len(items)-1].Cursor; c > t.last || !t.known {
		t.last = c
	}
	t.known = true
}

// catchUp reads t's items after its last announced cursor, up to cursor
// upTo (0: up to the newest), and announces them. It reports whether the
// store answered.
func (b *Broker) catchUp(t *topic, upTo feed.Cursor) bool {
	for {
		t.mu.Lock()
		from := t.last
		t.mu.Unlock()
		if upTo > 0 && from >= upTo {
			return true
		}
		ctx, cancel := context.WithTimeout(b.ctx, storeTimeout)
		page, err := b.st.Read(ctx, t.name, store.Query{From: store.After, Cursor: from, Count: fillPage})
		cancel()
		if err != nil {
			b.log.LogAttrs(b.ctx, slog.LevelWarn, "reading missed items failed", slog.String("topic", t.name), slog.Any("err", err))
			return false
		}
		t.mu.Lock()
		t.state = page.Topic
		t.mu.Unlock()
		if len(page.Items) == 0 {
			return true
		}
		oldest := make([]feed.Item, 0, len(page.Items))
		for i := len(page.Items) - 1; i >= 0; i-- {
			if upTo == 0 || page.Items[i].Cursor <= upTo {
				oldest = append(oldest, page.Items[i])
			}
		}
		if len(oldest) == 0 {
			return true
		}
		b.announce(t, page.Topic, oldest)
		t.mu.Lock()
		progressed := t.last > from
		t.mu.Unlock()
		if !progressed {
			return true
		}
	}
}

// resync re-reads topics from their last announced cursor after the live
// link was interrupted. A topic that cannot be read has its clients
// disconnected: they resume by cursor.
func (b *Broker) resync(ts []*topic) {
	if len(ts) == 0 {
		return
	}
	b.degraded.Store(true)
	defer b.degraded.Store(false)
	pause := 50 * time.Millisecond
	for attempt := 1; len(ts) > 0; attempt++ {
		var failed []*topic
		for _, t := range ts {
			if !b.catchUp(t, 0) {
				failed = append(failed, t)
			}
		}
		ts = failed
		if len(ts) == 0 {
			return
		}
		if attempt == resyncAttempts || b.ctx.Err() != nil {
			break
		}
		select {
		case <-b.ctx.Done():
		case <-time.After(pause):
		}
		pause *= 4
	}
	for _, t := range ts {
		b.log.LogAttrs(b.ctx, slog.LevelWarn, "topic could not be re-read after the live link came back; its clients are told to reconnect", slog.String("topic", t.name))
		t.mu.Lock()
		for c := range t.subs {
			c.drop(reasonLost)
		}
		// Clients that join later read history themselves; the next
		// batch sets the cursor hole detection starts from again.
		t.known = false
		t.mu.Unlock()
	}
}

// after returns the items (oldest first) with a cursor greater than c.
func after(items []feed.Item, c feed.Cursor) []feed.Item {
	for len(items) > 0 && items[0].Cursor <= c {
		items = items[1:]
	}
	return items
}
