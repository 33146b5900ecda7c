package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/store"
)

const waitLimit = 20 * time.Second

func openEmbedded(t *testing.T) store.Store { return teststore.Embedded(t, store.Options{}) }

func openRedis(t *testing.T, srv *redistest.Server) store.Store {
	return teststore.Redis(t, srv.URL(), store.Options{})
}

func forEachStore(t *testing.T, f func(t *testing.T, st store.Store)) {
	teststore.ForEach(t, store.Options{}, f)
}

func newHub(t *testing.T, src Source, opts Options) *Hub {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	h, err := New(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// recorder is a consumer that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	got    map[string][]*Notification
	lost   map[string]int
	signal chan struct{}
}

func newRecorder() *recorder {
	return &recorder{got: make(map[string][]*Notification), lost: make(map[string]int), signal: make(chan struct{}, 1)}
}

func (r *recorder) Notify(n *Notification) {
	r.mu.Lock()
	r.got[n.Topic] = append(r.got[n.Topic], n)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Lost(topic string) {
	r.mu.Lock()
	r.lost[topic]++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// cursors returns the cursors received for topic, in the order received
// (each notification's items oldest first).
func (r *recorder) cursors(topic string) []feed.Cursor {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []feed.Cursor
	for _, n := range r.got[topic] {
		for i := len(n.N.Items) - 1; i >= 0; i-- {
			out = append(out, n.N.Items[i].Cursor)
		}
	}
	return out
}

func (r *recorder) lostCount(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost[topic]
}

// waitUntil waits for cond, checked whenever r is given something, for at
// most waitLimit.
func (r *recorder) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-r.signal:
		case <-tick.C:
		case <-limit.C:
			t.Fatalf("no %s within %v", what, waitLimit)
		}
	}
}

// wantRun checks that cs is exactly from..to.
func wantRun(t *testing.T, what string, cs []feed.Cursor, from, to feed.Cursor) {
	t.Helper()
	if len(cs) != int(to-from+1) {
		t.Fatalf("%s: cursors %v, want %d..%d once each", what, cs, from, to)
	}
	for i, c := range cs {
		if c != from+feed.Cursor(i) {
			t.Fatalf("%s: cursors %v, want %d..%d in order", what, cs, from, to)
		}
	}
}

func items(prefix string, n int) []feed.Item {
	out := make([]feed.Item, n)
	for i := range out {
		id := fmt.Sprintf("%s-%d", prefix, i)
		out[i] = feed.Item{ID: id, Hash: id, Title: id}
	}
	return out
}

