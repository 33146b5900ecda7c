package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

const topic = "https://example.com/fault.xml"

func testItems(prefix string, n int) []feed.Item {
	out := make([]feed.Item, n)
	for i := range out {
		id := fmt.Sprintf("%s%d", prefix, i+1)
		out[i] = feed.Item{ID: id, Title: "Title " + id, Content: "<p>" + id + "</p>", Hash: "h"}
	}
	return out
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s store.Store, its []feed.Item) []feed.Item {
	t.Helper()
	got, err := s.Append(ctxT(t), topic, its)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(got) != len(its) {
		t.Fatalf("Append stored %d of %d items", len(got), len(its))
	}
	return got
}

func mustListen(t *testing.T, s store.Store, topics ...string) store.Listener {
	t.Helper()
	l, err := s.Listen(ctxT(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if err := l.Add(ctxT(t), topics...); err != nil {
		t.Fatalf("Add: %v", err)
	}
	return l
}

// next waits for the next batch.
func next(t *testing.T, l store.Listener, within time.Duration) store.Batch {
	t.Helper()
	select {
	case b, ok := <-l.Batches():
		if !ok {
			t.Fatal("Batches closed")
		}
		return b
	case <-time.After(within):
		t.Fatalf("no batch within %v (healthy=%v)", within, l.Healthy())
	}
	return store.Batch{}
}

// follower consumes a listener the way the gateway's node hub does: it
// keeps the newest cursor seen and, on Resync, reads what followed it from
// the store. It reports every cursor it learnt of, in order.
type follower struct {
	t      *testing.T
	s      store.Store
	l      store.Listener
	topic  string // the package's topic when empty
	last   feed.Cursor
	seen   []feed.Cursor
	ids    map[feed.Cursor]string // the item id learnt at each cursor
	resync int
}

func (f *follower) topicName() string {
	if f.topic == "" {
		return topic
	}
	return f.topic
}

func (f *follower) take(b store.Batch) {
	f.t.Helper()
	if err := f.takeErr(ctxT(f.t), b); err != nil {
		f.t.Fatal(err)
	}
}

// takeErr takes one batch; it may run on another goroutine than the test.
func (f *follower) takeErr(ctx context.Context, b store.Batch) error {
	if b.Resync {
		if len(b.Topics) > 0 && !slices.Contains(b.Topics, f.topicName()) {
			return nil
		}
		f.resync++
		for {
			p, err := f.s.Read(ctx, f.topicName(), store.Query{From: store.After, Cursor: f.last, Count: 50})
			if err != nil {
				return fmt.Errorf("re-read after Resync: %w", err)
			}
			if p.Gap {
				return fmt.Errorf("re-read after Resync from %d: items were trimmed before they could be read", f.last)
			}
			if len(p.Items) == 0 {
				return nil
			}
			for i := len(p.Items) - 1; i >= 0; i-- {
				f.add(p.Items[i].Cursor, p.Items[i].ID)
			}
		}
	}
	if b.Topic != f.topicName() {
		return fmt.Errorf("batch of topic %q, want %q", b.Topic, f.topicName())
	}
	if len(b.Items) > 0 && b.Items[0].Cursor > f.last+1 {
		// A hole: announcements made while the link was being
		// re-established come before its Resync. Read what is missing.
		if err := f.fill(ctx, b.Items[0].Cursor-1); err != nil {
			return err
		}
	}
	for _, it := range b.Items {
		if it.Cursor > f.last {
			f.add(it.Cursor, it.ID)
		}
	}
	return nil
}

// fill reads the items after the last cursor seen up to upto.
func (f *follower) fill(ctx context.Context, upto feed.Cursor) error {
	for f.last < upto {
		p, err := f.s.Read(ctx, f.topicName(), store.Query{From: store.After, Cursor: f.last, Count: 50})
		if err != nil {
			return fmt.Errorf("read a hole: %w", err)
		}
		if p.Gap {
			return fmt.Errorf("read a hole from %d: items were trimmed before they could be read", f.last)
		}
		if len(p.Items) == 0 {
			return fmt.Errorf("hole %d..%d: the store has nothing after %d", f.last+1, upto, f.last)
		}
		for i := len(p.Items) - 1; i >= 0 && p.Items[i].Cursor <= upto; i-- {
			f.add(p.Items[i].Cursor, p.Items[i].ID)
		}
	}
	return nil
}

func (f *follower) add(c feed.Cursor, id string) {
	f.last = c
	f.seen = append(f.seen, c)
	if f.ids == nil {
		f.ids = make(map[feed.Cursor]string)
	}
	f.ids[c] = id
}

// until takes batches until the cursor `want` was seen.
func (f *follower) until(want feed.Cursor, within time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for f.last < want {
		f.take(next(f.t, f.l, time.Until(deadline)))
	}
	for i, c := range f.seen {
		if c != feed.Cursor(i+1) {
			f.t.Fatalf("follower saw cursors %v, want 1..%d in order", f.seen, want)
		}
	}
}

// drain takes batches until the follower has reached the topic's newest
// cursor, as an open stream catches up.
func (f *follower) drain(t *testing.T) {
	t.Helper()
	p, err := f.s.Read(ctxT(t), f.topicName(), store.Query{From: store.Newest, Count: 1})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	f.until(p.Last, 10*time.Second)
}

// TestListenerSurvivesClientKill cuts the pub/sub connection: the listener
// reports a Resync once go-redis has subscribed again, and keeps delivering.
func TestListenerSurvivesClientKill(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv.URL(), store.Options{})
	defer s.Close()
	l := mustListen(t, s, topic)
	f := &follower{t: t, s: s, l: l}
	mustAppend(t, s, testItems("a", 2))
	f.until(2, 5*time.Second)

	for round := 1; round <= 3; round++ {
		if n := srv.KillPubSubClients(); n != 1 {
			t.Fatalf("round %d: CLIENT KILL TYPE pubsub cut %d connections, want 1", round, n)
		}
		// Appended right away: announced on the new connection or read
		// back after the Resync, never lost.
		mustAppend(t, s, testItems(fmt.Sprintf("k%d-", round), 2))
		b := next(t, l, 5*time.Second)
		for !b.Resync {
			f.take(b)
			b = next(t, l, 5*time.Second)
		}
		f.take(b)
		if !l.Healthy() {
			t.Errorf("round %d: Healthy() = false after the Resync", round)
		}
		last := mustAppend(t, s, testItems(fmt.Sprintf("r%d-", round), 1))
		f.until(last[0].Cursor, 5*time.Second)
	}
	if f.resync != 3 {
		t.Errorf("saw %d Resync batches for 3 cut connections", f.resync)
	}
}

// TestRedisRestart stops Redis under a listener: Healthy turns false,
// appends fail with ErrUnavailable, and after Redis is back the data is
// there, the listener reports a Resync and delivers again.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly())
	s := newStore(t, srv.URL(), store.Options{})
	defer s.Close()
	l := mustListen(t, s, topic)
	f := &follower{t: t, s: s, l: l}
	mustAppend(t, s, testItems("a", 3))
	f.until(3, 5*time.Second)

	srv.Stop()
	testkit.Eventually(t, 10*time.Second, "Healthy() = false with Redis stopped", func() bool { return !l.Healthy() })
	start := time.Now()
	_, err := s.Append(ctxT(t), topic, testItems("lost", 1))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Append with Redis stopped = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Append with Redis stopped took %v to fail", d)
	}

	srv.Restart()
	b := next(t, l, 10*time.Second)
	if !b.Resync {
		t.Fatalf("first batch after restart: %+v, want Resync", b)
	}
	f.take(b)
	if !l.Healthy() {
		t.Error("Healthy() = false after the Resync")
	}
	p, err := s.Read(ctxT(t), topic, store.Query{Count: 10})
	if err != nil {
		t.Fatalf("Read after restart: %v", err)
	}
	if p.Last != 3 || len(p.Items) != 3 {
		t.Fatalf("after restart: Last %v, %d items; want 3 and 3 (append-only file)", p.Last, len(p.Items))
	}
	// The failed append stored nothing; the next one continues at 4.
	got := mustAppend(t, s, testItems("b", 2))
	if got[0].Cursor != 4 {
		t.Errorf("first append after restart got cursor %v, want 4", got[0].Cursor)
	}
	f.until(5, 5*time.Second)
}

