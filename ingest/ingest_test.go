package ingest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
)

// serve serves h on a loopback listener for the test.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// subscribe does what the hub endpoint does for a subscription: store it
// (the topic becomes tracked) and track the topic.
func subscribe(t testing.TB, n *node, topic string) {
	t.Helper()
	ctx := ctxT(t)
	if _, err := n.st.PutSubscription(ctx, store.Subscription{Login: "alice", Topic: topic, CreatedAt: time.Now()}); err != nil {
		t.Fatalf("PutSubscription: %v", err)
	}
	if err := n.svc.Track(ctx, topic); err != nil {
		t.Fatalf("Track: %v", err)
	}
}

func TestTrackFetchesAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		f := newTestFeed("first", 3)
		srv := serve(t, f)
		n := startNode(t, open(t), testOptions(), true)
		topic := srv.URL + "/feed"
		start := time.Now()
		subscribe(t, n, topic)
		testkit.Eventually(t, settle, "the first fetch to store the entries", func() bool { return len(readAll(t, n.st, topic)) == 3 })
		t.Logf("entries readable %s after Track", time.Since(start).Round(time.Millisecond))
		items := readAll(t, n.st, topic)
		if items[0].ID != "urn:first:3" || items[2].ID != "urn:first:1" {
			t.Fatalf("items newest first = %s, %s; want urn:first:3 first and urn:first:1 last", items[0].ID, items[2].ID)
		}
		testkit.Eventually(t, settle, "the status", func() bool { return topicState(t, n.st, topic).Status.LastFetch != 0 })
		st := topicState(t, n.st, topic).Status
		if st.Code != 200 || !strings.Contains(st.HTTP, "3 entries parsed") || st.NextFetch <= time.Now().Unix() ||
			st.Period < 60 || st.Period > 3600 || st.NextFetch != st.LastFetch+int64(st.Period) || st.Title != "first" || st.LastParse == 0 {
			t.Fatalf("status after the first fetch = %+v", st)
		}
		if ua := f.requests()[0].Get("User-Agent"); ua != "feedgate/test (+"+n.url+")" {
			t.Fatalf("User-Agent = %q", ua)
		}
	})
}

// TestTrackTwiceFetchesOnce: tracking a tracked topic fetches nothing; the
// next fetch comes when the period says, not before.
func TestTrackTwiceFetchesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		f := newTestFeed("twice", 1)
		topic := b.serve(f) + "/feed"
		opts := testOptions()
		opts.PollInterval = time.Minute // Track wakes the scheduler at once
		n := b.startNode(openEmbedded(t), opts, true)
		tracked := time.Now()
		subscribe(t, n, topic)
		synctest.Wait()
		if hits := f.hits.Load(); hits != 1 {
			t.Fatalf("the feed was fetched %d times once Track returned and the node went idle, want 1", hits)
		}
		next := time.Unix(topicState(t, n.st, topic).Status.NextFetch, 0)
		if next.Before(tracked.Add(opts.MinPeriod * 9 / 10)) {
			t.Fatalf("next fetch due %s after the first, want at least the minimum period %s (less jitter)", next.Sub(tracked), opts.MinPeriod)
		}
		subscribe(t, n, topic)
		b.idleFor(next.Add(-time.Second).Sub(time.Now()))
		if hits := f.hits.Load(); hits != 1 {
			t.Fatalf("the feed was fetched %d times before its next fetch was due; a second Track must not refetch", hits)
		}
		b.idleFor(2 * opts.PollInterval)
		if hits := f.hits.Load(); hits != 2 {
			t.Fatalf("the feed was fetched %d times once its next fetch was due, want 2", hits)
		}
	})
}