func appendN(t *testing.T, st store.Store, topic, prefix string, n int) []feed.Item {
	t.Helper()
	stored, err := st.Append(ctxT(t), topic, items(prefix, n))
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func waitHealthy(t *testing.T, h *Hub) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !h.Healthy() {
		if time.Now().After(deadline) {
			t.Fatalf("the hub was not healthy within %v", waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNotificationsCarryItemsAndState: every consumer of a topic gets
// every item once, in order, with the topic's state as of the append, on
// several topics at once (sharded over workers).
func TestNotificationsCarryItemsAndState(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		h := newHub(t, st, Options{Shards: 3})
		ctx := ctxT(t)
		topics := []string{"https://a.example/1", "https://a.example/2", "https://a.example/3", "https://a.example/4"}
		a, b := newRecorder(), newRecorder()
		if err := h.Subscribe(ctx, a, topics...); err != nil {
			t.Fatal(err)
		}
		if err := h.Subscribe(ctx, b, topics[0]); err != nil {
			t.Fatal(err)
		}
		if err := st.UpdateTopic(ctx, topics[0], func(ts *store.TopicState) error {
			ts.Meta.Title = "Feed one"
			ts.Status.HTTP = "published: 3 entries"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i, topic := range topics {
			wg.Go(func() {
				for j := range 5 {
					if _, err := st.Append(ctx, topic, items(fmt.Sprint("t", i, "b", j), 3)); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		for _, topic := range topics {
			a.waitUntil(t, "15 items of "+topic, func() bool { return len(a.cursors(topic)) >= 15 })
			wantRun(t, topic, a.cursors(topic), 1, 15)
		}
		b.waitUntil(t, "15 items on the second consumer", func() bool { return len(b.cursors(topics[0])) >= 15 })
		wantRun(t, "second consumer", b.cursors(topics[0]), 1, 15)
		b.mu.Lock()
		n := b.got[topics[0]][0]
		b.mu.Unlock()
		if n.N.Status.Title != "Feed one" || n.N.Meta.Title != "Feed one" || n.N.Status.HTTP != "published: 3 entries" || n.N.Status.Feed != topics[0] {
			t.Errorf("first notification's status %+v, meta title %q: want the state stored before the append", n.N.Status, n.N.Meta.Title)
		}
		if len(b.got[topics[1]]) != 0 {
			t.Error("a consumer got notifications of a topic it did not subscribe to")
		}
	})
}

// TestManyConsumersOneTopic: a notification reaches every consumer of a
// topic with more consumers than one worker takes (the fan-out splits).
func TestManyConsumersOneTopic(t *testing.T) {
	st := openEmbedded(t)
	h := newHub(t, st, Options{})
	const topic = "https://a.example/many"
	var got atomic.Int64
	cs := make([]*counter, 3*fanOutChunk+7)
	for i := range cs {
		cs[i] = &counter{n: &got}
		if err := h.Subscribe(ctxT(t), cs[i], topic); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, st, topic, "m", 2)
	deadline := time.Now().Add(waitLimit)
	for got.Load() < int64(2*len(cs)) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d deliveries within %v", got.Load(), 2*len(cs), waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, c := range cs {
		if c.last.Load() != 2 {
			t.Fatalf("consumer %d ends at cursor %d, want 2", i, c.last.Load())
		}
	}
}

type counter struct {
	n    *atomic.Int64
	last atomic.Int64
}

func (c *counter) Notify(n *Notification) {
	c.n.Add(int64(len(n.N.Items)))
	c.last.Store(int64(n.Last))
}
func (c *counter) Lost(string) {}

// lossy is a store whose live announcements can be lost, and whose reads
// can fail: the faults of a real link, around a real store.
type lossy struct {
	store.Store
	drop     func(b store.Batch) bool
	mu       sync.Mutex
	readErr  error
	readsCut chan struct{} // closed on the first failed read
	cutOnce  sync.Once
}

func (l *lossy) setDrop(f func(store.Batch) bool) {
	l.mu.Lock()
	l.drop = f
	l.mu.Unlock()
}

func (l *lossy) failReads(err error) {
	l.mu.Lock()
	l.readErr = err
	l.mu.Unlock()
}

func (l *lossy) Read(ctx context.Context, topic string, q store.Query) (store.Page, error) {
	l.mu.Lock()
	err := l.readErr
	l.mu.Unlock()
	if err != nil {
		l.cutOnce.Do(func() { close(l.readsCut) })
		return store.Page{}, err
	}
	return l.Store.Read(ctx, topic, q)
}

func (l *lossy) Listen(ctx context.Context) (store.Listener, error) {
	inner, err := l.Store.Listen(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan store.Batch)
	ll := &lossyListener{Listener: inner, out: out}
	go func() {
		defer close(out)
		for b := range inner.Batches() {
			l.mu.Lock()
			drop := l.drop != nil && l.drop(b)
			l.mu.Unlock()
			if !drop {
				out <- b
			}
		}
	}()
	return ll, nil
}

type lossyListener struct {
	store.Listener
	out chan store.Batch
}

func (l *lossyListener) Batches() <-chan store.Batch { return l.out }

// dropPrefixes loses the announcements of items whose id starts with
// prefix.
func dropPrefixes(prefix string) func(store.Batch) bool {
	return func(b store.Batch) bool {
		return len(b.Items) > 0 && strings.HasPrefix(b.Items[0].ID, prefix)
	}
}

// TestHoleIsFilled: announcements lost in between are read from the store
// when the next one arrives; the consumer gets every item once, in order.
func TestHoleIsFilled(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		src := &lossy{Store: st, readsCut: make(chan struct{})}
		h := newHub(t, src, Options{})
		const topic = "https://a.example/holes"
		r := newRecorder()
		if err := h.Subscribe(ctxT(t), r, topic); err != nil {
			t.Fatal(err)
		}
		src.setDrop(dropPrefixes("lost"))
		appendN(t, st, topic, "a", 1)
		r.waitUntil(t, "the first item", func() bool { return len(r.cursors(topic)) == 1 })
		appendN(t, st, topic, "lost1", 2)
		appendN(t, st, topic, "lost2", 3)
		appendN(t, st, topic, "d", 1)
		appendN(t, st, topic, "e", 2)
		r.waitUntil(t, "9 items", func() bool { return len(r.cursors(topic)) >= 9 })
		wantRun(t, "after lost announcements", r.cursors(topic), 1, 9)
		if n := r.lostCount(topic); n != 0 {
			t.Errorf("Lost called %d times", n)
		}
	})
}

// TestLostWhenStoreUnreadable: a hole that cannot be read tells the
// consumers; later announcements flow again.
func TestLostWhenStoreUnreadable(t *testing.T) {
	st := openEmbedded(t)
	src := &lossy{Store: st, readsCut: make(chan struct{})}
	h := newHub(t, src, Options{})
	const topic = "https://a.example/lost"
	r := newRecorder()
	if err := h.Subscribe(ctxT(t), r, topic); err != nil {
		t.Fatal(err)
	}
	src.setDrop(dropPrefixes("lost"))
	appendN(t, st, topic, "a", 1)
	r.waitUntil(t, "the first item", func() bool { return len(r.cursors(topic)) == 1 })
	appendN(t, st, topic, "lost", 1)
	src.failReads(fmt.Errorf("read cut by the test: %w", store.ErrUnavailable))
	appendN(t, st, topic, "c", 1)
	r.waitUntil(t, "the consumer told of lost items", func() bool { return r.lostCount(topic) == 1 })
	src.failReads(nil)
	appendN(t, st, topic, "d", 1)
	r.waitUntil(t, "the item after the loss", func() bool {
		cs := r.cursors(topic)
		return len(cs) > 0 && cs[len(cs)-1] == 4
	})
	// After the loss, what came after the hole flows again.
	if got := r.cursors(topic); len(got) != 3 || got[0] != 1 || got[1] != 3 || got[2] != 4 {
		t.Errorf("cursors %v, want 1, then (after the loss) 3 and 4", got)
	}
}

// TestResyncAfterLinkLoss: the pub/sub connection is cut while items are
// appended; once it is back, the hub re-reads the topic and the consumer
// has every item once, in order, and the hub is healthy again.
func TestResyncAfterLinkLoss(t *testing.T) {
	srv := redistest.Start(t)
	st := openRedis(t, srv)
	writer := openRedis(t, srv)
	h := newHub(t, st, Options{})
	const topic = "https://a.example/resync"
	r := newRecorder()
	if err := h.Subscribe(ctxT(t), r, topic); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, h)
	total := 0
	for round := range 3 {
		if n := srv.KillPubSubClients(); n == 0 {
			t.Fatalf("round %d: no pub/sub connection to cut", round)
		}
		for i := range 5 {
			appendN(t, writer, topic, fmt.Sprint("r", round, "-", i), 2)
			total += 2
		}
		r.waitUntil(t, fmt.Sprintf("%d items after cut %d", total, round+1), func() bool { return len(r.cursors(topic)) >= total })
		wantRun(t, "after the cuts", r.cursors(topic), 1, feed.Cursor(total))
	}
	waitHealthy(t, h)
}

// TestSubscriptionsFollowConsumers: a topic is subscribed once however
// many consumers want it, and dropped after its last consumer left.
func TestSubscriptionsFollowConsumers(t *testing.T) {
	srv := redistest.Start(t)
	st := openRedis(t, srv)
	h := newHub(t, st, Options{Linger: -1})
	a, b := newRecorder(), newRecorder()
	const topic = "https://a.example/refs"
	for _, c := range []*recorder{a, b, a} {
		if err := h.Subscribe(ctxT(t), c, topic); err != nil {
			t.Fatal(err)
		}
	}
	// Live channels subscribed on Redis, plain or sharded.
	channels := func() int {
		n := 0
		for _, cmd := range []string{"CHANNELS", "SHARDCHANNELS"} {
			v, err := srv.Do("PUBSUB", cmd)
			if err != nil {
				t.Fatal(err)
			}
			list, _ := v.([]any)
			n += len(list)
		}
		return n
	}
	if n := channels(); n != 1 {
		t.Fatalf("%d channels subscribed for one topic and two consumers, want 1", n)
	}
	h.Unsubscribe(a, topic)
	if h.Topics() != 1 {
		t.Fatalf("the topic went with its first consumer")
	}
	appendN(t, st, topic, "x", 1)
	b.waitUntil(t, "the item on the remaining consumer", func() bool { return len(b.cursors(topic)) == 1 })
	if len(a.cursors(topic)) != 0 {
		t.Error("an unsubscribed consumer got a notification")
	}
	h.Unsubscribe(b, topic)
	deadline := time.Now().Add(waitLimit)
	for h.Topics() != 0 || channels() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("topic still held (%d) or subscribed (%d channels) after its last consumer left", h.Topics(), channels())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubscribeFailsWhenStoreUnreachable: Subscribe answers 503 when the
// topic cannot be made ready, and leaves nothing subscribed.
func TestSubscribeFailsWhenStoreUnreachable(t *testing.T) {
	st := openEmbedded(t)
	src := &lossy{Store: st, readsCut: make(chan struct{})}
	src.failReads(fmt.Errorf("cut: %w", store.ErrUnavailable))
	h := newHub(t, src, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	r := newRecorder()
	err := h.Subscribe(ctx, r, "https://a.example/down")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe = %v, want the context's deadline", err)
	}
	h.mu.Lock()
	refs := h.topics["https://a.example/down"].refs
	h.mu.Unlock()
	if refs != 0 {
		t.Errorf("%d references left after a failed Subscribe", refs)
	}
}

// TestConns: per-user limits, shutdown tells without interrupting, Close
// interrupts, revocation and expiry drop only the principal's connections.
func TestConns(t *testing.T) {
	st := openEmbedded(t)
	revoked := map[string]error{}
	var mu sync.Mutex
	h := newHub(t, st, Options{
		MaxConnsPerUser: 2,
		RevalidateEvery: 10 * time.Millisecond,
		Revalidate: func(_ context.Context, p *auth.Principal) error {
			mu.Lock()
			defer mu.Unlock()
			return revoked[p.Login]
		},
	})
	ann := auth.NewPrincipal("ann", []store.Right{store.RightRetrieve}, nil)
	bob := auth.NewPrincipal("bob", []store.Right{store.RightRetrieve}, nil)
	cat := auth.NewPrincipal("cat", []store.Right{store.RightRetrieve}, nil)
	admit := func(p *auth.Principal) *Conn {
		t.Helper()
		c, err := h.Admit(p, KindSSE)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a1, a2 := admit(ann), admit(ann)
	_, err := h.Admit(ann, KindNDJSON)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != http.StatusTooManyRequests {
		t.Fatalf("third connection of ann: %v, want 429", err)
	}
	a2.Release()
	a3 := admit(ann)
	b1, c1 := admit(bob), admit(cat)

	mu.Lock()
	revoked["bob"] = fmt.Errorf("removed: %w", auth.ErrRevoked)
	revoked["cat"] = fmt.Errorf("the store is away: %w", store.ErrUnavailable)
	mu.Unlock()
	waitGone(t, b1, "bob's revoked connection")
	if b1.Reason() != ReasonRevoked {
		t.Errorf("bob's connection ended for %v, want revoked", b1.Reason())
	}
	mu.Lock()
	revoked["ann"] = fmt.Errorf("exp: %w", auth.ErrExpired)
	mu.Unlock()
	waitGone(t, a1, "ann's expired connection")
	waitGone(t, a3, "ann's other expired connection")
	if a1.Reason() != ReasonExpired {
		t.Errorf("ann's connection ended for %v, want expired", a1.Reason())
	}
	select {
	case <-c1.Gone():
		t.Fatal("a connection was dropped because the store could not be asked")
	default:
	}

	interrupted := make(chan struct{}, 1)
	c1.SetAbort(func() { interrupted <- struct{}{} })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned while a connection was still open")
	}
	if c1.Reason() != ReasonShutdown {
		t.Fatalf("shutdown left the connection with reason %v", c1.Reason())
	}
	select {
	case <-interrupted:
		t.Fatal("Shutdown interrupted a write: the transport could not say goodbye")
	default:
	}
	if _, err := h.Admit(cat, KindSSE); !errors.As(err, &ae) || ae.Code != http.StatusServiceUnavailable {
		t.Fatalf("Admit while shutting down: %v, want 503", err)
	}
	_ = h.Close()
	select {
	case <-interrupted:
	default:
		t.Fatal("Close did not interrupt a connection's writes")
	}
}

func waitGone(t *testing.T, c *Conn, what string) {
	t.Helper()
	select {
	case <-c.Gone():
	case <-time.After(waitLimit):
		t.Fatalf("%s was not dropped within %v", what, waitLimit)
	}
}

// connConsumer is a consumer that is a live connection, as stream's and
// poll's are.
type connConsumer struct {
	*Conn
	*recorder
}

// TestTopicConnections counts, per topic, the consumers that are live
// connections, and not the others.
func TestTopicConnections(t *testing.T) {
	t.Parallel()
	h := newHub(t, openEmbedded(t), Options{})
	ctx := ctxT(t)
	ann := auth.NewPrincipal("ann", []store.Right{store.RightRetrieve}, nil)
	conn := func() *connConsumer {
		c, err := h.Admit(ann, KindSSE)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Release)
		return &connConsumer{c, newRecorder()}
	}
	a, b := conn(), conn()
	const x, y = "https://x.example/feed", "https://y.example/feed"
	for _, s := range []struct {
		c      Consumer
		topics []string
	}{{a, []string{x, y}}, {b, []string{x}}, {newRecorder(), []string{x, y}}} {
		if err := h.Subscribe(ctx, s.c, s.topics...); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(h.TopicConnections()); got != fmt.Sprint(map[string]int{x: 2, y: 1}) {
		t.Fatalf("TopicConnections = %s; want x: 2, y: 1 (the recorder is no connection)", got)
	}
	h.Unsubscribe(a, x, y)
	if got := fmt.Sprint(h.TopicConnections()); got != fmt.Sprint(map[string]int{x: 1}) {
		t.Fatalf("TopicConnections after an unsubscribe = %s; want x: 1", got)
	}
}
