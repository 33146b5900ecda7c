package hub

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/internal/memnet"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
)

const testHubURL = "http://gateway.test/hub"

// env is a hub with delivery running on a real store, with real ingest as
// its tracker and a fetcher allowed to reach loopback callbacks.
type env struct {
	t     testing.TB
	st    store.Store
	ing   *ingest.Service
	hub   *Service
	reg   *prometheus.Registry
	authn *auth.Authenticator
	stop  func()
	// net, when set, carries the hub's requests to subscribers: the env
	// runs in a testing/synctest bubble (see newBubbleEnv).
	net *memnet.Network
}

// fastOptions are delivery options for tests: quick polling and retries.
func fastOptions() Options {
	return Options{
		PublicHubURL:    testHubURL,
		PollInterval:    20 * time.Millisecond,
		SweepInterval:   time.Second,
		TopicRefresh:    200 * time.Millisecond,
		DeliveryTimeout: 3 * time.Second,
		VerifyTimeout:   3 * time.Second,
		LeaseMin:        time.Second,
		Retry: RetryPolicy{
			First: 50 * time.Millisecond, Multiplier: 2, Max: 400 * time.Millisecond,
			Jitter: 0.1, MaxAttempts: 8, MaxAge: time.Minute,
		},
	}
}

// newEnv starts a hub on an embedded store; tune adjusts the options.
func newEnv(t *testing.T, tune ...func(*Options)) *env {
	t.Helper()
	return newEnvOn(t, teststore.Embedded(t, store.Options{}), tune...)
}

func newRedisEnv(t *testing.T, tune ...func(*Options)) *env {
	t.Helper()
	return newEnvOn(t, teststore.Redis(t, redistest.Start(t).URL(), store.Options{}), tune...)
}

func newEnvOn(t testing.TB, st store.Store, tune ...func(*Options)) *env {
	t.Helper()
	return startEnv(t, st, nil, tune...)
}

// newBubbleEnv starts a hub on an embedded store inside a testing/synctest
// bubble: time is the bubble's clock, so retries, leases and "nothing more
// arrives" are exact, and subscribers (env.subscriber) are served on an
// in-memory network.
func newBubbleEnv(t *testing.T, tune ...func(*Options)) *env {
	t.Helper()
	return startEnv(t, teststore.Embedded(t, store.Options{}), memnet.New(), tune...)
}