func TestConditionalGetAndPing(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		f := newTestFeed("cond", 2)
		srv := serve(t, f)
		n := startNode(t, open(t), testOptions(), true)
		topic := srv.URL + "/feed"
		subscribe(t, n, topic)
		testkit.Eventually(t, settle, "the first fetch", func() bool { return len(readAll(t, n.st, topic)) == 2 })
		testkit.Eventually(t, settle, "the status", func() bool { return topicState(t, n.st, topic).Status.Code == 200 })

		// A ping fetches at once; unchanged, the feed answers 304 to the
		// stored ETag and nothing is stored.
		ctx := ctxT(t)
		if err := n.svc.Ping(ctx, []string{topic}); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		testkit.Eventually(t, settle, "the pinged fetch", func() bool { return f.hits.Load() == 2 })
		if got := f.requests()[1].Get("If-None-Match"); got != `"v0"` {
			t.Fatalf("second fetch sent If-None-Match %q, want the stored ETag \"v0\"", got)
		}
		testkit.Eventually(t, settle, "the 304 status", func() bool { return topicState(t, n.st, topic).Status.Code == 304 })
		if items := readAll(t, n.st, topic); len(items) != 2 {
			t.Fatalf("a 304 stored something: %d items", len(items))
		}

		// A new entry and a ping: retrievable within a second.
		f.add("urn:cond:new", "brand new")
		start := time.Now()
		if err := n.svc.Ping(ctx, []string{topic, srv.URL + "/untracked"}); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		testkit.Eventually(t, settle, "the new entry after a ping", func() bool {
			items := readAll(t, n.st, topic)
			return len(items) == 3 && items[0].ID == "urn:cond:new"
		})
		t.Logf("new entry readable %s after the ping", time.Since(start).Round(time.Millisecond))
		if got := f.requests()[2].Get("If-None-Match"); got != `"v0"` {
			t.Fatalf("third fetch sent If-None-Match %q", got)
		}
		// The untracked topic was ignored.
		if _, ok, _ := n.st.IngestJobs().Due(ctx, fetchJob(srv.URL+"/untracked")); ok {
			t.Fatal("a ping of an untracked topic scheduled it")
		}
	})
}

func TestPingIgnoresUntracked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		f := newTestFeed("untracked", 1)
		topic := b.serve(f) + "/feed"
		opts := testOptions()
		opts.PollInterval = time.Minute
		n := b.startNode(openEmbedded(t), opts, true)
		if err := n.svc.Ping(ctxT(t), []string{topic}); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		b.idleFor(time.Hour)
		if h := f.hits.Load(); h != 0 {
			t.Fatalf("an untracked topic was fetched %d times after a ping", h)
		}
	})
}

func TestUntrackStopsPolling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		f := newTestFeed("gone", 1)
		topic := b.serve(f) + "/feed"
		opts := testOptions()
		opts.PollInterval = time.Minute // Track wakes the scheduler at once
		n := b.startNode(openEmbedded(t), opts, true)
		subscribe(t, n, topic)
		synctest.Wait()
		if items := readAll(t, n.st, topic); len(items) != 1 {
			t.Fatalf("%d items stored once the node went idle after Track, want the feed's 1", len(items))
		}
		ctx := ctxT(t)
		if err := n.svc.Untrack(ctx, topic); err != nil {
			t.Fatalf("Untrack: %v", err)
		}
		if _, ok, _ := n.st.IngestJobs().Due(ctx, fetchJob(topic)); ok {
			t.Fatal("Untrack left the fetch job")
		}
		hits := f.hits.Load()
		if err := n.svc.Ping(ctx, []string{topic}); err != nil {
			t.Fatalf("Ping: %v", err)
		}
		// Past the longest period: no poll either.
		b.idleFor(opts.MaxPeriod + time.Minute)
		if got := f.hits.Load(); got != hits {
			t.Fatalf("an untracked topic was fetched %d times after a ping and a period", got-hits)
		}
		if items := readAll(t, n.st, topic); len(items) != 1 {
			t.Fatalf("Untrack removed stored items: %d left", len(items))
		}
	})
}

