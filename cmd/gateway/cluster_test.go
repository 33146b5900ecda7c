package main_test

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/clusterslot"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
)

// Fault tests of two gateway nodes on a Redis Cluster or a Sentinel set:
// the beds are the test's own (they kill masters and move slots).

// gatewayPair starts two gateway nodes on the Redis deployment the flags
// name (with serveArgs), and a user of every right; it returns the nodes
// and the user's credentials.
func gatewayPair(t *testing.T, redisArgs []string, serveArgs ...string) ([2]*proc, string) {
	t.Helper()
	var nodes [2]*proc
	for i := range nodes {
		addr := freeAddr(t)
		args := append([]string{"serve", "--listen", addr, "--public-url", "http://" + addr, "--allow-private",
			"--retention", "100000", "--node-id", fmt.Sprintf("node%d", i), "--max-unauth-conns", "0"}, redisArgs...)
		args = append(args, serveArgs...)
		nodes[i] = start(t, addr, nil, args...)
	}
	token := userAdd(t, nil, append([]string{"pat", "--rights", "all"}, redisArgs...)...)
	return nodes, "pat:" + token
}

// topicKey is a key in the Redis Cluster slot of a topic's data: the
// store's hash tag of the topic (see store/redis).
func topicKey(topic string) string {
	sum := sha1.Sum([]byte(topic))
	return "{" + hex.EncodeToString(sum[:16]) + "}"
}

// emptyFeeds serves an empty RSS feed at every path, counting fetches.
func emptyFeeds(t *testing.T) (*httptest.Server, func(path string) int) {
	t.Helper()
	var mu sync.Mutex
	hits := make(map[string]int)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/rss+xml")
		_, _ = io.WriteString(w, `<?xml version="1.0"?><rss version="2.0"><channel><title>Empty</title><link>https://empty.example/</link></channel></rss>`)
	}))
	t.Cleanup(srv.Close)
	return srv, func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return hits[path]
	}
}

func subscribe(t *testing.T, base, creds string, q url.Values) {
	t.Helper()
	q.Set("hub.mode", "subscribe")
	if code, body := form(t, base, creds, q); code != http.StatusNoContent {
		t.Fatalf("subscribe %v: %d %s", q, code, body)
	}
}

// pinger fat-pings one item at a time, alternating nodes, and retries an
// item until a node acknowledges it (2xx), as a publisher whose pings get
// 503 would (appends are idempotent).
type pinger struct {
	nodes [2]*proc
	creds string
	topic string

	mu       sync.Mutex
	acked    []string
	failures int
	last     string // the last failure
}

