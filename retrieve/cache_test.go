package retrieve

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/store"
)

// node is one gateway node's store client and its change hook.
type node struct {
	st      store.Store
	changes *store.ChangeHook
}

func openRedis(t *testing.T, url string) node {
	n := node{changes: new(store.ChangeHook)}
	n.st = teststore.Redis(t, url, store.Options{Retention: 100, Changes: n.changes})
	return n
}

func openEmbedded(t *testing.T) node {
	n := node{changes: new(store.ChangeHook)}
	n.st = teststore.Embedded(t, store.Options{Retention: 100, Changes: n.changes})
	return n
}

// backends opens one node on each backend.
var backends = []struct {
	name string
	open func(t *testing.T) node
}{
	{"embedded", openEmbedded},
	{"redis", func(t *testing.T) node { return openRedis(t, redistest.Start(t).URL()) }},
}

func newTestCache(t *testing.T, n node, opts CacheOptions) *Cache {
	t.Helper()
	opts.Changes = n.changes
	h, err := live.New(n.st, live.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	// Until the hub's live link is up, every read goes to the store.
	testkit.Eventually(t, 10*time.Second, "a healthy hub", h.Healthy)
	c := NewCache(h, n.st, opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func item(id string) feed.Item {
	return feed.Item{ID: id, Hash: "h", Title: "title " + id, Content: "<p>" + id + "</p>", Published: 1700000000}
}

func itemsOf(prefix string, n int) []feed.Item {
	out := make([]feed.Item, n)
	for i := range out {
		out[i] = item(fmt.Sprintf("%s%d", prefix, i+1))
	}
	return out
}

func pageJSON(t *testing.T, p store.Page) string {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newest(n int) store.Query { return store.Query{From: store.Newest, Count: n} }

func mustRead(t *testing.T, c *Cache, topic string, q store.Query) store.Page {
	t.Helper()
	p, err := c.Read(ctxFor(t), topic, q)
	if err != nil {
		t.Fatalf("cache read of %s: %v", topic, err)
	}
	return p
}

func hits(c *Cache) int     { return counter(c.m.hits) }
func bypasses(c *Cache) int { return counter(c.m.bypasses) }

func counter(m prometheus.Counter) int {
	var v dto.Metric
	if err := m.Write(&v); err != nil {
		panic(err)
	}
	return int(v.GetCounter().GetValue())
}

// TestCacheServesWhatTheStoreWould compares every kind of read through the
// cache with the same read of the store.
func TestCacheServesWhatTheStoreWould(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			n := b.open(t)
			ctx := ctxFor(t)
			c := newTestCache(t, n, CacheOptions{Count: 50, TTL: time.Hour})
			const topic = "https://example.com/feed"
			if _, err := n.st.Append(ctx, topic, itemsOf("e", 70)); err != nil {
				t.Fatal(err)
			}
			err := n.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error {
				ts.Meta.Title = "The feed"
				ts.Status.Code = 200
				ts.Meta.StandardLinks = &feed.Links{Alternate: []feed.Link{{Href: "https://example.com/"}}}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			mustRead(t, c, topic, newest(10)) // the first read is not held
			queries := []store.Query{
				newest(10), newest(1), newest(50), newest(10), newest(51),
				{From: store.After, Cursor: 3, Count: 5}, {From: store.Before, Cursor: 60, Count: 5},
				newest(0),
			}
			for _, q := range queries {
				want, err := n.st.Read(ctx, topic, q)
				if err != nil {
					t.Fatal(err)
				}
				got := mustRead(t, c, topic, q)
				if g, w := pageJSON(t, got), pageJSON(t, want); g != w {
					t.Errorf("read %+v:\n got %s\nwant %s", q, g, w)
				}
			}
			// newest(10), newest(1), newest(50), newest(10) after the first miss.
			if h := hits(c); h != 3 {
				t.Errorf("%d hits, want 3", h)
			}
			// An unknown topic reads as empty, from memory the third time.
			for range 3 {
				got := mustRead(t, c, "https://example.com/none", newest(10))
				want, _ := n.st.Read(ctx, "https://example.com/none", newest(10))
				if g, w := pageJSON(t, got), pageJSON(t, want); g != w {
					t.Errorf("unknown topic:\n got %s\nwant %s", g, w)
				}
			}
			if h := hits(c); h != 4 {
				t.Errorf("%d hits, want 4", h)
			}
		})
	}
}

// TestCacheLocalWritesAtOnce: what this node appends or updates is read
// back at once, without waiting for any notification.
func TestCacheLocalWritesAtOnce(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			n := b.open(t)
			ctx := ctxFor(t)
			c := newTestCache(t, n, CacheOptions{TTL: time.Hour})
			const topic = "https://example.com/local"
			for i := 1; i <= 20; i++ {
				mustRead(t, c, topic, newest(10)) // held
				stored, err := n.st.Append(ctx, topic, []feed.Item{item(fmt.Sprint("x", i))})
				if err != nil || len(stored) != 1 {
					t.Fatalf("append: %v, %d stored", err, len(stored))
				}
				p := mustRead(t, c, topic, newest(10))
				if len(p.Items) == 0 || p.Items[0].Cursor != stored[0].Cursor || p.Last != stored[0].Cursor {
					t.Fatalf("after appending cursor %d the cache answers Last %d and %d items", stored[0].Cursor, p.Last, len(p.Items))
				}
				title := fmt.Sprint("title ", i)
				err = n.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error { ts.Meta.Title = title; return nil })
				if err != nil {
					t.Fatal(err)
				}
				if p := mustRead(t, c, topic, newest(10)); p.Topic.Meta.Title != title {
					t.Fatalf("after the update the cache answers title %q, want %q", p.Topic.Meta.Title, title)
				}
			}
			// The announcement of an append comes after the hook and may
			// drop a page reloaded in between: not every round hits.
			if hits(c) == 0 {
				t.Error("no read was a hit")
			}
		})
	}
}

