package poll_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/memnet"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

const (
	topicA = "https://example.com/a.xml"
	topicB = "https://example.com/b.xml"
)

// waitFor bounds every wait for something that should happen. Polls that
// must not time out ask for a timeout longer than this.
const waitFor = 10 * time.Second

// hold is the timeout of polls that must be answered by something else
// than their timeout (the largest the gateway allows by default).
const hold = "120"

// authCache is the gateway's default credential cache (--auth-cache).
const authCache = 2 * time.Second

const hubURL = "https://hub.example/"

// quiet takes the hub's operational messages.
var quiet = slog.New(slog.DiscardHandler)

func openEmbedded(t *testing.T) store.Store { return teststore.Embedded(t, store.Options{}) }

// forEachStore runs f on every backend, in parallel.
func forEachStore(t *testing.T, f func(t *testing.T, st store.Store)) {
	teststore.ForEach(t, store.Options{}, f)
}

// node is a gateway node's long-poll side: the node hub, the retrieve and
// poll services behind the server's dispatch (credentials, parameters,
// topic authorization, then ServePoll), its live connections revalidated
// as cmd/gateway wires them.
type node struct {
	t      *testing.T
	st     store.Store
	hub    *live.Hub
	authn  *auth.Authenticator
	reg    *prometheus.Registry
	url    string
	client *http.Client
	creds  string // "ann" with the retrieve right, following topicA and topicB
	seq    atomic.Int64
	// patience bounds the wait for an answer: waitFor, or on the fake
	// clock of a bubble an hour (longer than any poll's timeout).
	patience time.Duration
}

// config sets a node up; the zero value is the gateway's defaults.
type config struct {
	live live.Options
	auth auth.Options // CacheTTL defaults to authCache
	// mem serves on an in-memory network, for a synctest bubble.
	mem bool
}

func newNode(t *testing.T, st store.Store, cfg config) *node {
	t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.auth.CacheTTL == 0 {
		cfg.auth.CacheTTL = authCache
	}
	authn, err := auth.New(st, cfg.auth)
	if err != nil {
		t.Fatal(err)
	}
	lo := cfg.live
	lo.HubURL, lo.Registry, lo.Logger = hubURL, reg, quiet
	lo.Revalidate, lo.RevalidateEvery = authn.Revalidate, authn.RevalidateEvery()
	lh, err := live.New(st, lo)
	if err != nil {
		t.Fatal(err)
	}
	rs := retrieve.New(st, retrieve.Options{HubURL: hubURL})
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
		if err == nil && req.Wait != retrieve.Poll {
			err = api.Invalid("this test node serves wait=poll only")
		}
		if err == nil {
			err = rs.Authorize(r.Context(), pr, req.Topics[0])
		}
		if err != nil {
			api.WriteError(w, api.Negotiate(r, p), err)
			return
		}
		polls.ServePoll(w, r, req)
	})
	n := &node{t: t, st: st, hub: lh, authn: authn, reg: reg, patience: waitFor}
	if cfg.mem {
		n.patience = time.Hour
		nw := memnet.New()
		n.url = nw.Serve(t, h)
		n.client = &http.Client{Transport: &http.Transport{DialContext: nw.Dial, DisableKeepAlives: true}}
	} else {
		srv := httptest.NewServer(h)
		n.url = srv.URL
		n.client = &http.Client{Transport: &http.Transport{}}
		t.Cleanup(srv.Close)
		t.Cleanup(n.client.CloseIdleConnections)
	}
	// Cleanups run last first: the hub answers held polls, then the
	// server can wait for its handlers.
	t.Cleanup(func() { lh.Close() })
	n.creds = n.addUser("ann")
	return n
}

