package live

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
)

// Kind is the form of a live connection, as metrics label it.
type Kind int

// The kinds of live connections.
const (
	KindNDJSON Kind = iota
	KindAtom
	KindSSE
	KindWebSocket
	KindPoll
	numKinds
)

var kindNames = [numKinds]string{"ndjson", "atom", "sse", "websocket", "poll"}

func (k Kind) String() string { return kindNames[k] }

// Reason says why the gateway ends a live connection.
type Reason int

// The reasons a live connection ends.
const (
	ReasonNone Reason = iota
	// ReasonSlow: the client fell behind (its queue filled up, or a write
	// timed out).
	ReasonSlow
	// ReasonShutdown: the node is shutting down.
	ReasonShutdown
	// ReasonLifetime: the connection reached its maximum lifetime.
	ReasonLifetime
	// ReasonLost: the live link was interrupted and what was missed could
	// not be re-read.
	ReasonLost
	// ReasonGone: the client closed the connection.
	ReasonGone
	// ReasonRevoked: the credential the connection was opened with was
	// removed or replaced.
	ReasonRevoked
	// ReasonExpired: the credential the connection was opened with
	// expired.
	ReasonExpired
)

// Message is the reason as told to the client.
func (r Reason) Message() string {
	switch r {
	case ReasonSlow:
		return "too slow: notifications were not read fast enough; reconnect with the cursor of the last item you received"
	case ReasonShutdown:
		return "the gateway is restarting; reconnect with the cursor of the last item you received"
	case ReasonLifetime:
		return "the connection reached its maximum lifetime; reconnect with the cursor of the last item you received"
	case ReasonLost:
		return "live delivery was interrupted; reconnect with the cursor of the last item you received"
	case ReasonGone:
		return "the client closed the connection"
	case ReasonRevoked:
		return "the credential of this connection was revoked; reconnect with a valid one and the cursor of the last item you received"
	case ReasonExpired:
		return "the credential of this connection expired; reconnect with a fresh one and the cursor of the last item you received"
	}
	return "the connection ends"
}

// Conn is one live connection (a stream, a socket or a held long-poll)
// admitted by the hub: counted against its user's limit, and dropped by
// the hub when the node shuts down or its credential no longer holds.
// Release it when the connection ends.
type Conn struct {
	h     *Hub
	p     *auth.Principal
	login string
	kind  Kind

	// abort interrupts a write in progress; set once the connection is
	// known (SetAbort).
	abort atomic.Pointer[func()]
	// onDrop is told of the drop (OnDrop).
	onDrop atomic.Pointer[func()]

	dropOnce sync.Once
	gone     chan struct{} // closed by Drop
	why      Reason

	released atomic.Bool
}

// Principal returns the caller the connection was opened for (nil when
// none).
func (c *Conn) Principal() *auth.Principal { return c.p }

// Kind returns the connection's form.
func (c *Conn) Kind() Kind { return c.kind }

// Gone is closed when the connection is dropped.
func (c *Conn) Gone() <-chan struct{} { return c.gone }

// Drop ends the connection for r: Gone is closed. When the client cannot
// be told (it is too slow, or gone) a write in progress is interrupted as
// well; otherwise the transport says goodbye as its form allows. It
// reports whether this call dropped it (the first one does).
func (c *Conn) Drop(r Reason) bool {
	first := false
	c.dropOnce.Do(func() {
		first = true
		c.why = r
		close(c.gone)
		if r == ReasonSlow || r == ReasonGone {
			c.interrupt()
		}
		if f := c.onDrop.Load(); f != nil {
			(*f)()
		}
	})
	return first
}

// OnDrop sets a function called when the connection is dropped (at once
// when it was dropped before; set while it is being dropped, f may be
// called twice): a transport whose connection has no goroutine waiting on
// Gone wakes one with it. f must not block.
func (c *Conn) OnDrop(f func()) {
	c.onDrop.Store(&f)
	select {
	case <-c.gone:
		f()
	default:
	}
}