// TestCacheOtherNodeAppend: an append through another store client (another
// node: no hook) reaches the cache through its live subscription.
func TestCacheOtherNodeAppend(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, other := openRedis(t, srv.URL()), openRedis(t, srv.URL())
	ctx := ctxFor(t)
	// The TTL is long: only the notification can make the new items show.
	c := newTestCache(t, a, CacheOptions{TTL: time.Hour})
	const topic = "https://example.com/other"
	if _, err := other.st.Append(ctx, topic, itemsOf("o", 5)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		mustRead(t, c, topic, newest(10))
		stored, err := other.st.Append(ctx, topic, []feed.Item{item(fmt.Sprint("n", i))})
		if err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 2*time.Second, fmt.Sprintf("cursor %d through the cache", stored[0].Cursor), func() bool {
			p := mustRead(t, c, topic, newest(10))
			return p.Last == stored[0].Cursor && p.Items[0].ID == stored[0].ID
		})
	}
	h := hits(c)
	mustRead(t, c, topic, newest(3))
	if hits(c) != h+1 {
		t.Error("the cache does not answer from memory after the appends")
	}
}

// TestCacheStatusTTL: a topic update by another node (not announced) is
// served from memory until the TTL ends, then shows.
func TestCacheStatusTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, other := openRedis(t, srv.URL()), openRedis(t, srv.URL())
	ctx := ctxFor(t)
	const topic = "https://example.com/status"
	update := func(code int) {
		t.Helper()
		if err := other.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error { ts.Status.Code = code; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	held := newTestCache(t, a, CacheOptions{TTL: time.Hour})
	mustRead(t, held, topic, newest(10))
	mustRead(t, held, topic, newest(10))
	update(304)
	if got := mustRead(t, held, topic, newest(10)).Topic.Status.Code; got != 0 {
		t.Errorf("status %d within the TTL, want the page held before the update (0)", got)
	}
	short := newTestCache(t, a, CacheOptions{TTL: 20 * time.Millisecond})
	mustRead(t, short, topic, newest(10))
	mustRead(t, short, topic, newest(10))
	update(410)
	testkit.Eventually(t, 5*time.Second, "the other node's status after the TTL", func() bool {
		return mustRead(t, short, topic, newest(10)).Topic.Status.Code == 410
	})
}

// TestCacheRedisRestart: while the live link is down the cache reads the
// store; after Redis comes back, items appended while the link was down
// are served, never the page held before.
func TestCacheRedisRestart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.AppendOnly())
	a, other := openRedis(t, srv.URL()), openRedis(t, srv.URL())
	ctx := ctxFor(t)
	c := newTestCache(t, a, CacheOptions{TTL: time.Hour})
	const topic = "https://example.com/restart"
	if _, err := a.st.Append(ctx, topic, itemsOf("r", 3)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustRead(t, c, topic, newest(10))
	}
	if hits(c) != 1 {
		t.Fatalf("%d hits before the restart, want 1", hits(c))
	}

	srv.Kill()
	testkit.Eventually(t, 5*time.Second, "a bypass while Redis is down", func() bool {
		_, err := c.Read(ctx, topic, newest(10))
		return err != nil && bypasses(c) > 0
	})
	srv.Restart()
	// Appended by another node while this node's listener is (most likely)
	// still reconnecting: no notification of it will ever arrive.
	stored, err := other.st.Append(ctx, topic, []feed.Item{item("while-down")})
	if err != nil {
		t.Fatal(err)
	}
	h := hits(c)
	testkit.Eventually(t, 5*time.Second, "hits again after the restart", func() bool {
		p, err := c.Read(ctx, topic, newest(10))
		if err != nil {
			return false
		}
		if p.Last != stored[0].Cursor || p.Items[0].ID != "while-down" {
			t.Fatalf("stale page after the restart: Last %d, newest %q; want %d, while-down", p.Last, p.Items[0].ID, stored[0].Cursor)
		}
		return hits(c) > h+1
	})
}

