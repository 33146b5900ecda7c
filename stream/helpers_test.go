package stream_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	"github.com/feedgate/feedgate/internal/memnet"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

const (
	topicA = "https://example.com/a.xml"
	topicB = "https://example.com/b.xml"
	topicC = "https://example.com/c.xml"
)

// waitFor bounds every wait for something that should happen.
const waitFor = 10 * time.Second

// authCache is the gateway's default credential cache (--auth-cache): a
// node's live connections revalidate their credential every
// (auth.RevocationDelay-authCache)/2.
const authCache = 2 * time.Second

const hubURL = "https://hub.example/"

// quiet takes the node's operational messages.
var quiet = slog.New(slog.DiscardHandler)

func openEmbedded(t *testing.T) store.Store { return teststore.Embedded(t, store.Options{}) }

func openRedis(t *testing.T, srv *redistest.Server) store.Store {
	return teststore.Redis(t, srv.URL(), store.Options{})
}

// forEachStore runs f on every backend, in parallel.
func forEachStore(t *testing.T, f func(t *testing.T, st store.Store)) {
	teststore.ForEach(t, store.Options{}, f)
}

// node is a gateway node's live side on a real listener: the node hub and
// the stream and poll services behind the same dispatch as the server
// package (auth, parameters, topic authorization, then ServeStream or
// ServePoll), with live connections revalidating their credential as
// cmd/gateway wires it.
type node struct {
	t      *testing.T
	st     store.Store
	hub    *live.Hub
	svc    *stream.Service
	rs     *retrieve.Service
	authn  *auth.Authenticator
	url    string
	creds  string // "ann" with the retrieve right, subscribed to topicA..C
	reg    *prometheus.Registry
	client *http.Client
	// dial opens a connection to the node (loopback, or the in-memory
	// network of a node in a synctest bubble).
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	seq    atomic.Int64
	closed atomic.Bool
}

// nodeConfig sets a test node up; the zero value is the gateway's
// defaults.
type nodeConfig struct {
	stream stream.Options
	live   live.Options
	// auth's CacheTTL defaults to authCache.
	auth auth.Options
	// h2 serves HTTP/2 over TLS.
	h2 bool
	// mem serves the node on an in-memory network (net.Pipe) instead of
	// loopback, so that the node can run in a synctest bubble, where time
	// is the test's: open the store in the bubble too.
	mem bool
}

func newNode(t *testing.T, st store.Store, opts stream.Options) *node {
	t.Helper()
	return startNode(t, st, nodeConfig{stream: opts})
}

func startNode(t *testing.T, st store.Store, cfg nodeConfig) *node {
	t.Helper()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	if cfg.auth.CacheTTL == 0 {
		cfg.auth.CacheTTL = authCache
	}
	authn, err := auth.New(st, cfg.auth)
	if err != nil {
		t.Fatal(err)
	}
	hopts := cfg.live
	hopts.HubURL, hopts.Registry = hubURL, reg
	if hopts.Logger == nil {
		hopts.Logger = quiet
	}
	if hopts.Revalidate == nil {
		hopts.Revalidate, hopts.RevalidateEvery = authn.Revalidate, authn.RevalidateEvery()
	}
	lh, err := live.New(st, hopts)
	if err != nil {
		t.Fatal(err)
	}
	rs := retrieve.New(st, retrieve.Options{HubURL: hubURL})
	opts := cfg.stream
	opts.Registry = reg
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	b, err := stream.New(lh, rs, opts)
	if err != nil {
		t.Fatal(err)
	}
	polls := poll.New(lh, rs)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := api.ReadParams(r)
		if err != nil {
			api.WriteError(w, api.Negotiate(r, p), err)
			return
		}
		pr, err := authn.Authenticate(r.Context(), r, nil)
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
	n := &node{t: t, st: st, hub: lh, svc: b, rs: rs, authn: authn, reg: reg}
	switch {
	case cfg.mem:
		nw := memnet.New()
		n.url, n.dial = nw.Serve(t, mux), nw.Dial
		n.client = &http.Client{Transport: &http.Transport{DialContext: nw.Dial, DisableKeepAlives: true}}
	default:
		srv := httptest.NewUnstartedServer(mux)
		if cfg.h2 {
			srv.EnableHTTP2 = true
			srv.StartTLS()
			n.client = srv.Client()
		} else {
			srv.Start()
			n.client = &http.Client{Transport: &http.Transport{}}
		}
		n.url = srv.URL
		var d net.Dialer
		n.dial = d.DialContext
		t.Cleanup(srv.Close)
		t.Cleanup(n.client.CloseIdleConnections)
	}
	// Cleanups run last first: the hub ends the streams, then the server
	// can wait for its handlers.
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

// request builds a GET of the hub endpoint with ann's credentials;
// header pairs are set after them (an Authorization replaces them; an
// empty value removes the header).
func (n *node) request(ctx context.Context, query string, header ...string) *http.Request {
	n.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/?"+query, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	login, token, _ := strings.Cut(n.creds, ":")
	req.SetBasicAuth(login, token)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	return req
}

// basic is the Authorization header of HTTP Basic creds ("login:token").
func basic(creds string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(creds))
}