// TestUnavailable checks that every kind of call fails fast with
// ErrUnavailable while Redis is down, and works again once it is back.
func TestUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv.URL(), store.Options{})
	defer s.Close()
	l := mustListen(t, s)
	srv.Stop()

	ctx := ctxT(t)
	calls := map[string]func() error{
		"Append": func() error { _, err := s.Append(ctx, topic, testItems("x", 1)); return err },
		"Read":   func() error { _, err := s.Read(ctx, topic, store.Query{Count: 10}); return err },
		"CursorOf": func() error {
			_, err := s.CursorOf(ctx, topic, "x1")
			return err
		},
		"UpdateTopic": func() error {
			return s.UpdateTopic(ctx, topic, func(*store.TopicState) error { return nil })
		},
		"User": func() error { _, err := s.User(ctx, "alice"); return err },
		"PutSubscription": func() error {
			_, err := s.PutSubscription(ctx, store.Subscription{Login: "a", Topic: topic})
			return err
		},
		"TrackedTopics": func() error { _, err := s.TrackedTopics(ctx); return err },
		"Ping":          func() error { return s.Ping(ctx) },
		"Listen":        func() error { _, err := s.Listen(ctx); return err },
		"Add":           func() error { return l.Add(ctx, topic) },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with Redis stopped = %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("%s with Redis stopped took %v", name, d)
		} else {
			t.Logf("%s failed in %v: %v", name, d.Round(time.Millisecond), err)
		}
	}
	_, err := redisstore.New(ctx, srv.URL(), store.Options{})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("New with Redis stopped = %v, want ErrUnavailable", err)
	}

	srv.Restart()
	testkit.Eventually(t, 10*time.Second, "Append to work again after restart", func() bool {
		_, err := s.Append(ctx, topic, testItems("y", 1))
		return err == nil
	})
}