// addUser adds login with the retrieve right, following topicA and
// topicB, and returns its credentials ("login:token").
func (n *node) addUser(login string) string {
	n.t.Helper()
	ctx := context.Background()
	token, err := auth.AddUser(ctx, n.st, auth.NewUser{Login: login, Rights: []store.Right{store.RightRetrieve}})
	if err != nil {
		n.t.Fatal(err)
	}
	for _, topic := range []string{topicA, topicB} {
		if _, err := n.st.PutSubscription(ctx, store.Subscription{Login: login, Topic: topic, CreatedAt: time.Now()}); err != nil {
			n.t.Fatal(err)
		}
	}
	return login + ":" + token
}

// publish appends count new items to topic and returns their cursors.
func (n *node) publish(topic string, count int) []feed.Cursor {
	n.t.Helper()
	cs, err := publish(n.st, topic, count, &n.seq)
	if err != nil {
		n.t.Fatalf("append to %s: %v", topic, err)
	}
	return cs
}

func publish(st store.Store, topic string, count int, seq *atomic.Int64) ([]feed.Cursor, error) {
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
	}
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

// pollQuery renders a wait=poll retrieve of topic with more parameters.
func pollQuery(topic string, kv ...string) string {
	v := url.Values{"hub.topic": {topic}, "wait": {"poll"}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v.Encode()
}

// answer is a poll's answer.
type answer struct {
	status int
	header http.Header
	body   string
	err    error
	at     time.Time // when it was read
}

// start sends a poll in the background with ann's credentials (or those
// of an Authorization header pair); it must be answered within the node's
// patience.
func (n *node) start(q string, header ...string) <-chan answer {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), n.patience)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/?"+q, nil)
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(n.creds)))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	out := make(chan answer, 1)
	go func() {
		defer cancel()
		resp, err := n.client.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		out <- answer{status: resp.StatusCode, header: resp.Header, body: string(body), err: err, at: time.Now()}
	}()
	return out
}

// wait returns the answer of a poll sent with start.
func (n *node) wait(ch <-chan answer, what string) answer {
	n.t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			n.t.Fatalf("%s: the poll was not answered within %v: %v", what, n.patience, a.err)
		}
		return a
	case <-time.After(n.patience + time.Second):
		n.t.Fatalf("%s: the poll was not answered within %v", what, n.patience)
	}
	return answer{}
}

// poll sends a poll and waits for its answer.
func (n *node) poll(q string, header ...string) answer {
	n.t.Helper()
	return n.wait(n.start(q, header...), "?"+q)
}

// held is the number of long-polls the node holds open.
func (n *node) held() float64 {
	return testkit.Metric(n.t, n.reg, "feedgate_live_connections", "kind", "poll")
}

// result is a decoded JSON answer.
type result struct {
	Status struct {
		Feed   string      `json:"feed"`
		Cursor feed.Cursor `json:"cursor"`
	} `json:"status"`
	Items []struct {
		ID     string      `json:"id"`
		Cursor feed.Cursor `json:"cursor"`
	} `json:"items"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// cursors are the answer's cursors, oldest first.
func (r result) cursors() []feed.Cursor {
	out := make([]feed.Cursor, len(r.Items))
	for i, it := range r.Items {
		out[len(out)-1-i] = it.Cursor
	}
	return out
}

// decode reads a JSON answer, or the JSON inside a JSONP one when
// callback is given.
func decode(t *testing.T, body, callback string) result {
	t.Helper()
	if callback != "" {
		inner, ok := strings.CutPrefix(body, "/**/"+callback+"(")
		inner, ok2 := strings.CutSuffix(inner, ");\n")
		if !ok || !ok2 {
			t.Fatalf("not a JSONP call of %s: %q", callback, body)
		}
		body = inner
	}
	var r result
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("not a JSON answer (%v): %s", err, body)
	}
	return r
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

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// basicCreds is base64 of "login:token".
func basicCreds(creds string) string { return base64.StdEncoding.EncodeToString([]byte(creds)) }

// basicAuth is the Authorization header of creds ("login:token").
func basicAuth(creds string) string { return "Basic " + basicCreds(creds) }