// startEnv starts a hub on st; with mn, its requests go over mn.
func startEnv(t testing.TB, st store.Store, mn *memnet.Network, tune ...func(*Options)) *env {
	t.Helper()
	is, ok := st.(store.IngestStore)
	if !ok {
		t.Fatalf("%T is not an IngestStore", st)
	}
	io := ingest.Options{AllowPrivate: true, Registerer: prometheus.NewRegistry(), PublicURL: "http://gateway.test"}
	if mn != nil {
		io.Fetch.Dial = mn.Dial
	}
	ing, err := ingest.New(st, is, io)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o := fastOptions()
	o.Fetcher = ing.Fetcher()
	o.Registerer = reg
	for _, fn := range tune {
		fn(&o)
	}
	e := &env{t: t, st: st, ing: ing, reg: reg, authn: auth.NewAuthenticator(st, 0), net: mn}
	e.hub = New(st, ing, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.hub.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(func() {
		e.stop()
		ing.Fetcher().Close()
		_ = st.Close()
	})
	return e
}

// subscriber starts a callback server where the env's hub reaches it.
func (e *env) subscriber() *subscriber {
	if e.net == nil {
		return newSubscriber(e.t)
	}
	return newSubscriberOn(e.t, func(h http.Handler) string { return e.net.Serve(e.t, h) })
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// principal creates a user with every right and returns it.
func (e *env) principal(login string) *auth.Principal {
	e.t.Helper()
	ctx := ctxT(e.t)
	token, err := auth.AddUser(ctx, e.st, auth.NewUser{Login: login, Rights: store.AllRights[:5]})
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := e.authn.Check(ctx, login, token)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// params reads key, value pairs from a form body as the hub endpoint does.
func params(t testing.TB, kv ...string) api.Params {
	t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		form.Add(kv[i], kv[i+1])
	}
	r := httptest.NewRequest(http.MethodPost, "/hub", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	p, err := api.ReadParams(r)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// request parses (un)subscribe parameters as the hub endpoint does.
func request(t testing.TB, kv ...string) SubscribeRequest {
	t.Helper()
	p := params(t, kv...)
	req, err := ParseSubscribe(p)
	if err != nil {
		t.Fatalf("ParseSubscribe(%q): %v", kv, err)
	}
	return req
}

// published numbers the items publish makes (the clock of a synctest
// bubble stands still, so it cannot tell them apart).
var published atomic.Int64

// publish appends n new items to topic and returns them with their cursors.
func (e *env) publish(topic string, n int) []feed.Item {
	e.t.Helper()
	items := make([]feed.Item, n)
	for i := range items {
		id := fmt.Sprintf("%s#%d", topic, published.Add(1))
		items[i] = feed.Item{ID: id, Title: "Entry " + id, Content: "<p>hello & welcome</p>", Hash: "h", Published: time.Now().Unix()}
	}
	stored, err := e.st.Append(ctxT(e.t), topic, items)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(stored) != n {
		e.t.Fatalf("stored %d of %d items", len(stored), n)
	}
	return stored
}

// post is one delivery a subscriber received.
type post struct {
	Header http.Header
	Body   []byte
	At     time.Time
	Status int
}

// cursors returns the cursors of a JSON delivery's items, newest first.
func (p post) cursors(t testing.TB) []feed.Cursor {
	t.Helper()
	var n struct {
		Status struct {
			Feed string `json:"feed"`
		} `json:"status"`
		Items []struct {
			Cursor feed.Cursor `json:"cursor"`
		} `json:"items"`
	}
	if err := json.Unmarshal(p.Body, &n); err != nil {
		t.Fatalf("delivery body is not JSON: %v\n%s", err, p.Body)
	}
	out := make([]feed.Cursor, len(n.Items))
	for i, it := range n.Items {
		out[i] = it.Cursor
	}
	return out
}

// subscriber is a WebSub callback on loopback.
type subscriber struct {
	t    testing.TB
	base string

	mu     sync.Mutex
	gets   []url.Values
	raw    []string
	posts  []post
	postCh chan post
	// verify answers a verification GET (default: 200 with the challenge).
	verify func(q url.Values) (int, string)
	// answer gives the status of the n-th POST, 1-based (default 204).
	answer func(n int, r *http.Request) int
}

func newSubscriber(t testing.TB) *subscriber {
	return newSubscriberOn(t, func(h http.Handler) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	})
}

// newSubscriberOn starts a subscriber served by serve.
func newSubscriberOn(t testing.TB, serve func(http.Handler) string) *subscriber {
	s := &subscriber{t: t, postCh: make(chan post, 10000)}
	s.base = serve(http.HandlerFunc(s.serve))
	return s
}

func (s *subscriber) serve(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		s.mu.Lock()
		s.gets = append(s.gets, q)
		s.raw = append(s.raw, r.URL.RawQuery)
		verify := s.verify
		s.mu.Unlock()
		code, body := http.StatusOK, q.Get("hub.challenge")
		if verify != nil {
			code, body = verify(q)
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	case http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		n := len(s.posts) + 1
		answer := s.answer
		s.mu.Unlock()
		code := http.StatusNoContent
		if answer != nil {
			code = answer(n, r)
		}
		p := post{Header: r.Header.Clone(), Body: body, At: time.Now(), Status: code}
		s.mu.Lock()
		s.posts = append(s.posts, p)
		s.mu.Unlock()
		s.postCh <- p
		w.WriteHeader(code)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (s *subscriber) url(path string) string { return s.base + path }

func (s *subscriber) setVerify(fn func(url.Values) (int, string)) {
	s.mu.Lock()
	s.verify = fn
	s.mu.Unlock()
}

func (s *subscriber) setAnswer(fn func(int, *http.Request) int) {
	s.mu.Lock()
	s.answer = fn
	s.mu.Unlock()
}

func (s *subscriber) verifications() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.gets...)
}

func (s *subscriber) rawQueries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.raw...)
}

// next waits for the next POST.
func (s *subscriber) next(within time.Duration) post {
	s.t.Helper()
	select {
	case p := <-s.postCh:
		return p
	case <-time.After(within):
		s.t.Fatalf("no delivery within %s", within)
		return post{}
	}
}

// quiet is how long a bubble test waits to see that nothing more arrives:
// on the bubble's clock, longer than every retry schedule of fastOptions.
const quiet = 10 * time.Second

// none checks that no POST arrives for d.
func (s *subscriber) none(d time.Duration) {
	s.t.Helper()
	select {
	case p := <-s.postCh:
		s.t.Fatalf("unexpected delivery (status %d): %s", p.Status, p.Body)
	case <-time.After(d):
	}
}

// apiCode returns the status of an *api.Error (0 for other errors).
func apiCode(err error) int {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

func embeddedOpen(dir string) (store.Store, error) { return embedded.Open(dir, store.Options{}) }

// redisStart starts a private redis-server and returns its URL.
func redisStart(t testing.TB) string { return redistest.Start(t).URL() }
