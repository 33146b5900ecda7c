package ingest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
)

// fetchLog records the fetches a feed server sees, per path.
type fetchLog struct {
	mu       sync.Mutex
	fetches  map[string][]fetchRecord
	inFlight map[string]int
	overlaps []string
}

type fetchRecord struct {
	start, end time.Time
	agent      string
}

func newFetchLog() *fetchLog {
	return &fetchLog{fetches: map[string][]fetchRecord{}, inFlight: map[string]int{}}
}

func (l *fetchLog) handler(delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		l.mu.Lock()
		l.inFlight[r.URL.Path]++
		if l.inFlight[r.URL.Path] > 1 {
			l.overlaps = append(l.overlaps, r.URL.Path)
		}
		l.mu.Unlock()
		if delay > 0 {
			// A slow server, until the client gives up.
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
			}
		}
		w.Header().Set("Content-Type", "application/atom+xml")
		w.Header().Set("ETag", `"same"`)
		if r.Header.Get("If-None-Match") == `"same"` {
			w.WriteHeader(http.StatusNotModified)
		} else {
			_, _ = w.Write(atomDoc("t"+r.URL.Path, []entry{{ID: "urn:" + r.URL.Path, Title: "only"}}))
		}
		l.mu.Lock()
		l.inFlight[r.URL.Path]--
		l.fetches[r.URL.Path] = append(l.fetches[r.URL.Path], fetchRecord{start: start, end: time.Now(), agent: r.Header.Get("User-Agent")})
		l.mu.Unlock()
	})
}

// inFlight returns how many fetches are in progress.
func (l *fetchLog) inFlightTotal() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.inFlight {
		n += c
	}
	return n
}

// fewest returns the smallest number of fetches of any of paths.
func (l *fetchLog) fewest(paths []string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	least := -1
	for _, p := range paths {
		if n := len(l.fetches[p]); least < 0 || n < least {
			least = n
		}
	}
	return least
}

// checkShared checks that no fetch of a topic overlapped another and that
// both ingest nodes fetched while the api node did not.
func (l *fetchLog) checkShared(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.overlaps) > 0 {
		t.Errorf("%d fetches overlapped another fetch of the same topic, e.g. %s", len(l.overlaps), l.overlaps[0])
	}
	byNode := map[string]int{}
	total := 0
	for _, fs := range l.fetches {
		for _, f := range fs {
			byNode[strings.Fields(f.agent)[0]]++
			total++
		}
	}
	t.Logf("%d fetches of %d topics: %v", total, len(l.fetches), byNode)
	if byNode["feedgate/node1"] == 0 || byNode["feedgate/node2"] == 0 || byNode["feedgate/api"] != 0 {
		t.Errorf("fetches by node %v: both ingest nodes must share the work and the api node must not fetch", byNode)
	}
}

// TestTwoNodesOneRedis: two ingest nodes poll 200 topics on one Redis; a
// third, api-only node (no Run) subscribes them. The nodes share the work,
// the api node fetches nothing, no topic is ever fetched by two nodes at
// once, and none is fetched again before its period (less the jitter) has
// passed since the previous fetch ended. (How punctual the fetches are is
// TestPollingRhythm's subject, on the bubble's clock.)
func TestTwoNodesOneRedis(t *testing.T) {
	const topics = 200
	const period = time.Second
	const jitter = 0.05
	log := newFetchLog()
	feeds := serve(t, log.handler(5*time.Millisecond))
	srv := redistest.Start(t)
	opts := testOptions()
	opts.MinPeriod, opts.MaxPeriod, opts.InitialPeriod = period, period, period
	opts.Jitter = jitter
	nodeOpts := func(version string) Options { o := opts; o.Version = version; return o }
	node1 := startNode(t, openRedisURL(t, srv.URL()), nodeOpts("node1"), true)
	node2 := startNode(t, openRedisURL(t, srv.URL()), nodeOpts("node2"), true)
	api := startNode(t, openRedisURL(t, srv.URL()), nodeOpts("api"), false)

	var paths []string
	for i := range topics {
		subscribe(t, api, fmt.Sprintf("%s/feed/%03d", feeds.URL, i))
		paths = append(paths, fmt.Sprintf("/feed/%03d", i))
	}
	testkit.Eventually(t, time.Minute, "every topic to be fetched three times", func() bool { return log.fewest(paths) >= 3 })
	// Untracked, the jobs are gone: a fetch in flight is not rescheduled
	// when its node stops. Stopped nodes fetch nothing more.
	for i := range topics {
		if err := api.svc.Untrack(ctxT(t), fmt.Sprintf("%s/feed/%03d", feeds.URL, i)); err != nil {
			t.Fatalf("Untrack: %v", err)
		}
	}
	node1.stop()
	node2.stop()
	testkit.Eventually(t, settle, "the feed server to finish the fetches the nodes gave up", func() bool { return log.inFlightTotal() == 0 })

	log.checkShared(t)
	log.mu.Lock()
	defer log.mu.Unlock()
	// The next fetch is due a jittered period after the previous one
	// ended (as the node saw it: later than the server did), stored to the
	// millisecond.
	least := time.Duration(float64(period)*(1-jitter)) - time.Millisecond
	for _, path := range paths {
		fs := log.fetches[path]
		for i := 1; i < len(fs); i++ {
			if gap := fs[i].start.Sub(fs[i-1].end); gap < least {
				t.Errorf("%s fetched again %s after the previous fetch ended (by %s, then %s); want at least %s with a %s period",
					path, gap, fs[i-1].agent, fs[i].agent, least, period)
			}
		}
	}
}

