package hub

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/store"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkWebhookDelivery measures webhook delivery on Redis, on loopback:
// FEEDGATE_BENCH_CALLBACKS callbacks (default 1000) subscribed to one topic,
// FEEDGATE_BENCH_ITEMS items (default 100) published one append at a time
// every FEEDGATE_BENCH_INTERVAL_MS (default 10). It reports item deliveries
// per second (one item to one callback), POSTs per second, the publish to
// POST latency of every item at every callback (p50, p99, max) and lost
// deliveries, which must be 0. Run it once:
//
//	go test -run '^$' -bench WebhookDelivery -benchtime 1x ./hub
func BenchmarkWebhookDelivery(b *testing.B) {
	callbacks := envInt("FEEDGATE_BENCH_CALLBACKS", 1000)
	nItems := envInt("FEEDGATE_BENCH_ITEMS", 100)
	interval := time.Duration(envInt("FEEDGATE_BENCH_INTERVAL_MS", 10)) * time.Millisecond
	for range b.N {
		runDeliveryBench(b, callbacks, nItems, interval)
	}
}

func runDeliveryBench(b *testing.B, callbacks, nItems int, interval time.Duration) {
	b.StopTimer()
	e := newEnvOn(b, teststore.Redis(b, redisStart(b), store.Options{}), func(o *Options) {
		o.PollInterval = 100 * time.Millisecond
		o.Registerer = nil
	})
	p := e.principal(fmt.Sprintf("bench%d", time.Now().UnixNano()%1e6))
	ctx := ctxT(b)

	var (
		mu        sync.Mutex
		published = map[feed.Cursor]time.Time{}
		seen      = make(map[[2]int]bool, callbacks*nItems)
		latencies = make([]time.Duration, 0, callbacks*nItems)
		dups      int
		posts     int
		last      time.Time
	)
	handler := func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		now := time.Now()
		cb, _ := strconv.Atoi(r.URL.Path[len("/cb/"):])
		var n struct {
			Items []struct {
				Cursor feed.Cursor `json:"cursor"`
			} `json:"items"`
		}
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &n); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		posts++
		last = now
		for _, it := range n.Items {
			k := [2]int{cb, int(it.Cursor)}
			if seen[k] {
				dups++
				continue
			}
			seen[k] = true
			if at, ok := published[it.Cursor]; ok {
				latencies = append(latencies, now.Sub(at))
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
	// Callbacks spread over several servers, as over several subscribers.
	const perServer = 20
	var servers []*httptest.Server
	for i := 0; i < callbacks; i += perServer {
		srv := httptest.NewServer(http.HandlerFunc(handler))
		b.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	for i := range callbacks {
		cb := fmt.Sprintf("%s/cb/%d", servers[i/perServer].URL, i)
		if err := e.hub.Subscribe(ctx, p, request(b, "hub.topic", topic, "hub.callback", cb, "format", "json")); err != nil {
			b.Fatal(err)
		}
	}
	testkit.Eventually(b, 30*time.Second, "the subscriptions' first (empty) runs", func() bool {
		st, err := e.hub.dlv.DeliveryStats(ctx, time.Now())
		return err == nil && st.Due == 0 && st.Leased == 0
	})

	b.StartTimer()
	start := time.Now()
	for i := range nItems {
		at := time.Now()
		stored, err := e.st.Append(ctx, topic, []feed.Item{{ID: fmt.Sprintf("bench-%d-%d", start.UnixNano(), i), Title: "bench", Content: "<p>x</p>", Hash: "h"}})
		if err != nil || len(stored) != 1 {
			b.Fatalf("append: %v", err)
		}
		mu.Lock()
		published[stored[0].Cursor] = at
		mu.Unlock()
		if d := time.Until(at.Add(interval)); d > 0 {
			time.Sleep(d)
		}
	}
	want := callbacks * nItems
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	e.stop() // every POST started has been answered: late duplicates are counted
	mu.Lock()
	defer mu.Unlock()
	elapsed := last.Sub(start)
	lost := want - len(seen)
	slices.Sort(latencies)
	pct := func(q float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]
	}
	b.ReportMetric(float64(len(seen))/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(posts)/elapsed.Seconds(), "posts/s")
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(pct(1).Microseconds())/1000, "max_ms")
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(dups), "duplicates")
	b.Logf("%d callbacks x %d items: %d deliveries in %d POSTs over %s; p50 %s p99 %s max %s; lost %d, duplicates %d",
		callbacks, nItems, len(seen), posts, elapsed.Round(time.Millisecond), pct(0.5), pct(0.99), pct(1), lost, dups)
	if lost > 0 {
		b.Errorf("%d deliveries lost", lost)
	}
}