// TestSilentLinkReplaced freezes the pub/sub connection (a proxy stops
// forwarding, as a dropped network would, without any error): the health
// check notices, the listener reconnects and reports a Resync.
func TestSilentLinkReplaced(t *testing.T) {
	defer redisstore.SetHealthInterval(200 * time.Millisecond)()
	srv := redistest.Start(t)
	px := newProxy(t, srv.Addr())
	direct := newStore(t, srv.URL(), store.Options{})
	defer direct.Close()
	viaProxy := newStore(t, "redis://"+px.addr()+"/0", store.Options{})
	defer viaProxy.Close()

	l := mustListen(t, viaProxy, topic)
	f := &follower{t: t, s: direct, l: l}
	mustAppend(t, direct, testItems("a", 1))
	f.until(1, 5*time.Second)

	px.freeze() // existing connections hang; new ones work
	mustAppend(t, direct, testItems("b", 2))
	// The link is replaced within two health intervals; Healthy() is false
	// only for the moment of the reconnection, too short to watch here.
	b := next(t, l, 10*time.Second)
	for !b.Resync {
		f.take(b)
		b = next(t, l, 10*time.Second)
	}
	f.take(b)
	got := mustAppend(t, direct, testItems("c", 1))
	f.until(got[0].Cursor, 5*time.Second)
}

// TestSlowConsumer lets announcements pile up unread past the queue's
// limit: they are replaced by one Resync, after which delivery goes on,
// and re-reading from the last cursor loses nothing.
func TestSlowConsumer(t *testing.T) {
	defer redisstore.SetQueueLimits(5, 1<<20)()
	srv := redistest.Start(t)
	s := newStore(t, srv.URL(), store.Options{})
	defer s.Close()
	l := mustListen(t, s, topic)
	f := &follower{t: t, s: s, l: l}
	for i := range 20 {
		mustAppend(t, s, testItems(fmt.Sprintf("p%d-", i), 1))
	}
	testkit.Eventually(t, 10*time.Second, "the listener to read the 20 announcements", func() bool { return redisstore.Received(l) >= 20 })
	resyncs := 0
	for f.last < 20 {
		b := next(t, l, 5*time.Second)
		if b.Resync {
			resyncs++
		}
		f.take(b)
	}
	if resyncs == 0 {
		t.Error("20 unread batches with a queue of 5: no Resync")
	}
	f.until(20, time.Second)
	got := mustAppend(t, s, testItems("after", 1))
	f.until(got[0].Cursor, 5*time.Second)
}

// proxy forwards TCP connections to a target; freeze makes the current
// connections stop forwarding in both directions, silently.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen []chan struct{} // per live connection: closed to freeze it
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		stop := make(chan struct{})
		p.mu.Lock()
		p.frozen = append(p.frozen, stop)
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(up, c, stop)
		go p.pipe(c, up, stop)
	}
}

// pipe copies src to dst until either fails; once stop is closed it keeps
// reading src but forwards nothing.
func (p *proxy) pipe(dst, src net.Conn, stop chan struct{}) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-stop:
			default:
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.frozen {
		close(s)
	}
	p.frozen = nil
}