// TestPollingRhythm: on the bubble's clock, two ingest nodes poll 50 topics
// that an api-only node subscribed. Each topic is fetched within one poll
// interval of its subscription, then again one period (± the jitter) after
// each fetch ended, within a poll interval, never by two nodes at once;
// both nodes share the work and the api node fetches nothing.
func TestPollingRhythm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			topics = 50
			period = time.Minute
			jitter = 0.05
			poll   = time.Second
			fetch  = 2 * time.Second // a slow feed server (the fetch timeout is 5 s)
		)
		b := newBubble(t)
		log := newFetchLog()
		feeds := b.serve(log.handler(fetch))
		st := openEmbedded(t)
		opts := testOptions()
		opts.MinPeriod, opts.MaxPeriod, opts.InitialPeriod = period, period, period
		opts.Jitter = jitter
		opts.PollInterval = poll
		opts.Concurrency = topics // no fetch waits for a free slot
		nodeOpts := func(version string) Options { o := opts; o.Version = version; return o }
		node1 := b.startNode(st, nodeOpts("node1"), true)
		node2 := b.startNode(st, nodeOpts("node2"), true)
		api := b.startNode(st, nodeOpts("api"), false)

		tracked := time.Now()
		var paths []string
		for i := range topics {
			subscribe(t, api, fmt.Sprintf("%s/feed/%03d", feeds, i))
			paths = append(paths, fmt.Sprintf("/feed/%03d", i))
		}
		if !time.Now().Equal(tracked) {
			t.Fatalf("subscribing took %s of the bubble's time; want none", time.Since(tracked))
		}
		time.Sleep(10 * period)
		for i := range topics {
			if err := api.svc.Untrack(ctxT(t), fmt.Sprintf("%s/feed/%03d", feeds, i)); err != nil {
				t.Fatalf("Untrack: %v", err)
			}
		}
		node1.stop()
		node2.stop()
		synctest.Wait()
		if n := log.inFlightTotal(); n != 0 {
			t.Fatalf("%d fetches still in flight at the server once both nodes had stopped", n)
		}

		log.checkShared(t)
		log.mu.Lock()
		defer log.mu.Unlock()
		earliest := time.Duration(float64(period)*(1-jitter)) - time.Millisecond // due times are stored to the ms
		latest := time.Duration(float64(period)*(1+jitter)) + poll
		for _, path := range paths {
			fs := log.fetches[path]
			if len(fs) < 9 {
				t.Errorf("%s fetched %d times in %s, want one fetch per period (9 or 10)", path, len(fs), 10*period)
				continue
			}
			if d := fs[0].start.Sub(tracked); d > poll {
				t.Errorf("%s first fetched %s after it was tracked, want within the %s poll interval", path, d, poll)
			}
			for i := 1; i < len(fs); i++ {
				if gap := fs[i].start.Sub(fs[i-1].end); gap < earliest || gap > latest {
					t.Errorf("%s fetched again %s after fetch %d ended (by %s, then %s); want %s to %s",
						path, gap, i, fs[i-1].agent, fs[i].agent, earliest, latest)
				}
			}
		}
	})
}

// TestNodeFailover: a node that dies holding a job gives it back when the
// lease runs out, and another node fetches the topic; never before.
func TestNodeFailover(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		log := newFetchLog()
		feeds := serve(t, log.handler(0))
		st := open(t)
		topic := feeds.URL + "/feed/x"
		if _, err := st.PutSubscription(ctxT(t), store.Subscription{Login: "a", Topic: topic}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.IngestJobs().Schedule(ctxT(t), fetchJob(topic), time.Now(), store.IfAbsent); err != nil {
			t.Fatal(err)
		}
		// A node claims the job and dies without releasing it.
		claims, err := st.IngestJobs().Claim(ctxT(t), time.Now(), 10, 500*time.Millisecond)
		if err != nil || len(claims) != 1 {
			t.Fatalf("Claim = %v, %v", claims, err)
		}
		opts := testOptions()
		opts.MinPeriod, opts.MaxPeriod = time.Hour, time.Hour
		startNode(t, st, opts, true)
		testkit.Eventually(t, settle, "the fetch after the lease ran out", func() bool {
			log.mu.Lock()
			defer log.mu.Unlock()
			return len(log.fetches["/feed/x"]) == 1
		})
		log.mu.Lock()
		defer log.mu.Unlock()
		// Leases are stored to the millisecond.
		if at := log.fetches["/feed/x"][0].start; at.Before(claims[0].Until.Add(-time.Millisecond)) {
			t.Fatalf("the topic was fetched %s before the other node's lease ran out", claims[0].Until.Sub(at))
		}
	})
}
