package admin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/store"
)

// Defaults of the console's live view.
const (
	// DefaultRefresh is how often the overview is recomputed while a
	// console follows it.
	DefaultRefresh = time.Second
	// overviewTopics bounds the topics of an overview (the first ones in
	// order; TopicsTotal says how many there are).
	overviewTopics = 500
	// eventsKeepalive is the interval of SSE comment lines when nothing
	// changes, so proxies and the browser keep the stream open.
	eventsKeepalive = 15 * time.Second
	// eventsWriteTimeout bounds a write to a console that stopped reading.
	eventsWriteTimeout = 10 * time.Second
)

// Overview is everything the admin console shows, as one document:
// GET /admin/api/overview, and each event of GET /admin/api/events.
type Overview struct {
	Time time.Time `json:"time"`
	// Node is the id of the node that answered.
	Node  string `json:"node"`
	Nodes []Node `json:"nodes"`
	// Connections counts the live connections of every node.
	Connections int            `json:"connections"`
	Users       []UserInfo     `json:"users"`
	Topics      []TopicInfo    `json:"topics"`
	TopicsTotal int            `json:"topicsTotal"`
	Deliveries  []DeliveryInfo `json:"deliveries"`
	// DeliveryQueue is the depth of the webhook delivery queue.
	DeliveryQueue DeliveryQueue `json:"deliveryQueue"`
	// Error says what could not be read (the store is unreachable); the
	// rest of the document is then empty.
	Error string `json:"error,omitempty"`
}

// DeliveryQueue counts webhook subscriptions, the delivery jobs due and
// those being worked.
type DeliveryQueue struct {
	Deliveries int `json:"deliveries"`
	Due        int `json:"due"`
	Leased     int `json:"leased"`
}

// overview reads the whole overview.
func (a *API) overview(ctx context.Context) (Overview, error) {
	now := time.Now()
	o := Overview{Time: now, Node: a.Node.ID}
	var err error
	if o.Nodes, err = a.nodeList(ctx); err != nil {
		return o, err
	}
	for _, n := range o.Nodes {
		o.Connections += n.Connections
	}
	if o.Users, err = a.Users.List(ctx); err != nil {
		return o, err
	}
	if o.Topics, o.TopicsTotal, err = a.topics(ctx, overviewTopics, topicConnections(o.Nodes)); err != nil {
		return o, err
	}
	if o.Deliveries, err = a.deliveries(ctx); err != nil {
		return o, err
	}
	if a.Deliveries != nil {
		st, err := a.Deliveries.DeliveryStats(ctx, now)
		if err != nil {
			return o, err
		}
		o.DeliveryQueue = DeliveryQueue{Deliveries: st.Deliveries, Due: st.Due, Leased: st.Leased}
	}
	return o, nil
}

func (a *API) getOverview(w http.ResponseWriter, r *http.Request) error {
	o, err := a.overview(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, o)
}

// overviewEvent renders an overview as the data of an SSE event; a read
// that failed becomes an overview that says why.
func (a *API) overviewEvent(ctx context.Context) []byte {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	o, err := a.overview(ctx)
	if err != nil {
		o = Overview{Time: time.Now(), Node: a.Node.ID, Error: readError(err)}
	}
	b, err := json.Marshal(o)
	if err != nil {
		b = fmt.Appendf(nil, `{"error":%q}`, err.Error())
	}
	return b
}

func readError(err error) string {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return "the store is unavailable; the view resumes when it answers again"
	}
	return err.Error()
}

// broadcast computes the overview once per refresh for every console
// following it. Its loop runs while someone follows: the first follower
// starts it, it ends one refresh after the last left.
type broadcast struct {
	mu      sync.Mutex
	subs    map[chan []byte]struct{}
	last    []byte
	running bool
}

// follow adds a follower; it receives the latest overview at once (when
// there is one) and every change after. Its channel holds only the newest
// overview: a slow follower skips states, never falls behind.
func (a *API) follow() (chan []byte, func()) {
	b := &a.feed
	ch := make(chan []byte, 1)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[chan []byte]struct{})
	}
	b.subs[ch] = struct{}{}
	if b.last != nil {
		ch <- b.last
	}
	if !b.running {
		b.running = true
		b.last = nil
		go a.refreshLoop()
	}
	b.mu.Unlock()
	return ch, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	}
}

// refreshLoop recomputes the overview and hands what changed to the
// followers, until none is left.
func (a *API) refreshLoop() {
	b := &a.feed
	every := cmp.Or(a.Refresh, DefaultRefresh)
	t := time.NewTimer(0)
	defer t.Stop()
	for range t.C {
		b.mu.Lock()
		if len(b.subs) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ev := a.overviewEvent(context.Background())
		b.mu.Lock()
		if !bytes.Equal(ev, b.last) {
			b.last = ev
			for ch := range b.subs {
				select {
				case <-ch: // drop the older state not yet taken
				default:
				}
				ch <- ev
			}
		}
		b.mu.Unlock()
		t.Reset(every)
	}
}

// serveEvents answers GET /admin/api/events: a Server-Sent Events stream of
// overviews, one `overview` event whenever it changes. It ends when the
// caller's credential is removed, rotated or expires (an `end` event says
// why).
func (a *API) serveEvents(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return nil
	}
	_ = rc.Flush()
	ch, leave := a.follow()
	defer leave()
	ctx := r.Context()
	p := auth.FromContext(ctx)
	recheck := time.NewTicker(a.Auth.RevalidateEvery())
	defer recheck.Stop()
	keepalive := time.NewTicker(eventsKeepalive)
	defer keepalive.Stop()
	seq := 0
	for {
		var err error
		_ = rc.SetWriteDeadline(time.Now().Add(eventsWriteTimeout))
		select {
		case <-ctx.Done():
			return nil
		case ev := <-ch:
			seq++
			_, err = fmt.Fprintf(w, "event: overview\nid: %d\ndata: %s\n\n", seq, ev)
		case <-keepalive.C:
			_, err = fmt.Fprint(w, ": keep-alive\n\n")
		case <-recheck.C:
			verr := a.Auth.Revalidate(ctx, p)
			if errors.Is(verr, auth.ErrRevoked) || errors.Is(verr, auth.ErrExpired) {
				b, _ := json.Marshal(map[string]string{"error": verr.Error()})
				fmt.Fprintf(w, "event: end\ndata: %s\n\n", b)
				_ = rc.Flush()
				return nil
			}
			continue
		}
		if err != nil {
			return nil
		}
		if err := rc.Flush(); err != nil {
			return nil
		}
	}
}
