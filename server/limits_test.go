package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/limit"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
)

// limitedGateway is a gateway node on the embedded store whose server
// config (limits, origins) and http.Server the test sets.
func limitedGateway(t *testing.T, cfg func(*server.Config), conns *limit.Conns) *gateway {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	ing, err := ingest.New(st, st, ingest.Options{AllowPrivate: true, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	rs := retrieve.New(st, retrieve.Options{HubURL: public + "/", Limits: retrieve.Limits{MaxTimeout: 5 * time.Second}})
	c := server.Config{
		Role:     server.RoleAll,
		Store:    st,
		Auth:     auth.NewAuthenticator(st, time.Second),
		Retrieve: rs,
		Hub:      hub.New(st, ing, hub.Options{}),
		Publish:  ing,
		Registry: reg,
	}
	if cfg != nil {
		cfg(&c)
	}
	srv.Config.Handler = server.New(c)
	srv.Config.ConnContext, srv.Config.ConnState = conns.ConnContext, conns.ConnState
	srv.Start()
	t.Cleanup(srv.Close)
	token, err := auth.AddUser(context.Background(), st, auth.NewUser{Login: "root", Rights: store.AllRights})
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{t: t, url: srv.URL, store: st, admin: "root:" + token}
}

// rawRequest writes head (a request without its body) on a new connection
// and returns the connection and a reader of the answer.
func rawRequest(t *testing.T, base, head string) (net.Conn, *bufio.Reader) {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readAnswer reads a response within d, failing with what did not happen.
func readAnswer(t *testing.T, conn net.Conn, r *bufio.Reader, d time.Duration, what string) *http.Response {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("%s: no answer within %s: %v", what, d, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestSlowBodyWithoutCredentials: a request without credentials announcing
// a large body that trickles in is answered 401 at once, with the
// connection closed, instead of waiting for the body.
func TestSlowBodyWithoutCredentials(t *testing.T) {
	t.Parallel()
	g := limitedGateway(t, nil, nil)
	for _, size := range []int{100, 1000000} {
		conn, r := rawRequest(t, g.url, fmt.Sprintf("POST /?hub.mode=list HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\nx", size))
		resp := readAnswer(t, conn, r, 2*time.Second, fmt.Sprintf("a %d-byte body sent slowly", size))
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Fatalf("size %d: %d, Connection: close %v; want 401 and the connection closed", size, resp.StatusCode, resp.Close)
		}
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := r.ReadByte(); err != io.EOF {
			t.Fatalf("size %d: the connection was not closed after the answer: %v", size, err)
		}
	}
}

// TestBodyReadDeadline: a form body (read before authenticating, it may
// hold the credentials) that does not arrive within the body timeout is
// answered 408 and the connection closed.
func TestBodyReadDeadline(t *testing.T) {
	t.Parallel()
	g := limitedGateway(t, func(c *server.Config) { c.Limits.BodyTimeout = 300 * time.Millisecond }, nil)
	began := time.Now()
	conn, r := rawRequest(t, g.url, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nhub.mode=list&")
	resp := readAnswer(t, conn, r, 3*time.Second, "a form body that never ends")
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("%d, Connection: close %v; want 408 and the connection closed", resp.StatusCode, resp.Close)
	}
	t.Logf("answered after %s", time.Since(began).Round(time.Millisecond))

	// A body that arrives in time is read, and the connection kept.
	login, token, _ := strings.Cut(g.admin, ":")
	body := url.Values{"hub.mode": {"list"}, "authorization": {basic(login + ":" + token)}}.Encode()
	conn, r = rawRequest(t, g.url, fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	resp = readAnswer(t, conn, r, 3*time.Second, "a form body in time")
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("%d, Connection: close %v; want 200 on a kept connection", resp.StatusCode, resp.Close)
	}
}

// TestUnauthenticatedConnectionCap: an address holds at most the cap of
// connections without an authenticated request; beyond it connections are
// answered 429 and closed, and an authenticated connection does not count.
func TestUnauthenticatedConnectionCap(t *testing.T) {
	t.Parallel()
	conns := limit.NewConns(4)
	g := limitedGateway(t, nil, conns)
	u, _ := url.Parse(g.url)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// One connection authenticates; it then does not count.
	authed := dial()
	login, token, _ := strings.Cut(g.admin, ":")
	fmt.Fprintf(authed, "GET /?hub.mode=list HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n", basic(login+":"+token))
	if resp := readAnswer(t, authed, bufio.NewReader(authed), 3*time.Second, "the authenticated request"); resp.StatusCode != 200 {
		t.Fatalf("authenticated request: %d", resp.StatusCode)
	}
	// Four idle connections without credentials are held...
	for range 4 {
		dial()
	}
	testkit.Eventually(t, 3*time.Second, "4 unauthenticated connections counted", func() bool {
		return conns.Unauthenticated(netipLoopback) == 4
	})
	// ...the fifth is refused.
	fifth := dial()
	resp := readAnswer(t, fifth, bufio.NewReader(fifth), 3*time.Second, "the connection over the cap")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("over the cap: %d %v", resp.StatusCode, resp.Header)
	}
	// The authenticated connection still works.
	fmt.Fprintf(authed, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := readAnswer(t, authed, bufio.NewReader(authed), 3*time.Second, "healthz on the authenticated connection"); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}
	if conns.Refused() == 0 {
		t.Fatal("no refusal counted")
	}
}

// TestCORSAnyOriginNoCredentials: --allowed-origins=* answers "*" and
// never allows credentials; a listed origin is reflected with them.
func TestCORSAnyOriginNoCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		origins []string
		origin  string
		allow   string
		creds   bool
	}{
		{[]string{"*"}, "https://evil.example", "*", false},
		{[]string{"https://widget.example"}, "https://widget.example", "https://widget.example", true},
		{[]string{"https://widget.example"}, "https://evil.example", "", false},
	} {
		g := limitedGateway(t, func(c *server.Config) { c.AllowedOrigins = tc.origins }, nil)
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			req, _ := http.NewRequest(method, g.url+"/?hub.mode=list", nil)
			req.Header.Set("Origin", tc.origin)
			if method == http.MethodOptions {
				req.Header.Set("Access-Control-Request-Method", "GET")
				req.Header.Set("Access-Control-Request-Headers", "authorization")
			}
			login, token, _ := strings.Cut(g.admin, ":")
			req.SetBasicAuth(login, token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got, creds := resp.Header.Get("Access-Control-Allow-Origin"), resp.Header.Get("Access-Control-Allow-Credentials") == "true"
			if got != tc.allow || creds != tc.creds {
				t.Errorf("origins %v, %s from %s: Allow-Origin %q credentials %v; want %q %v", tc.origins, method, tc.origin, got, creds, tc.allow, tc.creds)
			}
		}
	}
}

// TestPingScopeAndRate: a publish ping is checked against the token's
// scopes for every topic it names, and pings of one topic are limited.
func TestPingScopeAndRate(t *testing.T) {
	t.Parallel()
	g := limitedGateway(t, func(c *server.Config) { c.Limits.PingRate = 0.5 }, nil)
	scoped := g.user("pub", "publish", "http://a.example/scoped*")
	for _, tc := range []struct {
		query string
		code  int
	}{
		{"hub.url=" + url.QueryEscape("http://b.example/other"), 403},
		{"hub.url=" + url.QueryEscape("http://a.example/scoped/1") + "&hub.url=" + url.QueryEscape("http://b.example/other"), 403},
		{"hub.url=" + url.QueryEscape("http://a.example/scoped/1,http://b.example/other"), 403},
		{"hub.topic=" + url.QueryEscape("http://b.example/other"), 403},
		{"hub.url=" + url.QueryEscape("http://a.example/scoped/1"), 204},
	} {
		if a := g.get("hub.mode=publish&"+tc.query, scoped); a.code != tc.code {
			t.Errorf("ping %s: %d %s, want %d", tc.query, a.code, a.body, tc.code)
		}
	}
	// The same topic again at once: over 0.5 pings per second.
	a := g.get("hub.mode=publish&hub.url="+url.QueryEscape("http://a.example/scoped/1"), scoped)
	if a.code != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Fatalf("second ping: %d %v %s", a.code, a.header, a.body)
	}
	if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 || n > 2 {
		t.Fatalf("Retry-After %q, want 1 or 2 seconds", a.header.Get("Retry-After"))
	}
	// Another topic is not limited by it.
	if a := g.get("hub.mode=publish&hub.url="+url.QueryEscape("http://a.example/scoped/2"), scoped); a.code != 204 {
		t.Fatalf("ping of another topic: %d %s", a.code, a.body)
	}
}