// get sends a request that must be answered (head and body) within
// waitFor, and returns the answer and its body.
func (n *node) get(q string, header ...string) (*http.Response, string) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := n.client.Do(n.request(ctx, q, header...))
	if err != nil {
		n.t.Fatalf("GET ?%s: no answer within %v: %v", q, waitFor, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatalf("GET ?%s: body not read within %v: %v", q, waitFor, err)
	}
	return resp, string(body)
}

// open sends a stream request whose response head must arrive within
// waitFor; the body stays open until cancel (or the stream ends).
func (n *node) open(q string, header ...string) (*http.Response, context.CancelFunc) {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(waitFor, cancel)
	resp, err := n.client.Do(n.request(ctx, q, header...))
	if !timer.Stop() {
		cancel()
		n.t.Fatalf("GET ?%s: no response head within %v (%v)", q, waitFor, err)
	}
	if err != nil {
		cancel()
		n.t.Fatalf("GET ?%s: %v", q, err)
	}
	return resp, cancel
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
	stop   chan struct{} // closed by close: the reader drops what follows
	done   chan struct{}
	// endedAt is when the stream ended; read it once lines is closed.
	endedAt time.Time
}

// openNDJSON opens wait=stream&format=json and checks the response head.
func (n *node) openNDJSON(topics []string, kv ...string) *ndjsonClient {
	n.t.Helper()
	return n.openNDJSONWith(query(topics, append([]string{"wait", "stream", "format", "json"}, kv...)...))
}

// openNDJSONWith opens the NDJSON stream of query q, with header pairs.
func (n *node) openNDJSONWith(q string, header ...string) *ndjsonClient {
	n.t.Helper()
	resp, cancel := n.open(q, header...)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		n.t.Fatalf("open stream: %s: %s", resp.Status, body)
	}
	c := newNDJSONClient(n.t, resp, cancel)
	n.t.Cleanup(c.close)
	return c
}

func newNDJSONClient(t *testing.T, resp *http.Response, cancel context.CancelFunc) *ndjsonClient {
	c := &ndjsonClient{t: t, resp: resp, cancel: cancel, lines: make(chan string, 10000), stop: make(chan struct{}), done: make(chan struct{})}
	go c.read()
	return c
}

func (c *ndjsonClient) read() {
	defer close(c.done)
	defer close(c.lines)
	defer func() { c.endedAt = time.Now() }()
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			c.blanks.Add(1)
			continue
		}
		select {
		case c.lines <- sc.Text():
		case <-c.stop:
			return
		}
	}
}

// close ends the stream from the client's side.
func (c *ndjsonClient) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	c.cancel()
	c.resp.Body.Close()
	awaitClosed(c.t, c.done, "the NDJSON reader to stop after the client closed its stream")
}

// next returns the next notification, failing the test after d.
func (c *ndjsonClient) next(d time.Duration) notification {
	c.t.Helper()
	n, ok := c.tryNext(d)
	if !ok {
		c.t.Fatalf("no NDJSON notification within %v (or the stream ended)", d)
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

// end waits for the server to end the stream: every line it sent is read
// (and dropped), and the stream must end within waitFor.
func (c *ndjsonClient) end(what string) {
	c.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case _, ok := <-c.lines:
			if !ok {
				return
			}
		case <-deadline:
			c.t.Fatalf("%s: the NDJSON stream did not end within %v", what, waitFor)
		}
	}
}

// expectNext reads notifications until want (oldest first) were received,
// in order and once each, and fails on anything else.
func (c *ndjsonClient) expectNext(what string, want ...feed.Cursor) {
	c.t.Helper()
	var got []feed.Cursor
	for len(got) < len(want) {
		n, ok := c.tryNext(waitFor)
		if !ok {
			c.t.Fatalf("%s: got %v within %v, want %v", what, got, waitFor, want)
		}
		got = append(got, n.cursors()...)
	}
	if !equalCursors(got, want...) {
		c.t.Fatalf("%s: got %v, want exactly %v", what, got, want)
	}
}

// awaitClosed waits (at most waitFor) for ch to be closed.
func awaitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("timed out after %v waiting for %s", waitFor, what)
	}
}

func equalCursors(a []feed.Cursor, b ...feed.Cursor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
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

// decode reads a JSON retrieve answer.
func decode(t *testing.T, body string) notification {
	t.Helper()
	var n notification
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatalf("not a JSON answer (%v): %s", err, body)
	}
	return n
}