// TestCacheBounds: at most Topics topics, least recently read dropped
// first; idle topics go; dropped topics leave the live subscription.
func TestCacheBounds(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, other := openRedis(t, srv.URL()), openRedis(t, srv.URL())
	c := newTestCache(t, a, CacheOptions{Topics: 3, TTL: time.Hour, Idle: 200 * time.Millisecond})
	topic := func(i int) string { return fmt.Sprint("https://example.com/t", i) }
	subs := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.subs)
	}
	// A topic read once is not subscribed to.
	mustRead(t, c, topic(9), newest(10))
	if n := subs(); n != 0 {
		t.Fatalf("%d subscriptions after one read, want 0", n)
	}
	for i := range 5 {
		mustRead(t, c, topic(i), newest(10))
		mustRead(t, c, topic(i), newest(10)) // held from the second read
		mustRead(t, c, topic(0), newest(10)) // kept recent
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("%d topics held, want 3", n)
	}
	c.mu.Lock()
	for _, i := range []int{0, 3, 4} {
		if c.entries[topic(i)] == nil {
			t.Errorf("%s, among the 3 most recently read, was dropped", topic(i))
		}
	}
	c.mu.Unlock()
	testkit.Eventually(t, 2*time.Second, "3 subscriptions", func() bool { return subs() == 3 })
	testkit.Eventually(t, 2*time.Second, "idle topics dropped", func() bool { return c.Len() == 0 && subs() == 0 })
	// A dropped topic is subscribed again when read again: another
	// node's append shows.
	mustRead(t, c, topic(1), newest(10))
	mustRead(t, c, topic(1), newest(10))
	if _, err := other.st.Append(ctxFor(t), topic(1), itemsOf("b", 1)); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 2*time.Second, "the other node's append", func() bool {
		return len(mustRead(t, c, topic(1), newest(10)).Items) == 1
	})
}

// TestCacheConcurrent has readers and writers on two nodes race; every
// read must be a newest-first run of consecutive cursors ending at Last,
// and a writer on the cache's node reads its own appends.
func TestCacheConcurrent(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			var a, other node
			if b.name == "redis" {
				srv := redistest.Start(t)
				a, other = openRedis(t, srv.URL()), openRedis(t, srv.URL())
			} else {
				a = openEmbedded(t)
				other = a
			}
			ctx := ctxFor(t)
			c := newTestCache(t, a, CacheOptions{Count: 20, Topics: 3, TTL: 50 * time.Millisecond})
			topics := []string{"https://example.com/c1", "https://example.com/c2", "https://example.com/c3", "https://example.com/c4"}
			var stop atomic.Bool
			var writers, readers sync.WaitGroup
			errs := make(chan error, 100)
			report := func(err error) {
				select {
				case errs <- err:
				default:
				}
				stop.Store(true)
			}
			for w, st := range []store.Store{a.st, other.st} {
				writers.Go(func() {
					for i := 0; !stop.Load() && i < 150; i++ {
						topic := topics[i%len(topics)]
						stored, err := st.Append(ctx, topic, []feed.Item{item(fmt.Sprintf("w%d-%d", w, i))})
						if err != nil {
							report(err)
							return
						}
						if w != 0 {
							continue
						}
						p, err := c.Read(ctx, topic, newest(5))
						if err != nil {
							report(err)
							return
						}
						if p.Last < stored[0].Cursor {
							report(fmt.Errorf("%s: appended cursor %d on this node, then read Last %d", topic, stored[0].Cursor, p.Last))
							return
						}
					}
				})
			}
			// The work is bounded, not the time: on a busy machine spinning
			// readers would starve the writers.
			for r := range 6 {
				readers.Go(func() {
					rnd := rand.New(rand.NewPCG(uint64(r), 1))
					for i := 0; !stop.Load() && i < 400; i++ {
						topic := topics[rnd.IntN(len(topics))]
						count := 1 + rnd.IntN(20)
						p, err := c.Read(ctx, topic, newest(count))
						if err != nil {
							report(err)
							return
						}
						if err := checkNewest(p, count); err != nil {
							report(fmt.Errorf("%s: %w", topic, err))
							return
						}
					}
				})
			}
			writers.Wait()
			readers.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if hits(c) == 0 {
				t.Error("no read was a hit")
			}
		})
	}
}