// interrupt makes a write in progress (or the next one) fail now.
func (c *Conn) interrupt() {
	if f := c.abort.Load(); f != nil {
		(*f)()
	}
}

// SetAbort sets how to interrupt the connection's writes; a connection
// dropped before because it could not be told has them interrupted at
// once.
func (c *Conn) SetAbort(f func()) {
	c.abort.Store(&f)
	if r := c.Reason(); r == ReasonSlow || r == ReasonGone {
		f()
	}
}

// Reason returns why the connection was dropped (ReasonNone while it is
// not).
func (c *Conn) Reason() Reason {
	select {
	case <-c.gone:
		return c.why
	default:
		return ReasonNone
	}
}

// Err is the error of a dropped connection, for an answer not yet sent.
func (c *Conn) Err() error {
	r := c.Reason()
	status := http.StatusServiceUnavailable
	if r == ReasonRevoked || r == ReasonExpired {
		status = http.StatusUnauthorized
	}
	return api.Errorf(status, "%s", r.Message())
}

// Release forgets the connection; later calls do nothing.
func (c *Conn) Release() {
	if c.released.Swap(true) {
		return
	}
	c.h.conns.release(c)
}

// conns are the node's live connections.
type conns struct {
	h        *Hub
	mu       sync.Mutex
	all      map[*Conn]struct{}
	perUser  map[string]int
	shutting bool
	closing  chan struct{} // closed at shutdown
	open     sync.WaitGroup
}

func (cs *conns) init(h *Hub) {
	cs.h = h
	cs.all = make(map[*Conn]struct{})
	cs.perUser = make(map[string]int)
	cs.closing = make(chan struct{})
}

// Admit registers a new live connection of kind k for principal p (nil:
// anonymous), or refuses it: the node is shutting down (503), or the user
// has as many open as allowed (429).
func (h *Hub) Admit(p *auth.Principal, k Kind) (*Conn, error) {
	login := ""
	if p != nil {
		login = p.Login
	}
	cs := &h.conns
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.shutting {
		h.m.rejected.WithLabelValues("shutdown").Inc()
		return nil, errShuttingDown()
	}
	if limit := h.opts.MaxConnsPerUser; limit > 0 && cs.perUser[login] >= limit {
		h.m.rejected.WithLabelValues("user_limit").Inc()
		e := api.Errorf(http.StatusTooManyRequests, "you have %d live connections open on this node, the most allowed per user; close one, or merge topics into one stream (hub.topic may repeat)", limit)
		// Every 429 says when to retry; when one of the user's connections
		// ends cannot be known, so this is a short hint.
		e.Header = http.Header{"Retry-After": {"5"}}
		return nil, e
	}
	cs.perUser[login]++
	c := &Conn{h: h, p: p, login: login, kind: k, gone: make(chan struct{})}
	cs.all[c] = struct{}{}
	cs.open.Add(1)
	h.m.conns[k].Inc()
	return c, nil
}

func (cs *conns) release(c *Conn) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.all[c]; !ok {
		return
	}
	delete(cs.all, c)
	if cs.perUser[c.login]--; cs.perUser[c.login] <= 0 {
		delete(cs.perUser, c.login)
	}
	cs.h.m.conns[c.kind].Dec()
	cs.open.Done()
}

// Closing is closed when the node starts shutting down.
func (h *Hub) Closing() <-chan struct{} { return h.conns.closing }

// shutdown refuses new connections and drops the open ones for r; with
// force, their writes in progress are interrupted too.
func (cs *conns) shutdown(r Reason, force bool) {
	cs.mu.Lock()
	if !cs.shutting {
		cs.shutting = true
		close(cs.closing)
	}
	all := make([]*Conn, 0, len(cs.all))
	for c := range cs.all {
		all = append(all, c)
	}
	cs.mu.Unlock()
	for _, c := range all {
		c.Drop(r)
		if force {
			c.interrupt()
		}
	}
}

// Shutdown refuses new connections and tells every open one to reconnect
// (each transport says it as its form allows). It returns when every
// connection is released or ctx ends.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.conns.shutdown(ReasonShutdown, false)
	done := make(chan struct{})
	go func() {
		h.conns.open.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("live: shutdown: connections still open: %w", ctx.Err())
	}
}

