package ingest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
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
		time.Sleep(delay)
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

// TestTwoNodesOneRedis: two ingest nodes poll 200 topics on one Redis; a
// third, api-only node (no Run) subscribes them. Every topic is fetched
// within a second of its subscription, never by two nodes at once, and
// once per period.
func TestTwoNodesOneRedis(t *testing.T) {
	const topics = 200
	const period = time.Second
	log := newFetchLog()
	feeds := serve(t, log.handler(5*time.Millisecond))
	srv := redistest.Start(t)
	opts := testOptions()
	opts.MinPeriod, opts.MaxPeriod, opts.InitialPeriod = period, period, period
	opts.Jitter = 0.05
	nodeOpts := func(version string) Options { o := opts; o.Version = version; return o }
	startNode(t, openRedisURL(t, srv.URL()), nodeOpts("node1"), true)
	startNode(t, openRedisURL(t, srv.URL()), nodeOpts("node2"), true)
	api := startNode(t, openRedisURL(t, srv.URL()), nodeOpts("api"), false)

	tracked := make(map[string]time.Time)
	for i := range topics {
		topic := fmt.Sprintf("%s/feed/%03d", feeds.URL, i)
		subscribe(t, api, topic)
		tracked[fmt.Sprintf("/feed/%03d", i)] = time.Now()
	}
	time.Sleep(3500 * time.Millisecond)
	for i := range topics {
		if err := api.svc.Untrack(ctxT(t), fmt.Sprintf("%s/feed/%03d", feeds.URL, i)); err != nil {
			t.Fatalf("Untrack: %v", err)
		}
	}
	// Untracking takes a while on a loaded machine: the topics are polled
	// until then.
	untracked := time.Now()
	time.Sleep(100 * time.Millisecond) // fetches in flight finish

	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.overlaps) > 0 {
		t.Fatalf("%d fetches overlapped another fetch of the same topic, e.g. %s", len(log.overlaps), log.overlaps[0])
	}
	byNode := map[string]int{}
	total := 0
	for path, at := range tracked {
		fs := log.fetches[path]
		// One fetch at once, then one per period (jitter may add one).
		most := int(untracked.Sub(at)/period) + 2
		if len(fs) < 3 || len(fs) > most {
			t.Errorf("%s fetched %d times in %s with a 1 s period, want 3 to %d", path, len(fs), untracked.Sub(at).Round(time.Millisecond), most)
			continue
		}
		if d := fs[0].start.Sub(at); d > time.Second {
			t.Errorf("%s first fetched %s after it was tracked, want within 1 s", path, d)
		}
		for i := 1; i < len(fs); i++ {
			if gap := fs[i].start.Sub(fs[i-1].end); gap < period*85/100 {
				t.Errorf("%s fetched again %s after the previous fetch (by %s, then %s); want one fetch per period",
					path, gap, fs[i-1].agent, fs[i].agent)
			}
		}
		for _, f := range fs {
			byNode[strings.Fields(f.agent)[0]]++
			total++
		}
	}
	t.Logf("%d fetches of %d topics: %v", total, topics, byNode)
	if byNode["feedgate/node1"] == 0 || byNode["feedgate/node2"] == 0 || byNode["feedgate/api"] != 0 {
		t.Fatalf("fetches by node %v: both ingest nodes must share the work and the api node must not fetch", byNode)
	}
}

// TestNodeFailover: a node that dies holding a job gives it back when the
// lease runs out, and another node fetches the topic.
func TestNodeFailover(t *testing.T) {
	log := newFetchLog()
	feeds := serve(t, log.handler(0))
	st := openRedis(t)
	topic := feeds.URL + "/feed/x"
	if _, err := st.PutSubscription(ctxT(t), store.Subscription{Login: "a", Topic: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddJob(ctxT(t), fetchJob(topic), time.Now()); err != nil {
		t.Fatal(err)
	}
	// A node claims the job and dies without releasing it.
	claims, err := st.ClaimJobs(ctxT(t), time.Now(), 10, 500*time.Millisecond)
	if err != nil || len(claims) != 1 {
		t.Fatalf("ClaimJobs = %v, %v", claims, err)
	}
	opts := testOptions()
	opts.MinPeriod, opts.MaxPeriod = time.Hour, time.Hour
	startNode(t, st, opts, true)
	time.Sleep(300 * time.Millisecond)
	log.mu.Lock()
	early := len(log.fetches["/feed/x"])
	log.mu.Unlock()
	if early != 0 {
		t.Fatal("the topic was fetched while another node held its lease")
	}
	waitFor(t, 2*time.Second, "the fetch after the lease ran out", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.fetches["/feed/x"]) == 1
	})
}