// checkNewest checks that p is a page of the newest count items.
func checkNewest(p store.Page, count int) error {
	if len(p.Items) > count {
		return fmt.Errorf("%d items for count %d", len(p.Items), count)
	}
	if len(p.Items) == 0 {
		if p.Last != 0 {
			return fmt.Errorf("no items with Last %d", p.Last)
		}
		return nil
	}
	if p.Items[0].Cursor != p.Last {
		return fmt.Errorf("newest item has cursor %d, Last is %d", p.Items[0].Cursor, p.Last)
	}
	if want := min(count, int(p.Last)); len(p.Items) != want {
		return fmt.Errorf("%d items for count %d and Last %d", len(p.Items), count, p.Last)
	}
	for i := 1; i < len(p.Items); i++ {
		if p.Items[i].Cursor != p.Items[i-1].Cursor-1 {
			return fmt.Errorf("cursors %d then %d", p.Items[i-1].Cursor, p.Items[i].Cursor)
		}
	}
	return nil
}

// TestCacheOff: a cache without a hub is off, and reads go to the store.
func TestCacheOff(t *testing.T) {
	t.Parallel()
	n := openEmbedded(t)
	ctx := ctxFor(t)
	if _, err := n.st.Append(ctx, "https://example.com/off", itemsOf("f", 2)); err != nil {
		t.Fatal(err)
	}
	c := NewCache(nil, n.st, CacheOptions{Changes: n.changes})
	defer c.Close()
	p := mustRead(t, c, "https://example.com/off", newest(10))
	if len(p.Items) != 2 || hits(c)+bypasses(c) != 0 {
		t.Fatalf("%d items, %d hits, %d bypasses", len(p.Items), hits(c), bypasses(c))
	}
}