// TestSubscribeSeveralTopics: several hub.topic are all subscribed, or
// none (422 or 403), never the first alone.
func TestSubscribeSeveralTopics(t *testing.T) {
	t.Parallel()
	g := limitedGateway(t, nil, nil)
	scoped := g.user("sub", "subscribe,list", "http://a.example/*")
	form := func(creds string, topics ...string) answer {
		v := url.Values{"hub.mode": {"subscribe"}, "hub.topic": topics}
		return g.do(http.MethodPost, "", creds, strings.NewReader(v.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	}
	listed := func(creds string) string { return g.get("hub.mode=list", creds).body }
	if a := form(scoped, "http://a.example/one", "http://b.example/out-of-scope"); a.code != 403 {
		t.Fatalf("one topic out of scope: %d %s", a.code, a.body)
	}
	if a := form(scoped, "http://a.example/one", "ftp://a.example/bad"); a.code != 422 {
		t.Fatalf("one bad topic: %d %s", a.code, a.body)
	}
	if l := listed(scoped); strings.Contains(l, "a.example/one") {
		t.Fatalf("a refused request subscribed its first topic: %s", l)
	}
	if a := form(scoped, "http://a.example/one", "http://a.example/two", "http://a.example/three"); a.code != 204 {
		t.Fatalf("three topics: %d %s", a.code, a.body)
	}
	l := listed(scoped)
	for _, topic := range []string{"one", "two", "three"} {
		if !strings.Contains(l, "http://a.example/"+topic) {
			t.Fatalf("topic %s not subscribed: %s", topic, l)
		}
	}
	v := url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {"http://a.example/one", "http://a.example/two"}}
	if a := g.do(http.MethodPost, "", scoped, strings.NewReader(v.Encode()), "Content-Type", "application/x-www-form-urlencoded"); a.code != 422 {
		t.Fatalf("unsubscribe with two topics: %d %s", a.code, a.body)
	}
}

// TestUserRateLimit: requests per second per user, burst one second's
// worth, 429 with Retry-After beyond; other users are not affected.
func TestUserRateLimit(t *testing.T) {
	t.Parallel()
	g := limitedGateway(t, func(c *server.Config) { c.Limits.RequestRate = 2 }, nil)
	alice := g.user("alice", "list")
	bob := g.user("bob", "list")
	codes := []int{}
	for range 3 {
		codes = append(codes, g.get("hub.mode=list", alice).code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("alice's three requests at once: %v, want 200 200 429", codes)
	}
	a := g.get("hub.mode=list", alice, "Accept", "application/json")
	if a.code != 429 || a.header.Get("Retry-After") != "1" || !strings.Contains(a.body, "rate-limit") {
		t.Fatalf("over the limit: %d %v %s", a.code, a.header, a.body)
	}
	if a := g.get("hub.mode=list", bob); a.code != 200 {
		t.Fatalf("bob: %d", a.code)
	}
}

// TestFailedLoginLimit: after the allowed failed logins an address is
// answered 429, even with the right credentials, until it may try again.
func TestFailedLoginLimit(t *testing.T) {
	t.Parallel()
	g := limitedGateway(t, func(c *server.Config) { c.Limits.LoginFailures = 3 }, nil)
	good := g.user("carol", "list")
	login, _, _ := strings.Cut(good, ":")
	wrong := login + ":wrong-token-0123456789"
	var got []int
	for _, creds := range []string{wrong, wrong, "", good, wrong, good, ""} {
		// Missing credentials are not failed logins; the third wrong
		// token blocks the address, whatever it sends next.
		got = append(got, g.get("hub.mode=list", creds).code)
	}
	want := []int{401, 401, 401, 200, 401, 429, 429}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("answers %v, want %v", got, want)
	}
	a := g.get("hub.mode=list", good)
	if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 || n > 20 {
		t.Fatalf("Retry-After %q after 3 failures at 3 per minute", a.header.Get("Retry-After"))
	}
}

var netipLoopback = netip.MustParseAddr("127.0.0.1")