func (p *pinger) run(ctx context.Context) {
	client := &http.Client{Timeout: 10 * time.Second}
	login, token, _ := strings.Cut(p.creds, ":")
	for i := 1; ctx.Err() == nil; i++ {
		id := fmt.Sprintf("p%05d", i)
		doc := fmt.Sprintf(`<?xml version="1.0"?><rss version="2.0"><channel><title>Pings</title><link>https://pings.example/</link>`+
			`<item><guid>%s</guid><title>Item %s</title><description>%s</description></item></channel></rss>`, id, id, id)
		for n := i; ctx.Err() == nil; n++ {
			base := p.nodes[n%2].url
			req, _ := http.NewRequestWithContext(ctx, "POST", base+"/?hub.mode=publish&hub.topic="+url.QueryEscape(p.topic), strings.NewReader(doc))
			req.SetBasicAuth(login, token)
			req.Header.Set("Content-Type", "application/rss+xml")
			resp, err := client.Do(req)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					p.mu.Lock()
					p.acked = append(p.acked, id)
					p.mu.Unlock()
					break
				}
				err = fmt.Errorf("%s answered %d %s", base, resp.StatusCode, strings.TrimSpace(string(body)))
				if resp.StatusCode != http.StatusServiceUnavailable {
					err = fmt.Errorf("not a 503: %w", err)
				}
			}
			p.mu.Lock()
			p.failures++
			p.last = err.Error()
			p.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (p *pinger) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// waitMore waits until n more pings are acknowledged than now.
func (p *pinger) waitMore(t *testing.T, n int, within time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	want := p.count() + n
	for p.count() < want {
		if time.Since(start) > within {
			p.mu.Lock()
			last, failures := p.last, p.failures
			p.mu.Unlock()
			t.Fatalf("%s: %d of %d more fat pings acknowledged within %v (%d failures, the last: %s)", what, p.count()-want+n, n, within, failures, last)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition; bounded above
	}
	return time.Since(start)
}

// ndjson reads a topic's NDJSON stream from one node; when the stream ends
// it resumes with the last cursor seen, as a client would. It records each
// item id in the order received.
type ndjson struct {
	base, creds, topic string

	mu      sync.Mutex
	ids     []string
	last    string // cursor
	resumed int
	opened  chan struct{}
	once    sync.Once
}

func newNDJSON(base, creds, topic string) *ndjson {
	return &ndjson{base: base, creds: creds, topic: topic, opened: make(chan struct{})}
}

func (s *ndjson) run(ctx context.Context) {
	login, token, _ := strings.Cut(s.creds, ":")
	for ctx.Err() == nil {
		q := url.Values{"hub.mode": {"retrieve"}, "hub.topic": {s.topic}, "wait": {"stream"}, "format": {"json"}, "count": {"50"}}
		s.mu.Lock()
		if s.last != "" {
			q.Set("after", s.last)
		}
		s.mu.Unlock()
		req, _ := http.NewRequestWithContext(ctx, "GET", s.base+"/?"+q.Encode(), nil)
		req.SetBasicAuth(login, token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			s.read(resp.Body)
		}
		if resp != nil {
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.resumed++
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *ndjson) read(body io.Reader) {
	r := bufio.NewReaderSize(body, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var n struct {
				Items []struct {
					ID     string `json:"id"`
					Cursor string `json:"cursor"`
				} `json:"items"`
			}
			if json.Unmarshal(line, &n) == nil {
				s.mu.Lock()
				// Items are listed newest first.
				for i := len(n.Items) - 1; i >= 0; i-- {
					s.ids = append(s.ids, n.Items[i].ID)
					s.last = n.Items[i].Cursor
				}
				s.mu.Unlock()
				s.once.Do(func() { close(s.opened) })
			}
		}
		if err != nil {
			return
		}
	}
}

// has reports whether the stream received every id.
func (s *ndjson) has(ids []string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := make(map[string]bool, len(s.ids))
	for _, id := range s.ids {
		got[id] = true
	}
	for _, id := range ids {
		if !got[id] {
			return false
		}
	}
	return true
}

// check fails unless the stream received every acknowledged id exactly
// once (and no id twice).
func (s *ndjson) check(t *testing.T, name string, acked []string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := make(map[string]int, len(s.ids))
	for _, id := range s.ids {
		n[id]++
	}
	for id, c := range n {
		if c > 1 {
			t.Errorf("%s: item %s received %d times", name, id, c)
		}
	}
	for _, id := range acked {
		if n[id] != 1 {
			t.Errorf("%s: acknowledged item %s received %d times, want once", name, id, n[id])
		}
	}
	t.Logf("%s: %d items, resumed %d times", name, len(s.ids), s.resumed)
}

// retrieveAll pages through the topic from its first item.
func retrieveAll(t *testing.T, base, creds, topic string) map[string]bool {
	t.Helper()
	out := make(map[string]bool)
	after := "0000000000000000"
	for {
		q := url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "format": {"json"}, "count": {"50"}, "after": {after}}
		code, body := call(t, "GET", base+"/?"+q.Encode(), creds, "", "")
		var page struct {
			Items []struct {
				ID     string `json:"id"`
				Cursor string `json:"cursor"`
			} `json:"items"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil {
			t.Fatalf("retrieve after %s: %d %s", after, code, body)
		}
		if len(page.Items) == 0 {
			return out
		}
		for _, it := range page.Items {
			out[it.ID] = true
		}
		after = page.Items[0].Cursor
	}
}

// readiness polls /readyz of the nodes until stopped, recording what each
// answered.
type readiness struct {
	mu     sync.Mutex
	red    []string // bodies of red answers
	greens int
}

func (r *readiness) run(ctx context.Context, nodes [2]*proc) {
	client := &http.Client{Timeout: 3 * time.Second}
	for ctx.Err() == nil {
		for _, n := range nodes {
			req, _ := http.NewRequestWithContext(ctx, "GET", n.url+"/readyz", nil)
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r.mu.Lock()
			if resp.StatusCode == http.StatusOK {
				r.greens++
			} else {
				r.red = append(r.red, fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body))))
			}
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ready waits until both nodes answer /readyz 200.
func ready(t *testing.T, nodes [2]*proc, within time.Duration) {
	t.Helper()
	testkit.Eventually(t, within, "both nodes ready", func() bool {
		for _, n := range nodes {
			resp, err := http.Get(n.url + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
}

// faultRun is a topic streamed from both nodes while fat pings come in;
// fault runs between start and finish.
type faultRun struct {
	t       *testing.T
	nodes   [2]*proc
	creds   string
	topic   string
	streams [2]*ndjson
	pinger  *pinger
	ready   *readiness
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func startFaultRun(t *testing.T, nodes [2]*proc, creds, topic string) *faultRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &faultRun{t: t, nodes: nodes, creds: creds, topic: topic, cancel: cancel, ready: &readiness{}}
	t.Cleanup(func() { cancel(); r.wg.Wait() })
	subscribe(t, nodes[0].url, creds, url.Values{"hub.topic": {topic}})
	for i, n := range nodes {
		r.streams[i] = newNDJSON(n.url, creds, topic)
		s := r.streams[i]
		r.wg.Go(func() { s.run(ctx) })
		select {
		case <-s.opened:
		case <-time.After(10 * time.Second):
			t.Fatalf("the stream on node %d did not open within 10 s", i)
		}
	}
	r.pinger = &pinger{nodes: nodes, creds: creds, topic: topic}
	r.wg.Go(func() { r.pinger.run(ctx) })
	r.wg.Go(func() { r.ready.run(ctx, nodes) })
	r.pinger.waitMore(t, 20, 15*time.Second, "before the fault")
	return r
}

// finish stops publishing and checks that every acknowledged item is
// retrievable from both nodes and reached both streams exactly once.
func (r *faultRun) finish() {
	t := r.t
	t.Helper()
	r.pinger.mu.Lock()
	acked := append([]string(nil), r.pinger.acked...)
	failures := r.pinger.failures
	r.pinger.mu.Unlock()
	// Stop the pings, not the streams: they catch up on what was
	// acknowledged.
	for i, s := range r.streams {
		testkit.Eventually(t, 20*time.Second, fmt.Sprintf("stream on node %d to receive every acknowledged item", i), func() bool { return s.has(acked) })
	}
	r.cancel()
	r.wg.Wait()
	for i, n := range r.nodes {
		stored := retrieveAll(t, n.url, r.creds, r.topic)
		for _, id := range acked {
			if !stored[id] {
				t.Errorf("acknowledged item %s is not retrievable from node %d", id, i)
			}
		}
	}
	for i, s := range r.streams {
		s.check(t, fmt.Sprintf("stream on node %d", i), acked)
	}
	t.Logf("%d fat pings acknowledged, %d attempts failed", len(acked), failures)
}

// TestClusterMasterKilledTwoNodes: two gateway nodes on a 3-master cluster
// with --redis-wait-replicas 1, a topic streamed from both while fat pings
// come in; the master serving the topic's slot is killed (SIGKILL). Every
// acknowledged item is retrievable and reaches both open streams exactly
// once; publishing works again within 15 s; /readyz is red, naming the
// shard, while the slot is unserved, and green after.
func TestClusterMasterKilledTwoNodes(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	nodes, creds := gatewayPair(t, []string{"--redis-cluster", c.Seeds(), "--redis-wait-replicas", "1"})
	feeds, _ := emptyFeeds(t)
	topic := feeds.URL + "/killed"
	r := startFaultRun(t, nodes, creds, topic)

	old := c.MasterOf(topicKey(topic))
	c.Kill(old)
	killed := time.Now()
	c.WaitFailover(topicKey(topic), old)
	// The killed master comes back as a replica of its successor, so that
	// WAIT 1 can be met on that shard again.
	c.Restart(old)
	r.pinger.waitMore(t, 20, 15*time.Second, "after the failover")
	t.Logf("publishing again %v after the kill", time.Since(killed).Round(time.Millisecond))
	ready(t, nodes, 15*time.Second)
	r.finish()

	r.ready.mu.Lock()
	defer r.ready.mu.Unlock()
	named := false
	for _, body := range r.ready.red {
		named = named || strings.Contains(body, old)
	}
	if !named {
		t.Errorf("/readyz was never red naming the killed shard %s while its slots were unserved; red answers: %q", old, r.ready.red)
	}
}

// TestClusterReshardTwoNodes moves a streamed topic's slot to another
// master (redis-cli --cluster reshard) while fat pings come in: nothing is
// lost or doubled.
func TestClusterReshardTwoNodes(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	nodes, creds := gatewayPair(t, []string{"--redis-cluster", c.Seeds()})
	feeds, _ := emptyFeeds(t)
	masters := c.Masters()
	slot := c.FirstSlot(masters[0])
	var topic string
	for i := 0; topic == ""; i++ {
		if candidate := fmt.Sprintf("%s/reshard/%d", feeds.URL, i); clusterslot.Of(topicKey(candidate)) == slot {
			topic = candidate
		}
	}
	r := startFaultRun(t, nodes, creds, topic)
	c.Reshard(masters[0], masters[1], 1)
	if got := c.MasterOf(topicKey(topic)); got != masters[1] {
		t.Fatalf("after the reshard the topic's slot is served by %s, want %s", got, masters[1])
	}
	r.pinger.waitMore(t, 20, 15*time.Second, "after the reshard")
	ready(t, nodes, 15*time.Second)
	r.finish()
}

// TestSentinelMasterKilledTwoNodes is the master kill on Sentinel.
func TestSentinelMasterKilledTwoNodes(t *testing.T) {
	t.Parallel()
	sb := redistest.StartSentinel(t)
	nodes, creds := gatewayPair(t, []string{"--redis-sentinel", sb.Seeds(), "--redis-master", redistest.SentinelMaster, "--redis-wait-replicas", "1"})
	feeds, _ := emptyFeeds(t)
	r := startFaultRun(t, nodes, creds, feeds.URL+"/sentinel")
	killed := time.Now()
	old := sb.KillMaster()
	sb.WaitFailover(old)
	r.pinger.waitMore(t, 20, 15*time.Second, "after the failover")
	t.Logf("publishing again %v after the kill", time.Since(killed).Round(time.Millisecond))
	ready(t, nodes, 15*time.Second)
	r.finish()
}

// TestClusterWebhookOnce: a webhook subscription on a cluster with two
// nodes running deliveries gets each item exactly once.
func TestClusterWebhookOnce(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	nodes, creds := gatewayPair(t, []string{"--redis-cluster", c.Seeds()})
	var mu sync.Mutex
	got := make(map[string]int)
	var posts atomic.Int64
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		var n struct {
			Items []struct {
				ID string `json:"id"`
			} `json:"items"`
		}
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &n) == nil {
			mu.Lock()
			for _, it := range n.Items {
				got[it.ID]++
			}
			mu.Unlock()
		}
		posts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hooks.Close)
	topic := "https://hooks.example/" + fmt.Sprint(time.Now().UnixNano())
	subscribe(t, nodes[0].url, creds, url.Values{"hub.topic": {topic}, "hub.callback": {hooks.URL + "/cb"}, "format": {"json"}})
	const n = 30
	for i := 1; i <= n; i++ {
		doc := fmt.Sprintf(`<?xml version="1.0"?><rss version="2.0"><channel><title>Hooks</title><link>https://hooks.example/</link>`+
			`<item><guid>h%02d</guid><title>Item %d</title></item></channel></rss>`, i, i)
		if code, body := call(t, "POST", nodes[i%2].url+"/?hub.mode=publish&hub.topic="+url.QueryEscape(topic), creds, "application/rss+xml", doc); code/100 != 2 {
			t.Fatalf("fat ping %d: %d %s", i, code, body)
		}
	}
	testkit.Eventually(t, 20*time.Second, "the callback to receive the 30 items", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	mu.Lock()
	for id, k := range got {
		if k != 1 {
			t.Errorf("item %s delivered %d times", id, k)
		}
	}
	mu.Unlock()
	t.Logf("%d items in %d POSTs", n, posts.Load())

	// The cluster-wide gauges are reported by one node (0 on the other),
	// so that their sum over the nodes is the deployment's.
	testkit.Eventually(t, 20*time.Second, "one node reporting the one callback subscription, the other 0", func() bool {
		var vals []string
		for _, node := range nodes {
			_, body := call(t, "GET", node.url+"/metrics", "", "", "")
			for _, line := range strings.Split(body, "\n") {
				if v, ok := strings.CutPrefix(line, "feedgate_hub_callback_subscriptions "); ok {
					vals = append(vals, v)
				}
			}
		}
		return len(vals) == 2 && ((vals[0] == "1" && vals[1] == "0") || (vals[0] == "0" && vals[1] == "1"))
	})
}

// TestClusterIngestOnce: two nodes polling 20 topics on a cluster fetch
// each exactly once per due time.
func TestClusterIngestOnce(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	nodes, creds := gatewayPair(t, []string{"--redis-cluster", c.Seeds()}, "--min-period", "1h")
	feeds, hits := emptyFeeds(t)
	base := fmt.Sprintf("%s/ingest/%d", feeds.URL, time.Now().UnixNano())
	const n = 20
	for i := range n {
		subscribe(t, nodes[i%2].url, creds, url.Values{"hub.topic": {fmt.Sprintf("%s/%d", base, i)}})
	}
	path := func(i int) string { u, _ := url.Parse(fmt.Sprintf("%s/%d", base, i)); return u.Path }
	testkit.Eventually(t, 20*time.Second, "every topic fetched", func() bool {
		for i := range n {
			if hits(path(i)) == 0 {
				return false
			}
		}
		return true
	})
	// A publisher's ping makes topic 0 due again: exactly one more fetch;
	// by then both nodes have claimed whatever they could.
	if code, body := call(t, "POST", nodes[1].url+"/?hub.mode=publish&hub.topic="+url.QueryEscape(fmt.Sprintf("%s/0", base)), creds, "", ""); code/100 != 2 {
		t.Fatalf("ping: %d %s", code, body)
	}
	testkit.Eventually(t, 20*time.Second, "the pinged topic fetched again", func() bool { return hits(path(0)) >= 2 })
	for i := range n {
		want := 1
		if i == 0 {
			want = 2
		}
		if got := hits(path(i)); got != want {
			t.Errorf("topic %d fetched %d times, want %d", i, got, want)
		}
	}
}
