package ingest

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

// backend is a store under test: both interfaces on one backend.
type backend interface {
	store.Store
	store.IngestStore
}

type opener func(t testing.TB) backend

func openEmbedded(t testing.TB) backend {
	t.Helper()
	s, err := embedded.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatalf("embedded.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openRedisURL(t testing.TB, url string) backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, url, store.Options{})
	if err != nil {
		t.Fatalf("redisstore.New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openRedis(t testing.TB) backend {
	t.Helper()
	return openRedisURL(t, redistest.Start(t).URL())
}

// eachBackend runs the test on the embedded store and on Redis.
func eachBackend(t *testing.T, test func(t *testing.T, open opener)) {
	t.Run("embedded", func(t *testing.T) { t.Parallel(); test(t, openEmbedded) })
	t.Run("redis", func(t *testing.T) { t.Parallel(); test(t, openRedis) })
}

// node is one gateway node's ingest: a Service with its callback endpoint
// served at url, and Run going when the node runs the scheduler.
type node struct {
	svc *Service
	st  backend
	url string
	reg *prometheus.Registry
	// stop ends Run and waits for it to return (every job finished); the
	// test's cleanup calls it too.
	stop func()
}

// testOptions are fast settings for tests.
func testOptions() Options {
	return Options{
		AllowPrivate:   true,
		Version:        "test",
		Concurrency:    8,
		MinPeriod:      time.Minute,
		MaxPeriod:      time.Hour,
		PollInterval:   50 * time.Millisecond,
		PendingTimeout: time.Minute,
		Fetch:          fetch.Options{Timeout: 5 * time.Second},
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// startNode starts a node on st, its callback endpoint on a loopback
// listener. run says whether it runs the scheduler.
func startNode(t testing.TB, st backend, opts Options, run bool) *node {
	t.Helper()
	return startNodeOn(t, st, opts, run, func(h http.Handler) string { return serve(t, h).URL })
}

// startNodeOn starts a node whose callback endpoint serve serves.
func startNodeOn(t testing.TB, st backend, opts Options, run bool, serve func(http.Handler) string) *node {
	t.Helper()
	n := &node{st: st, reg: prometheus.NewRegistry(), stop: func() {}}
	mux := http.NewServeMux()
	mux.HandleFunc("/callback/{id}", func(w http.ResponseWriter, r *http.Request) { n.svc.Callback(w, r) })
	n.url = serve(mux)
	if opts.PublicURL == "" {
		opts.PublicURL = n.url
	}
	opts.Registerer = n.reg
	svc, err := New(st, st, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	n.svc = svc
	t.Cleanup(svc.Fetcher().Close)
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		var once sync.Once
		n.stop = func() {
			once.Do(func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("Run: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Errorf("Run did not return within 10s of its context ending")
				}
			})
		}
		t.Cleanup(n.stop)
	}
	return n
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// settle bounds the waits for what happens at once (a fetch after Track or
// a ping, a hub's verification, a status update): long enough for a loaded
// machine, and far shorter than the periods (at least a minute) and leases
// of the tests, so a wait still tells "at once" from "next period".
const settle = 10 * time.Second

// readAll returns the topic's items, newest first.
func readAll(t testing.TB, st store.Store, topic string) []feed.Item {
	t.Helper()
	p, err := st.Read(context.Background(), topic, store.Query{From: store.Newest, Count: 1000})
	if err != nil {
		t.Fatalf("Read(%s): %v", topic, err)
	}
	return p.Items
}

func topicState(t testing.TB, st store.Store, topic string) store.TopicState {
	t.Helper()
	ts, err := st.Topic(context.Background(), topic)
	if err != nil {
		t.Fatalf("Topic(%s): %v", topic, err)
	}
	return ts
}

// entry is one entry of a test feed.
type entry struct {
	ID, Title, Content string
	Updated            time.Time
}

// atomDoc renders an Atom feed; links are rel -> href.
func atomDoc(title string, entries []entry, links ...[2]string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	b.WriteString(`<feed xmlns="http://www.w3.org/2005/Atom">`)
	fmt.Fprintf(&b, "<title>%s</title><id>urn:test:%s</id><updated>2026-01-01T00:00:00Z</updated>", html.EscapeString(title), html.EscapeString(title))
	for _, l := range links {
		fmt.Fprintf(&b, `<link rel="%s" href="%s"/>`, l[0], html.EscapeString(l[1]))
	}
	for _, e := range entries {
		up := e.Updated
		if up.IsZero() {
			up = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		fmt.Fprintf(&b, `<entry><id>%s</id><title>%s</title><updated>%s</updated><content type="text">%s</content></entry>`,
			html.EscapeString(e.ID), html.EscapeString(e.Title), up.UTC().Format(time.RFC3339), html.EscapeString(e.Content))
	}
	b.WriteString("</feed>\n")
	return []byte(b.String())
}

// testFeed is a feed served over HTTP whose entries the test changes. It
// answers conditional GETs with 304 and counts and records its requests.
type testFeed struct {
	mu      sync.Mutex
	title   string
	entries []entry // newest first
	version int
	links   [][2]string // in the body
	header  []string    // Link header values
	status  int         // answer this instead when non-zero
	body    []byte      // serve these bytes instead when non-nil
	ctype   string
	reqs    []http.Header
	hits    atomic.Int64
	delay   time.Duration
}

func newTestFeed(title string, n int) *testFeed {
	f := &testFeed{title: title}
	for i := n; i >= 1; i-- {
		f.entries = append(f.entries, entry{ID: fmt.Sprintf("urn:%s:%d", title, i), Title: fmt.Sprintf("%s %d", title, i), Content: "content " + title})
	}
	return f
}

// add puts a new entry at the top of the feed.
func (f *testFeed) add(id, title string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append([]entry{{ID: id, Title: title, Content: "new"}}, f.entries...)
	f.version++
}

func (f *testFeed) requests() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.reqs...)
}

func (f *testFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Header.Clone())
	status, body, ctype, delay := f.status, f.body, f.ctype, f.delay
	etag := fmt.Sprintf(`"v%d"`, f.version)
	doc := atomDoc(f.title, f.entries, f.links...)
	header := f.header
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	for _, h := range header {
		w.Header().Add("Link", h)
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if body != nil {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		_, _ = w.Write(body)
		return
	}
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/atom+xml")
	_, _ = w.Write(doc)
}

// testHub is a WebSub hub written for the tests: it verifies intent
// (synchronously before answering, like websub.rocks, or after answering
// 202), and publishes signed content to its verified subscribers.
type testHub struct {
	t testing.TB
	// base is the hub server's URL; client makes its requests to
	// subscribers.
	base   string
	client *http.Client
	async  bool
	// lease is the hub.lease_seconds the hub grants (default 3600).
	lease int
	// verifyTopic, when set, is sent as hub.topic in verifications
	// instead of the requested one (websub.rocks 205).
	verifyTopic string
	// wantTopic, when set, refuses requests for other topics with 400.
	wantTopic string

	wg   sync.WaitGroup
	mu   sync.Mutex
	subs map[string]*hubSub // by callback
	reqs []url.Values
	// verifications are the answers of the subscriber to verification
	// requests: mode -> status codes.
	verifications map[string][]int
}

type hubSub struct {
	callback, topic, secret string
	active                  bool
	verified                int // how many verifications succeeded
	verifiedAt              []time.Time
}

// newTestHub starts a hub on a loopback listener.
func newTestHub(t testing.TB) *testHub {
	return newTestHubOn(t, func(h http.Handler) string { return serve(t, h).URL }, http.DefaultClient)
}

// newTestHubOn starts a hub served by serve, talking to subscribers with
// client.
func newTestHubOn(t testing.TB, serve func(http.Handler) string, client *http.Client) *testHub {
	h := &testHub{t: t, client: client, subs: map[string]*hubSub{}, verifications: map[string][]int{}, lease: 3600}
	t.Cleanup(h.wg.Wait) // after the server has closed
	h.base = serve(h)
	return h
}

func (h *testHub) URL() string { return h.base + "/hub" }

func (h *testHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form := r.PostForm
	h.mu.Lock()
	h.reqs = append(h.reqs, form)
	h.mu.Unlock()
	mode, topic, callback := form.Get("hub.mode"), form.Get("hub.topic"), form.Get("hub.callback")
	if (mode != "subscribe" && mode != "unsubscribe") || topic == "" || callback == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if h.wantTopic != "" && topic != h.wantTopic {
		http.Error(w, "The topic provided is not allowed at this hub.", http.StatusBadRequest)
		return
	}
	if len(form.Get("hub.secret")) >= 200 {
		http.Error(w, "secret too long", http.StatusBadRequest)
		return
	}
	verify := func() int { return h.verify(mode, topic, callback, form.Get("hub.secret")) }
	if h.async {
		// Answer first; the verification may still reach the subscriber
		// before it has read the answer.
		w.WriteHeader(http.StatusAccepted)
		http.NewResponseController(w).Flush()
		h.wg.Go(func() { verify() })
		return
	}
	code := verify()
	if code/100 != 2 {
		http.Error(w, fmt.Sprintf("verification failed: the callback answered %d", code), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// verify sends the verification of intent and records the outcome.
func (h *testHub) verify(mode, topic, callback, secret string) int {
	challenge := fmt.Sprintf("challenge-%d", time.Now().UnixNano())
	u, err := url.Parse(callback)
	if err != nil {
		return 0
	}
	q := u.Query()
	vt := topic
	if h.verifyTopic != "" {
		vt = h.verifyTopic
	}
	q.Set("hub.mode", mode)
	q.Set("hub.topic", vt)
	q.Set("hub.challenge", challenge)
	if mode == "subscribe" {
		q.Set("hub.lease_seconds", fmt.Sprint(h.lease))
	}
	u.RawQuery = q.Encode()
	resp, err := h.client.Get(u.String())
	code := 0
	ok := false
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
		ok = code/100 == 2 && string(body) == challenge
		if code/100 == 2 && !ok {
			code = 299 // 2xx without the challenge: a failed verification
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.verifications[mode] = append(h.verifications[mode], code)
	if !ok {
		return code
	}
	switch mode {
	case "subscribe":
		s := h.subs[callback]
		if s == nil {
			s = &hubSub{callback: callback}
			h.subs[callback] = s
		}
		s.topic, s.secret, s.active = topic, secret, true
		s.verified++
		s.verifiedAt = append(s.verifiedAt, time.Now())
	case "unsubscribe":
		delete(h.subs, callback)
	}
	return code
}

// active returns the verified subscriptions.
func (h *testHub) active() []hubSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hubSub
	for _, s := range h.subs {
		if s.active {
			out = append(out, *s)
		}
	}
	return out
}

func (h *testHub) requests(mode string) []url.Values {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []url.Values
	for _, r := range h.reqs {
		if r.Get("hub.mode") == mode {
			out = append(out, r)
		}
	}
	return out
}

func (h *testHub) verificationCodes(mode string) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.verifications[mode]...)
}

// deliver posts body to one subscriber, signed with method ("" for no
// signature, "bad" for a wrong one), and returns the status code.
func (h *testHub) deliver(s hubSub, body []byte, method string) int {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.callback, strings.NewReader(string(body)))
	if err != nil {
		h.t.Fatalf("delivery request: %v", err)
	}
	req.Header.Set("Content-Type", "application/atom+xml")
	req.Header.Set("Link", fmt.Sprintf(`<%s>; rel="hub", <%s>; rel="self"`, h.URL(), s.topic))
	switch method {
	case "":
	case "bad":
		req.Header.Set("X-Hub-Signature", Sign("sha256", s.secret+"wrong", body))
	default:
		req.Header.Set("X-Hub-Signature", Sign(method, s.secret, body))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("delivery: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// onlyActive waits for exactly one verified subscription and returns it.
func (h *testHub) onlyActive(t testing.TB) hubSub {
	t.Helper()
	testkit.Eventually(t, settle, "a verified subscription at the hub", func() bool { return len(h.active()) == 1 })
	return h.active()[0]
}

func parseTestDoc(t testing.TB, body []byte) *feed.Document {
	t.Helper()
	doc, err := feed.Parse(body, "application/atom+xml")
	if err != nil {
		t.Fatalf("feed.Parse: %v", err)
	}
	return doc
}
