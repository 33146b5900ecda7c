package embedded

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

func mustOpen(t *testing.T, dir string, opts store.Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testItems(prefix string, n int) []feed.Item {
	out := make([]feed.Item, n)
	for i := range out {
		id := fmt.Sprintf("%s%d", prefix, i+1)
		out[i] = feed.Item{ID: id, Title: "title " + id, Content: strings.Repeat("content ", 40), Hash: "h"}
	}
	return out
}

func TestLockedDir(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, store.Options{})
	old := lockTimeout
	lockTimeout = 200 * time.Millisecond
	t.Cleanup(func() { lockTimeout = old })

	start := time.Now()
	_, err := Open(dir, store.Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open of %s: %v, want ErrLocked", dir, err)
	}
	if !strings.Contains(err.Error(), "in use by another feedgate process") || !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not say which dir is in use", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second Open took %v to fail", d)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(dir, store.Options{})
	if err != nil {
		t.Fatalf("Open after the first store closed: %v", err)
	}
	_ = s2.Close()
}

func TestOpenCreatesDir(t *testing.T) {
	dir := t.TempDir() + "/a/b/data"
	s := mustOpen(t, dir, store.Options{})
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	if _, err := Open("", store.Options{}); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

func TestClosed(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	ctx := context.Background()
	l, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Add(ctx, "https://example.com/"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case _, ok := <-l.Batches():
		if ok {
			t.Error("batch after Close")
		}
	case <-time.After(time.Second):
		t.Error("store Close did not close the listener's Batches")
	}
	if l.Healthy() {
		t.Error("listener healthy after store Close")
	}
	checks := map[string]error{
		"Ping": s.Ping(ctx),
		"Append": func() error {
			_, err := s.Append(ctx, "https://example.com/", testItems("a", 1))
			return err
		}(),
		"Read": func() error {
			_, err := s.Read(ctx, "https://example.com/", store.Query{Count: 1})
			return err
		}(),
		"Listen": func() error {
			_, err := s.Listen(ctx)
			return err
		}(),
		"AddUser":     s.AddUser(ctx, store.User{Login: "x"}),
		"UpdateTopic": s.UpdateTopic(ctx, "https://example.com/", func(*store.TopicState) error { return nil }),
	}
	for name, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close: %v, want ErrUnavailable", name, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	ctx := context.Background()
	if _, err := s.Append(ctx, "", testItems("a", 1)); err == nil {
		t.Error("Append to an empty topic succeeded")
	}
	if _, err := s.Append(ctx, strings.Repeat("x", 100000), testItems("a", 1)); err == nil {
		t.Error("Append to a 100 kB topic succeeded")
	}
	// A huge entry id is stored and found again (keyed by its hash).
	huge := testItems("a", 1)
	huge[0].ID = strings.Repeat("i", 100000)
	got, err := s.Append(ctx, "https://example.com/", huge)
	if err != nil || len(got) != 1 {
		t.Fatalf("Append of a 100 kB id: %v, %d stored", err, len(got))
	}
	if c, err := s.CursorOf(ctx, "https://example.com/", huge[0].ID); err != nil || c != 1 {
		t.Errorf("CursorOf(huge id) = %v, %v", c, err)
	}
	if got, _ := s.Append(ctx, "https://example.com/", huge); len(got) != 0 {
		t.Error("huge id stored twice")
	}
	if _, err := s.PutSubscription(ctx, store.Subscription{Login: "", Topic: "https://example.com/"}); err == nil {
		t.Error("subscription without login stored")
	}
	if err := s.AddUser(ctx, store.User{}); err == nil {
		t.Error("user without login stored")
	}
	if _, err := s.User(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(\"\") = %v, want ErrNotFound", err)
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// A listener that stops reading neither blocks appends nor grows without
// bound: its backlog is dropped for a Resync, and it resumes afterwards.
func TestStalledListener(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	s.live.backlog = 10
	ctx := context.Background()
	const topic = "https://example.com/"
	stalled, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	healthy, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []store.Listener{stalled, healthy} {
		if err := l.Add(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	const n = 200
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := s.Append(ctx, topic, testItems(fmt.Sprintf("i%d-", i), 1)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var next feed.Cursor = 1
	for next <= n {
		select {
		case b := <-healthy.Batches():
			for _, it := range b.Items {
				if it.Cursor != next {
					t.Fatalf("healthy listener got cursor %d, want %d", it.Cursor, next)
				}
				next++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("healthy listener stuck at cursor %d", next)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Append: %v", err)
	}
	l := stalled.(*listener)
	l.mu.Lock()
	queued, resync := l.queued, l.resync
	l.mu.Unlock()
	if queued > 10 || !resync {
		t.Errorf("stalled listener holds %d queued items, resync %v; want at most 10 and a pending Resync", queued, resync)
	}
	// Draining: some early batches, one Resync, then whatever followed it.
	sawResync := false
	var after []feed.Cursor
	timeout := time.After(5 * time.Second)
drain:
	for {
		select {
		case b := <-stalled.Batches():
			if b.Resync {
				if b.Topic != "" || len(b.Items) != 0 {
					t.Errorf("Resync batch with topic %q and %d items", b.Topic, len(b.Items))
				}
				sawResync = true
				continue
			}
			if sawResync {
				after = append(after, b.Items[0].Cursor)
			}
		case <-time.After(100 * time.Millisecond):
			break drain
		case <-timeout:
			t.Fatal("stalled listener never drained")
		}
	}
	if !sawResync {
		t.Fatal("stalled listener got no Resync")
	}
	if len(after) > 10 {
		t.Errorf("stalled listener got %d batches after the Resync, more than its backlog", len(after))
	}
	// Live again: a new append reaches it.
	got, err := s.Append(ctx, topic, testItems("late", 1))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-stalled.Batches():
		if b.Resync || len(b.Items) != 1 || b.Items[0].Cursor != got[0].Cursor {
			t.Errorf("after resync got %+v, want cursor %d", b, got[0].Cursor)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("listener not live again after its Resync")
	}
}

// Concurrent appends are committed in groups; every one is durable and
// announced in cursor order.
func TestGroupCommit(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	ctx := context.Background()
	const topic = "https://example.com/"
	l, err := s.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Add(ctx, topic); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 25
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				if _, err := s.Append(ctx, topic, testItems(fmt.Sprintf("w%d-%d-", w, i), 1)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var next feed.Cursor = 1
	for next <= workers*each {
		select {
		case b := <-l.Batches():
			for _, it := range b.Items {
				if it.Cursor != next {
					t.Fatalf("announced cursor %d, want %d", it.Cursor, next)
				}
				next++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("announcements stopped at %d", next)
		}
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// Retention applies to what was stored under a larger one when the store is
// reopened with a smaller one.
func TestRetentionChange(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	const topic = "https://example.com/"
	s, err := Open(dir, store.Options{Retention: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, topic, testItems("a", 10)); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = mustOpen(t, dir, store.Options{Retention: 4})
	p, err := s.Read(ctx, topic, store.Query{From: store.After, Cursor: 0, Count: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 4 || p.Items[3].Cursor != 7 || !p.Gap {
		t.Errorf("after shrinking retention: %d items, gap %v", len(p.Items), p.Gap)
	}
	if _, err := s.Append(ctx, topic, testItems("b", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// Items read are the caller's own: changing them does not change what the
// next reader gets from the cache.
func TestReadReturnsCopies(t *testing.T) {
	s := mustOpen(t, t.TempDir(), store.Options{})
	ctx := context.Background()
	const topic = "https://example.com/"
	in := testItems("a", 1)
	in[0].Categories = []string{"go"}
	in[0].Actor = &feed.Actor{DisplayName: "Ann"}
	in[0].StandardLinks = &feed.Links{Alternate: []feed.Link{{Href: "https://example.com/a"}}}
	if _, err := s.Append(ctx, topic, in); err != nil {
		t.Fatal(err)
	}
	in[0].Categories[0] = "changed by the appender"
	for range 2 {
		p, err := s.Read(ctx, topic, store.Query{Count: 1})
		if err != nil || len(p.Items) != 1 {
			t.Fatalf("Read: %v, %d items", err, len(p.Items))
		}
		it := p.Items[0]
		if it.Categories[0] != "go" || it.Actor.DisplayName != "Ann" || it.StandardLinks.Alternate[0].Href != "https://example.com/a" {
			t.Fatalf("read item was changed through another copy: %+v", it)
		}
		it.Categories[0], it.Actor.DisplayName, it.StandardLinks.Alternate[0].Href = "x", "x", "x"
	}
}

func TestCacheEviction(t *testing.T) {
	var c itemCache
	c.init(cacheShards * 4096)
	for i := range 2000 {
		c.put("t", feed.Item{ID: "x", Cursor: feed.Cursor(i + 1), Content: strings.Repeat("c", 500)})
	}
	total, n := 0, 0
	for i := range c.shards {
		sh := &c.shards[i]
		total += sh.size
		n += len(sh.items)
		if sh.size > sh.budget {
			t.Errorf("shard %d holds %d bytes, budget %d", i, sh.size, sh.budget)
		}
		if len(sh.order)-sh.head != len(sh.items) {
			t.Errorf("shard %d: %d keys in order, %d items", i, len(sh.order)-sh.head, len(sh.items))
		}
	}
	if n == 0 || n >= 2000 {
		t.Errorf("cache holds %d of 2000 items", n)
	}
	if _, ok := c.get("t", 2000); !ok {
		t.Error("newest item evicted")
	}
}
