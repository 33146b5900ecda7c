package stream_test

import (
	"bufio"
	"context"
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
	redisstore "github.com/feedgate/feedgate/store/redis"
	"github.com/feedgate/feedgate/stream"
)

const (
	topicA = "https://example.com/a.xml"
	topicB = "https://example.com/b.xml"
	topicC = "https://example.com/c.xml"
)

// waitFor bounds every wait for something that should happen.
const waitFor = 10 * time.Second

type backend struct {
	name string
	open func(t *testing.T) store.Store
}

func openEmbedded(t *testing.T) store.Store {
	st, err := embedded.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openRedis(t *testing.T, srv *redistest.Server) store.Store {
	st, err := redisstore.New(context.Background(), srv.URL(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func backends() []backend {
	return []backend{
		{"embedded", openEmbedded},
		{"redis", func(t *testing.T) store.Store { return openRedis(t, redistest.Start(t)) }},
	}
}

// forEachStore runs f on every backend, in parallel.
func forEachStore(t *testing.T, f func(t *testing.T, st store.Store)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b.open(t))
		})
	}
}

// node is a gateway node's live side on a real listener: the node hub and
// the stream and poll services behind the same dispatch as the server
// package (auth, parameters, topic authorization, then ServeStream or
// ServePoll).
type node struct {
	t      *testing.T
	st     store.Store
	hub    *live.Hub
	svc    *stream.Service
	rs     *retrieve.Service
	url    string
	creds  string // "ann" with the retrieve right, subscribed to topicA..C
	reg    *prometheus.Registry
	srv    *httptest.Server
	client *http.Client
	seq    atomic.Int64
	closed atomic.Bool
}

func newNode(t *testing.T, st store.Store, opts stream.Options) *node {
	t.Helper()
	return newNodeWith(t, st, opts, live.Options{}, false)
}

// newNodeOn is newNode, over HTTP/2 with TLS when h2 is set.
func newNodeOn(t *testing.T, st store.Store, opts stream.Options, h2 bool) *node {
	t.Helper()
	return newNodeWith(t, st, opts, live.Options{}, h2)
}

// newNodeWith is newNodeOn with the hub's options.
func newNodeWith(t *testing.T, st store.Store, opts stream.Options, hopts live.Options, h2 bool) *node {
	t.Helper()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	hopts.HubURL, hopts.Registry = "https://hub.example/", reg
	lh, err := live.New(st, hopts)
	if err != nil {
		t.Fatal(err)
	}
	rs := retrieve.New(st, retrieve.Options{HubURL: "https://hub.example/", Limits: retrieve.Limits{MaxTimeout: 10 * time.Second}})
	opts.Registry = reg
	b, err := stream.New(lh, rs, opts)
	if err != nil {
		t.Fatal(err)
	}
	polls := poll.New(lh, rs)
	a := auth.NewAuthenticator(st, time.Minute)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := api.ReadParams(r)
		if err != nil {
			api.WriteError(w, api.Negotiate(r, p), err)
			return
		}
		pr, err := a.Authenticate(r.Context(), r, nil)
		if err != nil {
			api.WriteError(w, api.Negotiate(r, p), err)
			return
		}
		r = r.WithContext(auth.WithPrincipal(r.Context(), pr))
		req, err := retrieve.Parse(r, p, rs.Limits())
		if err != nil {
			api.WriteError(w, api.Negotiate(r, p), err)
			return
		}
		for _, topic := range req.Topics {
			if err := rs.Authorize(r.Context(), pr, topic); err != nil {
				api.WriteError(w, api.Negotiate(r, p), err)
				return
			}
		}
		switch {
		case req.Wait == retrieve.Stream || req.Format == retrieve.SSE || req.WebSocket:
			b.ServeStream(w, r, req)
		case req.Wait == retrieve.Poll:
			polls.ServePoll(w, r, req)
		default:
			api.WriteError(w, api.Negotiate(r, p), api.Invalid("this test node serves live retrieves only"))
		}
	})
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", h)
	mux.Handle("GET /ws", h)
	srv := httptest.NewUnstartedServer(mux)
	n := &node{t: t, st: st, hub: lh, svc: b, rs: rs, reg: reg, srv: srv, client: http.DefaultClient}
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
		n.client = srv.Client()
	} else {
		srv.Start()
	}
	n.url = srv.URL
	// Cleanups run last first: the broker ends the streams, then the
	// server can wait for its handlers.
	t.Cleanup(srv.Close)
	t.Cleanup(n.close)

	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "ann", Rights: []store.Right{store.RightRetrieve}})
	if err != nil {
		t.Fatal(err)
	}
	n.creds = "ann:" + token
	for _, topic := range []string{topicA, topicB, topicC} {
		n.follow("ann", topic)
	}
	return n
}

func (n *node) close() {
	if n.closed.CompareAndSwap(false, true) {
		n.svc.Close()
		n.hub.Close()
	}
}

// follow subscribes login to topic (retrieve-only).
func (n *node) follow(login, topic string) {
	n.t.Helper()
	if _, err := n.st.PutSubscription(context.Background(), store.Subscription{Login: login, Topic: topic, CreatedAt: time.Now()}); err != nil {
		n.t.Fatal(err)
	}
}