// DropUser drops the live connections of login on this node (for r).
func (h *Hub) DropUser(login string, r Reason) int {
	cs := &h.conns
	var drop []*Conn
	cs.mu.Lock()
	for c := range cs.all {
		if c.login == login {
			drop = append(drop, c)
		}
	}
	cs.mu.Unlock()
	n := 0
	for _, c := range drop {
		if c.Drop(r) {
			n++
		}
	}
	return n
}

// revalidateLoop drops, every RevalidateEvery, the connections whose
// credential no longer holds.
func (cs *conns) revalidateLoop() {
	h := cs.h
	defer h.loops.Done()
	tick := time.NewTicker(h.opts.RevalidateEvery)
	defer tick.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-tick.C:
		}
		cs.revalidate()
	}
}

func (cs *conns) revalidate() {
	h := cs.h
	byPrincipal := make(map[*auth.Principal][]*Conn)
	cs.mu.Lock()
	for c := range cs.all {
		if c.p != nil {
			byPrincipal[c.p] = append(byPrincipal[c.p], c)
		}
	}
	cs.mu.Unlock()
	for p, list := range byPrincipal {
		ctx, cancel := context.WithTimeout(h.ctx, storeTimeout)
		err := h.opts.Revalidate(ctx, p)
		cancel()
		var r Reason
		switch {
		case errors.Is(err, auth.ErrExpired):
			r = ReasonExpired
		case errors.Is(err, auth.ErrRevoked):
			r = ReasonRevoked
		default:
			// Still valid, or an unreachable store, which proves
			// nothing: keep serving.
			continue
		}
		n := 0
		for _, c := range list {
			if c.Drop(r) {
				n++
			}
		}
		if n > 0 {
			h.m.revoked.Add(float64(n))
			h.log.LogAttrs(h.ctx, slog.LevelInfo, "live connections ended: their credential no longer holds", slog.String("login", p.Login), slog.Int("connections", n), slog.String("reason", err.Error()))
		}
	}
}

// ConnCount is how many live connections of one kind a user holds on this
// node (the admin API's view).
type ConnCount struct {
	Login string `json:"login"`
	Kind  string `json:"kind"`
	Count int    `json:"count"`
}

// Connections returns this node's live connections counted by user and
// kind, ordered by login then kind.
func (h *Hub) Connections() []ConnCount {
	cs := &h.conns
	type key struct {
		login string
		kind  Kind
	}
	n := map[key]int{}
	cs.mu.Lock()
	for c := range cs.all {
		n[key{c.login, c.kind}]++
	}
	cs.mu.Unlock()
	out := make([]ConnCount, 0, len(n))
	for k, v := range n {
		out = append(out, ConnCount{Login: k.login, Kind: k.kind.String(), Count: v})
	}
	slices.SortFunc(out, func(a, b ConnCount) int {
		return cmp.Or(cmp.Compare(a.Login, b.Login), cmp.Compare(a.Kind, b.Kind))
	})
	return out
}

// TopicConnections returns, for each topic followed by live connections on
// this node (streams, sockets, held long-polls), how many follow it. Other
// consumers of a topic (the retrieve cache, webhook scheduling) are not
// counted.
func (h *Hub) TopicConnections() map[string]int {
	h.mu.Lock()
	ts := make([]*topic, 0, len(h.topics))
	for _, t := range h.topics {
		ts = append(ts, t)
	}
	h.mu.Unlock()
	out := make(map[string]int)
	for _, t := range ts {
		n := 0
		t.cmu.RLock()
		for _, c := range t.cons {
			if _, ok := c.(interface{ isConn() }); ok {
				n++
			}
		}
		t.cmu.RUnlock()
		if n > 0 {
			out[t.name] = n
		}
	}
	return out
}

// isConn marks the consumers that are live connections (types embedding
// *Conn), for TopicConnections.
func (c *Conn) isConn() {}