// TestRestoreAfterRestart: a node starting on a store with tracked topics
// schedules them (here the topic was subscribed while no ingest node ran).
func TestRestoreAfterRestart(t *testing.T) {
	f := newTestFeed("restored", 2)
	srv := serve(t, f)
	st := openEmbedded(t)
	topic := srv.URL + "/feed"
	if _, err := st.PutSubscription(ctxT(t), store.Subscription{Login: "bob", Topic: topic, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, st, testOptions(), true)
	testkit.Eventually(t, settle, "the restored topic's fetch", func() bool { return len(readAll(t, n.st, topic)) == 2 })
}

func TestAdaptivePeriodAndBackoff(t *testing.T) {
	s := &Service{opts: Options{}}
	s.opts.fill()
	now := time.Now()
	// Estimated from entry dates: entries every 10 minutes, the newest just
	// now -> half of that.
	var items []entry
	for i := range 5 {
		items = append(items, entry{ID: string(rune('a' + i)), Updated: now.Add(-time.Duration(i) * 10 * time.Minute)})
	}
	doc := parseTestDoc(t, atomDoc("p", items))
	if got := s.adaptPeriod(0, fetchOutcome{doc: doc}, now); got < 4*time.Minute || got > 6*time.Minute {
		t.Fatalf("estimated period %s, want about 5m", got)
	}
	// A dormant feed (newest entry a week old) polls rarely.
	for i := range items {
		items[i].Updated = items[i].Updated.Add(-7 * 24 * time.Hour)
	}
	if got := s.adaptPeriod(0, fetchOutcome{doc: parseTestDoc(t, atomDoc("p", items))}, now); got != time.Hour {
		t.Fatalf("period of a dormant feed %s, want the 1h maximum", got)
	}
	if got := s.adaptPeriod(20*time.Minute, fetchOutcome{changed: true}, now); got != 10*time.Minute {
		t.Fatalf("after a change %s, want 10m", got)
	}
	if got := s.adaptPeriod(20*time.Minute, fetchOutcome{}, now); got != 30*time.Minute {
		t.Fatalf("after no change %s, want 30m", got)
	}
	if got := s.adaptPeriod(90*time.Second, fetchOutcome{changed: true}, now); got != time.Minute {
		t.Fatalf("period below the minimum: %s", got)
	}
	for n, want := range map[int]time.Duration{1: time.Minute, 2: 2 * time.Minute, 4: 8 * time.Minute, 30: 6 * time.Hour} {
		if got := s.backoff(n); got != want {
			t.Fatalf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
	for range 100 {
		if f := s.spread(); f < 0.9 || f > 1.1 {
			t.Fatalf("spread() = %v, outside 1 ± 10%%", f)
		}
	}
}

// TestErrorsBackOffAndRetryAfter: a failing feed is retried later and
// later, a Retry-After holds it back, and the status says why.
func TestErrorsBackOffAndRetryAfter(t *testing.T) {
	var mode atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 0:
			http.Error(w, "broken upstream", http.StatusInternalServerError)
		default:
			w.Header().Set("Retry-After", "7200")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}
	}))
	n := startNode(t, openEmbedded(t), testOptions(), true)
	topic := srv.URL + "/feed"
	subscribe(t, n, topic)
	testkit.Eventually(t, settle, "the failed fetch's status", func() bool { return topicState(t, n.st, topic).Status.Code == 500 })
	st := topicState(t, n.st, topic).Status
	if !strings.Contains(st.HTTP, "500") || !strings.Contains(st.HTTP, "broken upstream") {
		t.Fatalf("status.http = %q, want the code and the answer", st.HTTP)
	}
	if d := time.Until(time.Unix(st.NextFetch, 0)); d < 40*time.Second || d > 80*time.Second {
		t.Fatalf("first retry in %s, want about the 1m minimum", d)
	}
	ist, _ := n.st.IngestState(ctxT(t), topic)
	if ist.Failures != 1 {
		t.Fatalf("failures = %d", ist.Failures)
	}
	mode.Store(1)
	_ = n.svc.Ping(ctxT(t), []string{topic})
	testkit.Eventually(t, settle, "the 429 status", func() bool { return topicState(t, n.st, topic).Status.Code == 429 })
	st = topicState(t, n.st, topic).Status
	if d := time.Until(time.Unix(st.NextFetch, 0)); d < 100*time.Minute {
		t.Fatalf("next fetch in %s despite Retry-After: 7200", d)
	}
	if !strings.Contains(st.HTTP, "retry after 2h0m0s") {
		t.Fatalf("status.http = %q, want the Retry-After", st.HTTP)
	}
}

// TestRefusedAddressStatus: without --allow-private a tracked loopback
// topic is never fetched, and its status says why.
func TestRefusedAddressStatus(t *testing.T) {
	f := newTestFeed("private", 1)
	srv := serve(t, f)
	opts := testOptions()
	opts.AllowPrivate = false
	n := startNode(t, openEmbedded(t), opts, true)
	topic := srv.URL + "/feed"
	var refused *fetch.RefusedError
	if err := n.svc.CheckURL(ctxT(t), topic); !errors.As(err, &refused) {
		t.Fatalf("CheckURL(%s) = %v, want a *fetch.RefusedError", topic, err)
	}
	subscribe(t, n, topic)
	testkit.Eventually(t, settle, "the refused fetch's status", func() bool { return topicState(t, n.st, topic).Status.LastFetch != 0 })
	st := topicState(t, n.st, topic).Status
	if !strings.Contains(st.HTTP, "loopback") || !strings.Contains(st.HTTP, "--allow-private") || st.Code != 0 {
		t.Fatalf("status = %+v, want the refusal", st)
	}
	if f.hits.Load() != 0 {
		t.Fatal("the loopback feed was fetched")
	}
}