// publish appends count new items to topic and returns their cursors.
func (n *node) publish(topic string, count int, mod ...func(*feed.Item)) []feed.Cursor {
	n.t.Helper()
	cs, err := publish(n.st, topic, count, &n.seq, mod...)
	if err != nil {
		n.t.Fatalf("append to %s: %v", topic, err)
	}
	return cs
}

func publish(st store.Store, topic string, count int, seq *atomic.Int64, mod ...func(*feed.Item)) ([]feed.Cursor, error) {
	return appendItems(st, topic, newItems(count, seq, mod...))
}

// newItems makes count items with fresh ids.
func newItems(count int, seq *atomic.Int64, mod ...func(*feed.Item)) []feed.Item {
	items := make([]feed.Item, count)
	for i := range items {
		k := seq.Add(1)
		items[i] = feed.Item{
			ID:        fmt.Sprintf("urn:test:%d", k),
			Title:     fmt.Sprintf("Item %d", k),
			Content:   fmt.Sprintf("<p>item %d</p>", k),
			Published: 1700000000 + k,
			Hash:      fmt.Sprintf("h%d", k),
		}
		for _, m := range mod {
			m(&items[i])
		}
	}
	return items
}

func appendItems(st store.Store, topic string, items []feed.Item) ([]feed.Cursor, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stored, err := st.Append(ctx, topic, items)
	if err != nil {
		return nil, err
	}
	cs := make([]feed.Cursor, len(stored))
	for i, it := range stored {
		cs[i] = it.Cursor
	}
	return cs, nil
}

// request builds a GET of the hub endpoint with ann's credentials.
func (n *node) request(ctx context.Context, query string, header ...string) *http.Request {
	n.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/?"+query, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	login, token, _ := strings.Cut(n.creds, ":")
	req.SetBasicAuth(login, token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

// query renders parameters; topics repeat hub.topic.
func query(topics []string, kv ...string) string {
	v := url.Values{}
	for _, t := range topics {
		v.Add("hub.topic", t)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

// notification is a decoded JSON notification.
type notification struct {
	Status struct {
		Feed   string      `json:"feed"`
		Cursor feed.Cursor `json:"cursor"`
		Gap    bool        `json:"gap"`
		Title  string      `json:"title"`
	} `json:"status"`
	Title string `json:"title"`
	Items []struct {
		ID     string      `json:"id"`
		Cursor feed.Cursor `json:"cursor"`
		Title  string      `json:"title"`
	} `json:"items"`
}

// cursors returns the notification's cursors oldest first.
func (n notification) cursors() []feed.Cursor {
	out := make([]feed.Cursor, len(n.Items))
	for i, it := range n.Items {
		out[len(out)-1-i] = it.Cursor
	}
	return out
}

// ndjsonClient reads an NDJSON stream line by line.
type ndjsonClient struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	lines  chan string // non-blank lines; closed at the end of the stream
	blanks atomic.Int64
	done   chan struct{}
}

// openNDJSON opens wait=stream&format=json and checks the response head.
func (n *node) openNDJSON(topics []string, kv ...string) *ndjsonClient {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	kv = append([]string{"wait", "stream", "format", "json"}, kv...)
	resp, err := n.client.Do(n.request(ctx, query(topics, kv...)))
	if err != nil {
		cancel()
		n.t.Fatalf("open stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		n.t.Fatalf("open stream: %s: %s", resp.Status, body)
	}
	c := &ndjsonClient{t: n.t, resp: resp, cancel: cancel, lines: make(chan string, 10000), done: make(chan struct{})}
	go c.read()
	n.t.Cleanup(c.close)
	return c
}

func (c *ndjsonClient) read() {
	defer close(c.done)
	defer close(c.lines)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			c.blanks.Add(1)
			continue
		}
		c.lines <- sc.Text()
	}
}

func (c *ndjsonClient) close() {
	c.cancel()
	c.resp.Body.Close()
	<-c.done
}

// next returns the next notification, failing the test after d.
func (c *ndjsonClient) next(d time.Duration) notification {
	c.t.Helper()
	n, ok := c.tryNext(d)
	if !ok {
		c.t.Fatalf("no notification within %v", d)
	}
	return n
}

func (c *ndjsonClient) tryNext(d time.Duration) (notification, bool) {
	c.t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			return notification{}, false
		}
		var n notification
		if err := json.Unmarshal([]byte(line), &n); err != nil {
			c.t.Fatalf("stream line is not a JSON notification (%v): %q", err, line)
		}
		return n, true
	case <-time.After(d):
		return notification{}, false
	}
}

// ended waits for the stream to end.
func (c *ndjsonClient) ended(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// sequence checks that a run of cursors is contiguous from first.
type sequence struct {
	mu   sync.Mutex
	next feed.Cursor
	err  error
}

// add appends cursors (oldest first) and records the first break.
func (s *sequence) add(cs []feed.Cursor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		if s.err != nil {
			return
		}
		if s.next != 0 && c != s.next {
			s.err = fmt.Errorf("got cursor %d, want %d", c, s.next)
			return
		}
		s.next = c + 1
	}
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