// TestCacheMemoryBound: the pages held stay within Bytes, least recently
// read dropped first; a page larger than Bytes is served, not held.
func TestCacheMemoryBound(t *testing.T) {
	t.Parallel()
	n := openEmbedded(t)
	ctx := ctxFor(t)
	topic := func(i int) string { return fmt.Sprint("https://example.com/m", i) }
	for i := range 4 {
		if _, err := n.st.Append(ctx, topic(i), itemsOf("m", 10)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.st.Append(ctx, "https://example.com/big", []feed.Item{{ID: "big", Hash: "h", Content: string(make([]byte, 64<<10))}}); err != nil {
		t.Fatal(err)
	}
	p, err := n.st.Read(ctx, topic(0), newest(Limits{}.withDefaults().MaxCount))
	if err != nil {
		t.Fatal(err)
	}
	size := pageSize(p)
	c := newTestCache(t, n, CacheOptions{TTL: time.Hour, Bytes: 2*size + size/2})
	for i := range 4 {
		mustRead(t, c, topic(i), newest(10))
		mustRead(t, c, topic(i), newest(10))
	}
	held := func() (topics []string, bytes int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for t, e := range c.entries {
			if e.has {
				topics = append(topics, t)
			}
		}
		return topics, c.bytes
	}
	topics, bytes := held()
	if len(topics) != 2 || bytes != 2*size {
		t.Fatalf("held %q, %d bytes; want the 2 last read, %d bytes", topics, bytes, 2*size)
	}
	for _, i := range []int{2, 3} {
		h := hits(c)
		mustRead(t, c, topic(i), newest(10))
		if hits(c) != h+1 {
			t.Errorf("%s, among the last read, is not held", topic(i))
		}
	}
	for range 2 {
		if p := mustRead(t, c, "https://example.com/big", newest(10)); len(p.Items) != 1 {
			t.Fatalf("%d items of the big topic, want 1", len(p.Items))
		}
	}
	if _, bytes := held(); bytes != 2*size {
		t.Errorf("%d bytes held after reading a page larger than the bound, want %d", bytes, 2*size)
	}
}

// TestCacheAnswers: a held topic's encoded answer is made once per form and
// count, is exactly what rendering the page gives, and goes with the page
// when the topic changes.
func TestCacheAnswers(t *testing.T) {
	t.Parallel()
	n := openEmbedded(t)
	ctx := ctxFor(t)
	c := newTestCache(t, n, CacheOptions{TTL: time.Hour})
	svc := New(n.st, Options{HubURL: "https://hub.example/", Cache: c})
	const topic = "https://example.com/answers"
	if _, err := n.st.Append(ctx, topic, itemsOf("a", 4)); err != nil {
		t.Fatal(err)
	}
	serve := func(req Request) string {
		t.Helper()
		w := httptest.NewRecorder()
		if err := svc.Serve(ctx, w, req, topic, newest(req.Count)); err != nil {
			t.Fatal(err)
		}
		if w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
		return w.Body.String()
	}
	rendered := func(req Request) string {
		t.Helper()
		fn, err := svc.Load(ctx, topic, newest(req.Count))
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		Render(w, req, fn, "https://hub.example/")
		return w.Body.String()
	}
	for _, req := range []Request{{Format: JSON, Count: 2}, {Format: Atom, Count: 3}, {Format: JSON, Count: 2, Callback: "cb"}} {
		serve(req) // first read: not held
		serve(req) // second: held
		h := hits(c)
		if got, want := serve(req), rendered(req); got != want {
			t.Errorf("cached answer %+v:\n%s\nwant\n%s", req, got, want)
		}
		if hits(c) != h+1 {
			t.Errorf("answer %+v was not served from memory", req)
		}
	}
	c.mu.Lock()
	answers := len(c.entries[topic].answers)
	c.mu.Unlock()
	if answers != 2 {
		t.Errorf("%d encoded answers held, want 2 (JSON count 2, shared by JSONP; Atom count 3)", answers)
	}
	if _, err := n.st.Append(ctx, topic, []feed.Item{item("new")}); err != nil {
		t.Fatal(err)
	}
	if got := serve(Request{Format: JSON, Count: 2}); !strings.Contains(got, `"id":"new"`) {
		t.Errorf("answer after an append does not have the new item: %s", got)
	}
}

// TestCacheAfter: the items after a recent cursor come from the held page,
// exactly as the store answers them; an older cursor, or one the page does
// not reach back to, reads the store.
func TestCacheAfter(t *testing.T) {
	t.Parallel()
	n := openEmbedded(t)
	ctx := ctxFor(t)
	c := newTestCache(t, n, CacheOptions{TTL: time.Hour, Count: 10})
	reads := &countingStore{Store: n.st}
	svc := New(reads, Options{Cache: c})
	const topic = "https://example.com/after"
	if _, err := n.st.Append(ctx, topic, itemsOf("a", 30)); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, topic, newest(10))
	mustRead(t, c, topic, newest(10)) // held
	for _, tc := range []struct {
		cursor     feed.Cursor
		count      int
		fromMemory bool
	}{
		{29, 5, true}, {25, 3, true}, {20, 10, true}, {30, 5, true}, {21, 2, true},
		{19, 5, false}, {5, 5, false}, {31, 5, false},
	} {
		before := reads.n.Load()
		q := store.Query{From: store.After, Cursor: tc.cursor, Count: tc.count}
		got, err := svc.Join(ctx, topic, q)
		if err != nil {
			t.Fatal(err)
		}
		fromMemory := reads.n.Load() == before
		want, err := svc.Load(ctx, topic, q)
		if err != nil {
			t.Fatal(err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Errorf("after %d count %d:\n%s\nwant\n%s", tc.cursor, tc.count, gj, wj)
		}
		if fromMemory != tc.fromMemory {
			t.Errorf("after %d count %d: from memory %v, want %v", tc.cursor, tc.count, fromMemory, tc.fromMemory)
		}
	}
}

// countingStore counts the reads of items that reach the store.
type countingStore struct {
	store.Store
	n atomic.Int64
}

func (s *countingStore) Read(ctx context.Context, topic string, q store.Query) (store.Page, error) {
	s.n.Add(1)
	return s.Store.Read(ctx, topic, q)
}
