package storetest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

func runConcurrency(t *testing.T, open Opener) {
	t.Run("OverlappingAppends", func(t *testing.T) {
		s := open(t, store.Options{})
		concurrentAppends(t, []store.Store{s}, 8)
	})
	t.Run("ParallelTopics", func(t *testing.T) {
		s := open(t, store.Options{Retention: 20})
		ctx := testContext(t)
		const workers, rounds = 4, 10
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			topic := fmt.Sprintf("https://example.com/parallel/%d.xml", w)
			wg.Go(func() {
				for r := range rounds {
					got, err := s.Append(ctx, topic, items(fmt.Sprintf("r%d-", r), 3))
					if err != nil {
						errs <- err
						return
					}
					if len(got) != 3 || got[0].Cursor != feed.Cursor(3*r+1) {
						errs <- fmt.Errorf("topic %s round %d: stored cursors %v, want %d..%d", topic, r, nums(cursors(got)), 3*r+1, 3*r+3)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// concurrentAppends has workers (spread over stores) append the same
// overlapping entries to one topic in different orders and chunkings, while
// readers and one listener per store watch, and checks that each distinct
// (ID, Hash) was stored exactly once, under contiguous cursors, in one order
// that every reader and listener saw.
func concurrentAppends(t *testing.T, stores []store.Store, workers int) {
	t.Helper()
	ctx := testContext(t)
	const topic = "https://example.com/concurrent.xml"
	var pairs []feed.Item
	for i := range 24 {
		for _, h := range []string{"v1", "v2"} {
			pairs = append(pairs, newItem(fmt.Sprintf("entry-%02d", i), h))
		}
	}
	n := len(pairs)

	listeners := make([]store.Listener, len(stores))
	for i, s := range stores {
		listeners[i] = listen(t, s, topic)
	}

	var (
		mu       sync.Mutex
		seen     = map[feed.Cursor]string{} // cursor -> key, from every observer
		problems []string
		stored   int
	)
	observe := func(who string, its []feed.Item) {
		mu.Lock()
		defer mu.Unlock()
		for _, it := range its {
			if k, ok := seen[it.Cursor]; ok && k != key(it) {
				problems = append(problems, fmt.Sprintf("%s: cursor %d holds %q, elsewhere %q", who, it.Cursor, key(it), k))
			}
			seen[it.Cursor] = key(it)
		}
	}
	fail := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}

	var done atomic.Bool
	var readers sync.WaitGroup
	for i, s := range stores {
		for r := range 2 {
			readers.Go(func() {
				who := fmt.Sprintf("reader %d/%d", i, r)
				for !done.Load() {
					p, err := s.Read(ctx, topic, store.Query{From: store.Newest, Count: n + 10})
					if err != nil {
						fail("%s: Read: %v", who, err)
						return
					}
					if len(p.Items) > 0 && p.Items[0].Cursor != p.Last {
						fail("%s: newest item has cursor %d, Last is %d", who, p.Items[0].Cursor, p.Last)
					}
					if want := span(p.Last, 1); p.Last > 0 && !sameCursors(cursors(p.Items), want) {
						fail("%s: read cursors %v, want %v", who, nums(cursors(p.Items)), nums(want))
					}
					observe(who, p.Items)
					time.Sleep(time.Millisecond)
				}
			})
		}
	}

	var writers sync.WaitGroup
	for w := range workers {
		s := stores[w%len(stores)]
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			order := rng.Perm(n)
			for i := 0; i < len(order); {
				size := 1 + rng.IntN(4)
				var chunk []feed.Item
				for ; size > 0 && i < len(order); size-- {
					chunk = append(chunk, pairs[order[i]])
					i++
				}
				got, err := s.Append(ctx, topic, chunk)
				if err != nil {
					fail("writer %d: Append: %v", w, err)
					return
				}
				for j := 1; j < len(got); j++ {
					if got[j].Cursor != got[j-1].Cursor+1 {
						fail("writer %d: one Append stored non-contiguous cursors %v", w, nums(cursors(got)))
					}
				}
				observe(fmt.Sprintf("writer %d", w), got)
				mu.Lock()
				stored += len(got)
				mu.Unlock()
			}
		})
	}
	writers.Wait()
	done.Store(true)
	readers.Wait()

	final, err := stores[0].Read(ctx, topic, store.Query{From: store.Newest, Count: n + 10})
	if err != nil {
		t.Fatalf("final Read: %v", err)
	}
	checkPage(t, "final read", final, span(feed.Cursor(n), 1), false, feed.Cursor(n))
	observe("final read", final.Items)
	distinct := map[string]bool{}
	for _, it := range final.Items {
		distinct[key(it)] = true
	}
	if len(distinct) != n {
		t.Errorf("final read holds %d distinct (ID, Hash) pairs, want %d", len(distinct), n)
	}
	if stored != n {
		t.Errorf("Appends reported %d stored items in all, want %d (each pair exactly once)", stored, n)
	}
	for i, s := range stores[1:] {
		p, err := s.Read(ctx, topic, store.Query{From: store.Newest, Count: n + 10})
		if err != nil {
			t.Fatalf("final Read on store %d: %v", i+1, err)
		}
		observe(fmt.Sprintf("final read on store %d", i+1), p.Items)
	}
	for i, l := range listeners {
		got := recvItems(t, l, topic, n)
		checkCursors(t, fmt.Sprintf("listener %d", i), got, span(1, feed.Cursor(n)))
		observe(fmt.Sprintf("listener %d", i), got)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func runMultiNode(t *testing.T, open func(t *testing.T, opts store.Options) (store.Store, store.Store)) {
	t.Run("SharedData", func(t *testing.T) {
		a, b := open(t, store.Options{})
		ctx := testContext(t)
		appendItems(t, a, topicA, items("e", 3)...)
		if got := appendItems(t, b, topicA, items("e", 4)...); !sameCursors(cursors(got), span(4, 4)) {
			t.Errorf("append through b stored %v, want [4] (e1..e3 came through a)", nums(cursors(got)))
		}
		checkPage(t, "read through a", read(t, a, topicA, store.Query{Count: 10}), span(4, 1), false, 4)
		if c, err := b.CursorOf(ctx, topicA, "e2"); err != nil || c != 2 {
			t.Errorf("CursorOf through b = %v, %v; want 2", c, err)
		}
		if err := a.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error { ts.Status.Code = 304; return nil }); err != nil {
			t.Fatalf("UpdateTopic: %v", err)
		}
		if ts, err := b.Topic(ctx, topicA); err != nil || ts.Status.Code != 304 {
			t.Errorf("Topic through b = %+v, %v; want code 304", ts, err)
		}
		if err := a.AddUser(ctx, store.User{Login: "alice"}); err != nil {
			t.Fatalf("AddUser: %v", err)
		}
		if _, err := b.User(ctx, "alice"); err != nil {
			t.Errorf("User through b: %v", err)
		}
		if _, err := a.PutSubscription(ctx, store.Subscription{Login: "alice", Topic: topicA}); err != nil {
			t.Fatalf("PutSubscription: %v", err)
		}
		if ok, err := b.IsSubscribed(ctx, "alice", topicA); err != nil || !ok {
			t.Errorf("IsSubscribed through b = %v, %v", ok, err)
		}
	})

	t.Run("LiveAcrossNodes", func(t *testing.T) {
		a, b := open(t, store.Options{})
		la := listen(t, a, topicA)
		lb := listen(t, b, topicA)
		appendItems(t, b, topicA, items("e", 2)...)
		appendItems(t, a, topicA, items("f", 1)...)
		checkCursors(t, "listener on a", recvItems(t, la, topicA, 3), span(1, 3))
		checkCursors(t, "listener on b", recvItems(t, lb, topicA, 3), span(1, 3))
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		a, b := open(t, store.Options{})
		concurrentAppends(t, []store.Store{a, b}, 8)
	})
}

func runReopen(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := testContext(t)
	s := open(t)
	in := items("e", 3)
	appendItems(t, s, topicA, in...)
	appendItems(t, s, topicA, newItem("e1", "v2"))
	appendItems(t, s, topicB, items("b", 2)...)
	if err := s.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error {
		ts.Meta.Title, ts.Status.Period = "Feed A", 600
		return nil
	}); err != nil {
		t.Fatalf("UpdateTopic: %v", err)
	}
	user := store.User{Login: "alice", CreatedAt: time.Unix(1700000000, 0).UTC(),
		Tokens: []store.Token{{ID: "t1", Hash: "h", Rights: []store.Right{store.RightRetrieve}}}}
	if err := s.AddUser(ctx, user); err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	sub := store.Subscription{Login: "alice", Topic: topicA, Callback: "https://cb.example.com/", Secret: "s"}
	if _, err := s.PutSubscription(ctx, sub); err != nil {
		t.Fatalf("PutSubscription: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t)
	defer func() { _ = s.Close() }()
	p := read(t, s, topicA, store.Query{Count: 10})
	checkPage(t, "after reopen", p, span(4, 1), false, 4)
	if len(p.Items) == 4 {
		for i, want := range append(in, newItem("e1", "v2")) {
			checkItem(t, "after reopen", p.Items[3-i], want, feed.Cursor(i+1))
		}
	}
	if p.Topic.Meta.Title != "Feed A" || p.Topic.Status.Period != 600 {
		t.Errorf("topic state after reopen = %+v", p.Topic)
	}
	checkPage(t, "topic B after reopen", read(t, s, topicB, store.Query{Count: 10}), span(2, 1), false, 2)
	if c, err := s.CursorOf(ctx, topicA, "e1"); err != nil || c != 4 {
		t.Errorf("CursorOf after reopen = %v, %v; want 4", c, err)
	}
	if got := appendItems(t, s, topicA, in...); len(got) != 0 {
		t.Errorf("dedup lost on reopen: re-append stored %v", nums(cursors(got)))
	}
	checkCursors(t, "append after reopen", appendItems(t, s, topicA, newItem("new", "1")), span(5, 5))
	if u, err := s.User(ctx, "alice"); err != nil || userString(u) != userString(user) {
		t.Errorf("User after reopen = %s, %v", userString(u), err)
	}
	if ok, err := s.IsSubscribed(ctx, "alice", topicA); err != nil || !ok {
		t.Errorf("IsSubscribed after reopen = %v, %v", ok, err)
	}
	if ts, err := s.TrackedTopics(ctx); err != nil || len(ts) != 1 || ts[0] != topicA {
		t.Errorf("TrackedTopics after reopen = %q, %v", ts, err)
	}
	if subs, err := s.TopicSubscriptions(ctx, topicA); err != nil || len(subs) != 1 || subs[0].Secret != "s" {
		t.Errorf("TopicSubscriptions after reopen = %q, %v", subStrings(subs), err)
	}
}