func TestPermanentRedirectMovesFetchURL(t *testing.T) {
	f := newTestFeed("moved", 1)
	var oldHits atomic.Int64
	mux := http.NewServeMux()
	mux.Handle("/new", f)
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) {
		oldHits.Add(1)
		http.Redirect(w, r, "/new", http.StatusMovedPermanently)
	})
	srv := serve(t, mux)
	n := startNode(t, openEmbedded(t), testOptions(), true)
	topic := srv.URL + "/old"
	subscribe(t, n, topic)
	testkit.Eventually(t, settle, "the first fetch", func() bool { return topicState(t, n.st, topic).Status.Code == 200 })
	// The status is written before the entries are stored, the ingest
	// state once the fetch is done.
	testkit.Eventually(t, settle, "FetchURL moved to the redirect's target", func() bool {
		ist, _ := n.st.IngestState(ctxT(t), topic)
		return ist.FetchURL == srv.URL+"/new"
	})
	_ = n.svc.Ping(ctxT(t), []string{topic})
	testkit.Eventually(t, settle, "the second fetch", func() bool { return f.hits.Load() == 2 })
	if oldHits.Load() != 1 {
		t.Fatalf("the old URL was fetched %d times; after a 301 only the new one is", oldHits.Load())
	}
}

func TestStoreFeed(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		n := startNode(t, open(t), testOptions(), false)
		ctx := ctxT(t)
		const topic = "http://example.com/fat"
		body := atomDoc("fat", []entry{{ID: "urn:fat:2", Title: "two"}, {ID: "urn:fat:1", Title: "one"}})
		items, err := n.svc.StoreFeed(ctx, topic, body, "application/atom+xml")
		if err != nil || len(items) != 2 {
			t.Fatalf("StoreFeed = %d items, %v; want 2", len(items), err)
		}
		if items[0].ID != "urn:fat:1" || items[0].Cursor >= items[1].Cursor {
			t.Fatalf("stored items not oldest first: %s@%d, %s@%d", items[0].ID, items[0].Cursor, items[1].ID, items[1].Cursor)
		}
		if items, err := n.svc.StoreFeed(ctx, topic, body, "application/atom+xml"); err != nil || len(items) != 0 {
			t.Fatalf("StoreFeed again = %d items, %v; want none (duplicates)", len(items), err)
		}
		st := topicState(t, n.st, topic)
		if st.Status.Title != "fat" || st.Meta.Title != "fat" || st.Status.LastParse == 0 || !strings.Contains(st.Status.HTTP, "published") {
			t.Fatalf("topic state after a fat ping = %+v", st)
		}
		_, err = n.svc.StoreFeed(ctx, topic, []byte("<html><body>not a feed</body></html>"), "text/html")
		if !errors.Is(err, feed.ErrNotFeed) {
			t.Fatalf("StoreFeed(html) = %v, want feed.ErrNotFeed", err)
		}
		if st := topicState(t, n.st, topic); !strings.Contains(st.Status.HTTP, "discarded") {
			t.Fatalf("status after unparseable content = %q", st.Status.HTTP)
		}
		if got := readAll(t, n.st, topic); len(got) != 2 {
			t.Fatalf("%d items after unparseable content, want the 2 stored before", len(got))
		}
	})
}

func TestCallbackUnknownAndMethods(t *testing.T) {
	n := startNode(t, openEmbedded(t), testOptions(), false)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/callback/nope?hub.mode=subscribe&hub.topic=x&hub.challenge=c", 404},
		{"POST", "/callback/nope", 410},
		{"PUT", "/callback/nope", 405},
	} {
		req, _ := http.NewRequest(c.method, n.url+c.path, strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
}

// TestRunStops: Run returns at once when its context ends, also with
// fetches in flight (they are abandoned, not waited for), and hands their
// jobs back.
func TestRunStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		f := newTestFeed("slow", 1)
		f.delay = time.Hour
		topic := b.serve(f) + "/feed"
		st := openEmbedded(t)
		n := b.startNode(st, testOptions(), false)
		subscribe(t, n, topic)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.svc.Run(ctx) }()
		synctest.Wait()
		if h := f.hits.Load(); h != 1 {
			t.Fatalf("%d fetches started once Run went idle, want 1", h)
		}
		stopped := time.Now()
		cancel()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
		default:
			t.Fatal("Run had not returned once everything else was idle after its context ended")
		}
		at, ok, err := st.IngestJobs().Due(ctxT(t), fetchJob(topic))
		if err != nil || !ok || at.After(stopped) {
			t.Fatalf("after shutdown the job is due %v (exists %v, %v); want it handed back for %v", at, ok, err, stopped)
		}
	})
}
