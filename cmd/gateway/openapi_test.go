package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
)

// The description's media types that are not JSON, decoded as its
// description says: NDJSON as the array of its non-blank lines, an event
// stream as the array of its events, JSONP as the value passed to the
// callback, anything else as text.
func init() {
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", decodeNDJSON)
	openapi3filter.RegisterBodyDecoder("text/event-stream", decodeEventStream)
	openapi3filter.RegisterBodyDecoder("application/javascript", decodeJSONP)
	openapi3filter.RegisterBodyDecoder("*/*", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	})
}

func decodeNDJSON(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	var out []any
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue // keep-alive
		}
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("NDJSON line %q: %w", truncated(sc.Text()), err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// decodeEventStream reads complete events (a trailing partial one, cut by
// the test's read, is left out).
func decodeEventStream(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	text := strings.ReplaceAll(string(raw), "\r\n", "\n")
	blocks := strings.Split(text, "\n\n")
	blocks = blocks[:len(blocks)-1] // what follows the last blank line is incomplete
	out := []any{}
	for _, b := range blocks {
		ev := map[string]any{}
		var data, comments []string
		for _, line := range strings.Split(b, "\n") {
			if line == "" {
				continue
			}
			name, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch name {
			case "":
				comments = append(comments, value)
			case "data":
				data = append(data, value)
			case "retry":
				var n int
				if _, err := fmt.Sscan(value, &n); err != nil {
					return nil, fmt.Errorf("retry %q is not a number", value)
				}
				ev["retry"] = n
			case "event", "id":
				ev[name] = value
			default:
				return nil, fmt.Errorf("unknown event field %q", name)
			}
		}
		if len(data) > 0 {
			var v any
			if err := json.Unmarshal([]byte(strings.Join(data, "\n")), &v); err != nil {
				return nil, fmt.Errorf("event data is not JSON: %w", err)
			}
			ev["data"] = v
		}
		if len(comments) > 0 {
			ev["comment"] = strings.Join(comments, "\n")
		}
		out = append(out, ev)
	}
	return out, nil
}

func decodeJSONP(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(raw))
	s = strings.TrimPrefix(s, "/**/")
	open := strings.IndexByte(s, '(')
	if open < 0 || !api.ValidCallback(s[:open]) || !strings.HasSuffix(s, ");") {
		return nil, fmt.Errorf("not /**/callback(...); : %q", truncated(s))
	}
	var v any
	if err := json.Unmarshal([]byte(s[open+1:len(s)-2]), &v); err != nil {
		return nil, fmt.Errorf("the JSONP argument is not JSON: %w", err)
	}
	return v, nil
}

func truncated(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// spec checks exchanges with a running gateway against the description
// and records which operations and statuses they covered.
type spec struct {
	doc    *openapi3.T
	router routers.Router
	opts   *openapi3filter.Options

	mu   sync.Mutex
	seen map[string]bool // "GET / 200"
}

// loadSpec loads the embedded description, validates it and points its
// servers at the gateway's listeners.
func loadSpec(t *testing.T, public, admin string) *spec {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("loading api/openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("api/openapi.yaml is OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	set := func(servers openapi3.Servers) {
		for _, s := range servers {
			s.URL = strings.NewReplacer("{host}", public, "{admin}", admin).Replace(s.URL)
			s.Variables = nil
		}
	}
	set(doc.Servers)
	for _, p := range doc.Paths.Map() {
		set(p.Servers)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	opts := &openapi3filter.Options{
		IncludeResponseStatus: true,
		MultiError:            true,
		AuthenticationFunc:    presentCredential,
		SkipSettingDefaults:   true,
	}
	return &spec{doc: doc, router: router, opts: opts, seen: map[string]bool{}}
}

// presentCredential accepts a security scheme when the request carries
// that kind of credential (whether it is right is the gateway's business).
func presentCredential(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	h := strings.ToLower(r.Header.Get("Authorization"))
	ok := false
	switch in.SecuritySchemeName {
	case "basicAuth":
		ok = strings.HasPrefix(h, "basic ")
	case "bearerJWT":
		ok = strings.HasPrefix(h, "bearer ")
	case "authorizationParam":
		ok = param(r, "authorization") != ""
	case "accessTokenParam":
		ok = param(r, "access_token") != ""
	}
	if !ok {
		return errors.New("no such credential")
	}
	return nil
}

// param reads a parameter from the query string or a form body (as the
// gateway does), leaving the body for the validator.
func param(r *http.Request, name string) string {
	if v := r.URL.Query().Get(name); v != "" {
		return v
	}
	if r.GetBody == nil || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		return ""
	}
	body, err := r.GetBody()
	if err != nil {
		return ""
	}
	b, _ := io.ReadAll(body)
	f, _ := url.ParseQuery(string(b))
	return f.Get(name)
}

// opKey names an operation for coverage: /hub is the same path item as /.
func opKey(route *routers.Route, status int) string {
	path := route.Path
	if path == "/hub" {
		path = "/"
	}
	return fmt.Sprintf("%s %s %d", route.Method, path, status)
}

// exchange is one request and what the gateway answered (the body read
// so far, for streams).
type exchange struct {
	req     *http.Request
	reqBody []byte
	status  int
	header  http.Header
	body    []byte
	// skipRequest: the request is deliberately outside the description
	// (a JSONP call with a bad parameter, answered 200 by design).
	skipRequest bool
}

// check validates an exchange. A request the description has no
// operation for must have been answered 404 or 405; one it has must have
// an answer the description allows (status, headers, body), and a request
// the gateway accepted (2xx) must be one the description accepts.
func (s *spec) check(t *testing.T, x exchange) {
	t.Helper()
	route, params, err := s.router.FindRoute(x.req)
	if err != nil {
		if x.status != http.StatusNotFound && x.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s answered %d, but the description has no such operation (%v)", x.req.Method, x.req.URL, x.status, err)
		}
		return
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: x.req, PathParams: params, Route: route, Options: s.opts}
	if x.status < 300 && !x.skipRequest {
		x.req.Body = io.NopCloser(bytes.NewReader(x.reqBody))
		x.req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(x.reqBody)), nil }
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s %s was accepted (%d) but the description refuses the request: %v", x.req.Method, x.req.URL, x.status, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 x.status,
		Header:                 x.header,
		Options:                s.opts,
	}
	out.SetBodyBytes(x.body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s: the answer %d does not match the description: %v\nbody: %s", x.req.Method, x.req.URL, x.status, err, truncated(string(x.body)))
	}
	s.mu.Lock()
	s.seen[opKey(route, x.status)] = true
	s.mu.Unlock()
}

// call sends a request, reads the whole answer and checks it; it returns
// the exchange for the caller's own assertions.
func (s *spec) call(t *testing.T, req *http.Request, body []byte) exchange {
	t.Helper()
	return s.send(t, req, body, nil, false)
}

// send sends req; read (nil: to the end) reads the answer's body.
func (s *spec) send(t *testing.T, req *http.Request, body []byte, read func(io.Reader) []byte, skipRequest bool) exchange {
	t.Helper()
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var got []byte
	if read == nil {
		got, _ = io.ReadAll(resp.Body)
	} else {
		got = read(resp.Body)
	}
	x := exchange{req: req, reqBody: body, status: resp.StatusCode, header: resp.Header, body: got, skipRequest: skipRequest}
	s.check(t, x)
	return x
}

// readUntil reads a never-ending body until done says it has enough,
// failing the test with what it saw when that does not happen in time.
func readUntil(t *testing.T, what string, done func([]byte) bool) func(io.Reader) []byte {
	return func(r io.Reader) []byte {
		var mu sync.Mutex
		var buf []byte
		enough := make(chan struct{})
		go func() {
			b := make([]byte, 32<<10)
			for {
				n, err := r.Read(b)
				mu.Lock()
				buf = append(buf, b[:n]...)
				ok := done(buf)
				mu.Unlock()
				if ok {
					close(enough)
					return
				}
				if err != nil {
					return
				}
			}
		}()
		select {
		case <-enough:
		case <-time.After(20 * time.Second):
			mu.Lock()
			defer mu.Unlock()
			t.Errorf("%s did not arrive within 20 s; got:\n%s", what, truncated(string(buf)))
			return append([]byte(nil), buf...)
		}
		mu.Lock()
		defer mu.Unlock()
		return append([]byte(nil), buf...)
	}
}

// covered fails for every response the description declares that no
// exchange produced, unless unreachable says why a test cannot make it.
func (s *spec) covered(t *testing.T, unreachable map[string]string) {
	t.Helper()
	var missing []string
	for path, item := range s.doc.Paths.Map() {
		if path == "/hub" {
			continue // the same path item as /
		}
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				key := fmt.Sprintf("%s %s %s", method, path, status)
				if s.seen[key] {
					continue
				}
				if _, ok := unreachable[key]; ok {
					continue
				}
				missing = append(missing, key)
			}
		}
	}
	for key := range unreachable {
		if s.seen[key] {
			t.Errorf("%s was answered: remove it from the unreachable list", key)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the description declares answers no exchange of the test produced (make one, or say why it cannot be made):\n  %s", strings.Join(missing, "\n  "))
	}
}

// webhook checks a request the gateway sent to a subscriber against the
// description's webhooks.
func (s *spec) webhook(t *testing.T, name string, r *http.Request, body []byte) {
	t.Helper()
	item := s.doc.Webhooks[name]
	if item == nil {
		t.Fatalf("the description has no webhook %q", name)
	}
	op := item.GetOperation(r.Method)
	if op == nil {
		t.Errorf("webhook %s: the description has no %s", name, r.Method)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{
		Request: r,
		Route:   &routers.Route{Spec: s.doc, Path: name, PathItem: item, Method: r.Method, Operation: op},
		Options: s.opts,
	}
	if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
		t.Errorf("webhook %s %s does not match the description: %v\nheaders: %v\nbody: %s", name, r.Method, err, r.Header, truncated(string(body)))
	}
}

// message checks a WebSocket message against a component schema.
func (s *spec) message(t *testing.T, schema string, msg []byte) map[string]any {
	t.Helper()
	var v any
	if err := json.Unmarshal(msg, &v); err != nil {
		t.Errorf("WebSocket message is not JSON: %v: %s", err, truncated(string(msg)))
		return nil
	}
	if err := s.doc.Components.Schemas[schema].Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
		t.Errorf("WebSocket message does not match %s: %v\n%s", schema, err, truncated(string(msg)))
	}
	m, _ := v.(map[string]any)
	return m
}

// feedServer serves RSS feeds whose items the test sets, one hub-less
// feed per path, and one (/hubbed) that names an upstream hub.
type feedServer struct {
	*httptest.Server
	hub string
}

func rss(title string, guids ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>%s</title><link>https://site.example/</link>`, title)
	for _, g := range guids {
		fmt.Fprintf(&b, `<item><guid>%s</guid><title>Item %s</title><description>&lt;p&gt;%s&lt;/p&gt;</description></item>`, g, g, g)
	}
	b.WriteString(`</channel></rss>`)
	return b.String()
}

// recordingHook is a subscriber's callback: it echoes challenges and records
// every request.
type hookRequest struct {
	r    *http.Request
	body []byte
}

type hooks struct {
	mu   sync.Mutex
	got  []hookRequest
	more chan struct{}
}

func recordingHook(t *testing.T) (*httptest.Server, *hooks) {
	h := &hooks{more: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, hookRequest{r: r.Clone(context.Background()), body: body})
		h.mu.Unlock()
		select {
		case h.more <- struct{}{}:
		default:
		}
		if c := r.URL.Query().Get("hub.challenge"); c != "" {
			io.WriteString(w, c)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, h
}

// next returns the first request received that matches.
func (h *hooks) next(t *testing.T, what string, match func(hookRequest) bool) hookRequest {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		h.mu.Lock()
		for _, r := range h.got {
			if match(r) {
				h.mu.Unlock()
				return r
			}
		}
		h.mu.Unlock()
		select {
		case <-h.more:
		case <-deadline:
			t.Fatalf("%s did not reach the callback within 20 s", what)
		}
	}
}

// upstreamHub is a WebSub hub the gateway subscribes to: it records the
// gateway's subscription requests.
type upstreamSub struct{ callback, topic, secret string }

func upstreamHub(t *testing.T) (*httptest.Server, <-chan upstreamSub) {
	ch := make(chan upstreamSub, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.Form.Get("hub.mode") == "subscribe" {
			select {
			case ch <- upstreamSub{r.Form.Get("hub.callback"), r.Form.Get("hub.topic"), r.Form.Get("hub.secret")}:
			default:
			}
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// TestOpenAPI runs a gateway (public and admin listeners, signed tokens,
// CORS, small limits) and checks real answers of every hub.mode and form
// (plain, JSONP, NDJSON and Atom streams, SSE, long-polls, WebSocket,
// fat pings, replay, retrieve by callback), of the upstream callbacks, the
// assets, health and the admin API, errors included, against
// api/openapi.yaml with kin-openapi; the webhook requests the gateway
// sends and the WebSocket messages too. An answer the description does
// not allow, an accepted request it refuses, a route it lacks, or a
// declared answer no exchange produced fails the test.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	const jwtSecret = "openapi-test-secret-0123456789abcdef"
	addr, adminAddr := freeAddr(t), freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_ADMIN_LISTEN=" + adminAddr, "FEEDGATE_DATA_DIR=" + t.TempDir(),
		"FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_PUBLIC_URL=http://" + addr, "FEEDGATE_AUTH_CACHE=1s",
		"FEEDGATE_JWT_SECRET=" + jwtSecret, "FEEDGATE_ALLOWED_ORIGINS=http://page.example",
		"FEEDGATE_MAX_CONNS_PER_USER=4", "FEEDGATE_BODY_TIMEOUT=2s", "FEEDGATE_KEEPALIVE=1s"}
	p := start(t, addr, env)
	s := loadSpec(t, addr, adminAddr)
	base, admin := p.url, "http://"+adminAddr

	rootToken := userAdd(t, env, "root", "--rights", "all")
	readerToken := userAdd(t, env, "reader", "--rights", "retrieve,subscribe")
	crowdToken := userAdd(t, env, "crowd", "--rights", "retrieve,subscribe")

	// Feeds, an upstream hub, a subscriber's callback.
	hubSrv, upstream := upstreamHub(t)
	feeds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/rss+xml")
		if r.URL.Path == "/hubbed" {
			fmt.Fprintf(w, `<?xml version="1.0"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>Hubbed</title><link>https://site.example/</link><atom:link rel="hub" href="%s"/><atom:link rel="self" href="http://%s/hubbed"/><item><guid>h-1</guid><title>H</title></item></channel></rss>`, hubSrv.URL, r.Host)
			return
		}
		io.WriteString(w, rss("Feed", "seed-1"))
	}))
	defer feeds.Close()
	hook, hooks := recordingHook(t)
	topic, other, hubbed := feeds.URL+"/a", feeds.URL+"/b", feeds.URL+"/hubbed"

	basic := func(login, token string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(login, token) }
	}
	root, reader, crowd := basic("root", rootToken), basic("reader", readerToken), basic("crowd", crowdToken)
	none := func(*http.Request) {}
	newReq := func(method, u string, auth func(*http.Request), header ...string) *http.Request {
		req, err := http.NewRequest(method, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		auth(req)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		return req
	}
	hubURL := func(q url.Values) string { return base + "/?" + q.Encode() }
	get := func(q url.Values, auth func(*http.Request), header ...string) exchange {
		t.Helper()
		return s.call(t, newReq("GET", hubURL(q), auth, header...), nil)
	}
	postForm := func(path string, q url.Values, auth func(*http.Request)) exchange {
		t.Helper()
		return s.call(t, newReq("POST", base+path, auth, "Content-Type", "application/x-www-form-urlencoded"), []byte(q.Encode()))
	}
	// both sends q by GET and as a POST form, expecting code for each.
	both := func(q url.Values, auth func(*http.Request), code int, what string, header ...string) {
		t.Helper()
		for _, x := range []exchange{
			s.call(t, newReq("GET", hubURL(q), auth, header...), nil),
			s.call(t, newReq("POST", base+"/", auth, append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...), []byte(q.Encode())),
		} {
			if x.status != code {
				t.Errorf("%s (%s): answered %d, want %d: %s", what, x.req.Method, x.status, code, truncated(string(x.body)))
			}
		}
	}
	fatPing := func(topic, ctype, body string, auth func(*http.Request)) exchange {
		t.Helper()
		return s.call(t, newReq("POST", hubURL(url.Values{"hub.mode": {"publish"}, "hub.topic": {topic}}), auth, "Content-Type", ctype), []byte(body))
	}
	want := func(x exchange, code int, what string) {
		t.Helper()
		if x.status != code {
			t.Errorf("%s: answered %d, want %d: %s", what, x.status, code, truncated(string(x.body)))
		}
	}
	mint := func(sub string, rights []string, ttl time.Duration) string {
		now := time.Now()
		tok, err := auth.Mint([]byte(jwtSecret), auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
			Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		}, Rights: rights})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	// --- subscribe, unsubscribe ---
	want(get(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}, root), 204, "subscribe")
	want(postForm("/hub", url.Values{"hub.mode": {"subscribe"}, "hub.topic": {other, hubbed}}, root), 204, "subscribe two topics by form on /hub")
	x := get(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "retrieve": {"true"}, "format": {"json"}}, root)
	want(x, 200, "subscribe with retrieve=true")
	want(get(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {hook.URL + "/cb"}, "hub.secret": {"s3cret"}, "format": {"json"}}, root), 204, "subscribe with a callback")
	verify := hooks.next(t, "the verification of intent", func(h hookRequest) bool { return h.r.Method == "GET" })
	s.webhook(t, "verifyIntent", verify.r, verify.body)
	both(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {other}, "hub.callback": {hook.URL + "/async"}, "hub.verify": {"async"}}, root, 202, "subscribe async")
	want(get(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}, crowd), 204, "crowd subscribes")
	want(get(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}, reader), 204, "reader subscribes")
	want(get(url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {topic}}, reader), 403, "unsubscribe without the right")
	both(url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {feeds.URL + "/never"}}, root, 404, "unsubscribe what is not subscribed")
	want(get(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {"ftp://x"}}, root), 422, "subscribe to a bad URL")
	want(get(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {feeds.URL + "/c"}}, root), 204, "subscribe c")
	want(get(url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {feeds.URL + "/c"}}, root), 204, "unsubscribe c")

	// --- publish: fat pings and pings ---
	x = fatPing(topic, "application/rss+xml", rss("Feed", "p-1", "p-2"), root)
	want(x, 200, "fat ping")
	want(fatPing(topic, "text/plain", "hello", root), 415, "fat ping of another type")
	want(fatPing(topic, "application/rss+xml", "<not a feed", root), 422, "fat ping that does not parse")
	want(fatPing(topic, "application/rss+xml", strings.Repeat(" ", 10<<20+1), root), 413, "fat ping over --max-body")
	want(fatPing(topic, "application/rss+xml", rss("Feed", "p-3"), reader), 403, "fat ping without the publish right")
	want(get(url.Values{"hub.mode": {"publish"}, "hub.url": {other}}, root), 204, "publish ping")
	for _, method := range []string{"GET", "POST"} {
		pinged := false
		for range 5 {
			q := url.Values{"hub.mode": {"publish"}, "hub.url": {topic + "," + other}}
			req := newReq(method, hubURL(q), root)
			if s.call(t, req, nil).status == 429 {
				pinged = true
				break
			}
		}
		if !pinged {
			t.Errorf("back-to-back pings of a topic by %s were never answered 429", method)
		}
	}
	want(get(url.Values{"hub.mode": {"publish"}}, root), 422, "publish without hub.url")

	// --- retrieve ---
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "format": {"json"}}, root), 200, "retrieve JSON")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}}, root), 200, "retrieve Atom")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "count": {"1"}}, root, "Accept", "application/json"), 200, "retrieve by Accept")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "callback": {"app.onFeed"}}, root), 200, "retrieve JSONP")
	x = s.send(t, newReq("GET", hubURL(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "callback": {"cb"}, "count": {"0"}}), root), nil, nil, true)
	want(x, 200, "a JSONP error")
	if !strings.Contains(string(x.body), `"code":422`) {
		t.Errorf("a JSONP error does not carry the 422: %s", x.body)
	}
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "after": {"0000000000000001"}, "format": {"json"}}, root), 200, "retrieve after a cursor")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "before": {"p-2"}, "format": {"json"}}, root), 200, "retrieve before an id")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "count": {"0"}, "format": {"json"}}, root), 422, "retrieve count=0")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {feeds.URL + "/never"}, "format": {"json"}}, reader), 404, "retrieve an unsubscribed topic")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.callback": {hook.URL + "/%"}, "format": {"json"}}, root), 200, "retrieve by callback")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.callback": {"http://nobody.example/%"}, "format": {"json"}}, root), 404, "retrieve by an unknown callback")
	// Signed tokens: Bearer and access_token=.
	jwtRoot := mint("root", []string{"retrieve", "list"}, time.Hour)
	want(get(url.Values{"hub.mode": {"list"}}, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+jwtRoot) }), 200, "list with a Bearer JWT")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "access_token": {jwtRoot}}, none), 200, "retrieve with access_token=")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "access_token": {mint("root", []string{"retrieve"}, -time.Minute)}}, none), 401, "an expired JWT")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "authorization": {base64.StdEncoding.EncodeToString([]byte("root:" + rootToken))}}, none), 200, "retrieve with authorization=")
	// Long-polls: at once, and held until the timeout.
	x = get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"poll"}, "format": {"json"}}, root)
	want(x, 200, "wait=poll with items")
	var ans struct {
		Status struct{ Cursor string }
		Items  []struct{ Cursor string }
	}
	json.Unmarshal(x.body, &ans)
	x = get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"poll"}, "format": {"json"}, "after": {ans.Status.Cursor}, "timeout": {"1"}}, root)
	want(x, 200, "wait=poll that times out")
	if !strings.Contains(string(x.body), `"items":[]`) {
		t.Errorf("a long-poll that timed out: %s", x.body)
	}
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"poll"}, "timeout": {"100000"}}, root), 422, "wait=poll with too long a timeout")

	// Streams: NDJSON, Atom and SSE get their first answer, then a
	// notification of a fat ping made while they are open.
	stream := func(what string, q url.Values, header []string, done func([]byte) bool, publish string) exchange {
		t.Helper()
		var once sync.Once
		read := readUntil(t, what, func(b []byte) bool {
			if len(b) > 0 && publish != "" {
				once.Do(func() {
					go func() {
						fatPingQuiet(base, "root:"+rootToken, topic, rss("Feed", publish))
					}()
				})
			}
			return done(b)
		})
		return s.send(t, newReq("GET", hubURL(q), root, header...), nil, read, false)
	}
	x = stream("an NDJSON stream's answer and notification", url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"stream"}, "format": {"json"}}, nil,
		func(b []byte) bool { return bytes.Count(b, []byte("\n{")) >= 1 && bytes.HasSuffix(b, []byte("}\n")) }, "nd-1")
	want(x, 200, "wait=stream JSON")
	x = stream("an Atom stream's entry", url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"stream"}}, nil,
		func(b []byte) bool { return bytes.Contains(b, []byte("atom-1")) }, "atom-1")
	want(x, 200, "wait=stream Atom")
	x = stream("SSE events", url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "format": {"json"}}, []string{"Accept", "text/event-stream"},
		func(b []byte) bool {
			return bytes.Count(b, []byte("event: notification")) >= 2 && bytes.HasSuffix(b, []byte("\n\n"))
		}, "sse-1")
	want(x, 200, "SSE by Accept")
	x = stream("SSE of two topics with a keep-alive", url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic, other}, "format": {"sse"}}, nil,
		func(b []byte) bool { return bytes.Contains(b, []byte(": keep-alive\n\n")) }, "")
	want(x, 200, "format=sse")
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "format": {"sse"}, "lastEventId": {"nonsense"}}, root), 422, "SSE with a bad resume token")

	// WebSocket on / and /ws: the first answer, a notification, client
	// messages and their errors.
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	wsCall := func(path string, q url.Values, h http.Header) (*websocket.Conn, exchange) {
		t.Helper()
		u := "ws://" + addr + path + "?" + q.Encode()
		conn, resp, err := dialer.Dial(u, h)
		if resp == nil {
			t.Fatalf("WebSocket %s: %v", u, err)
		}
		body, _ := io.ReadAll(resp.Body)
		req := newReq("GET", "http://"+addr+path+"?"+q.Encode(), none)
		req.Header = h.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header.Set("Upgrade", "websocket")
		x := exchange{req: req, status: resp.StatusCode, header: resp.Header, body: body}
		s.check(t, x)
		return conn, x
	}
	rootHeader := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("root:"+rootToken))}}
	conn, x := wsCall("/", url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "count": {"2"}}, rootHeader)
	want(x, 101, "WebSocket on /")
	if conn != nil {
		readWS := func(what string) map[string]any {
			t.Helper()
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, msg, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("WebSocket: %s did not arrive: %v", what, err)
			}
			return s.message(t, "WebSocketServerMessage", msg)
		}
		readWS("the first answer")
		fatPingQuiet(base, "root:"+rootToken, topic, rss("Feed", "ws-1"))
		readWS("a notification")
		for _, m := range []string{
			`{"mode":"subscribe","topic":"` + other + `","count":1}`,
			`{"mode":"unsubscribe","topic":"` + other + `"}`,
		} {
			var v any
			json.Unmarshal([]byte(m), &v)
			if err := s.doc.Components.Schemas["WebSocketClientMessage"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
				t.Errorf("client message %s does not match the description: %v", m, err)
			}
			conn.WriteMessage(websocket.TextMessage, []byte(m))
		}
		readWS("the answer of a subscribe message")
		conn.WriteMessage(websocket.TextMessage, []byte(`{"mode":"unsubscribe","topic":"`+other+`"}`))
		if m := readWS("the error of a second unsubscribe"); m["error"] == nil {
			t.Errorf("a second unsubscribe did not answer an error: %v", m)
		}
		conn.WriteMessage(websocket.TextMessage, []byte(`not json`))
		readWS("the error of a message that is not JSON")
		conn.Close()
	}
	if c, x := wsCall("/ws", url.Values{"hub.topic": {topic}}, rootHeader); x.status == 101 {
		c.Close()
	} else {
		want(x, 101, "WebSocket on /ws")
	}
	_, x = wsCall("/ws", url.Values{"hub.topic": {topic}}, nil)
	want(x, 401, "WebSocket without credentials")
	_, x = wsCall("/ws", url.Values{"hub.topic": {topic}}, http.Header{"Authorization": rootHeader["Authorization"], "Origin": {"http://evil.example"}})
	want(x, 403, "WebSocket from an origin that is not allowed")
	_, x = wsCall("/ws", url.Values{"hub.topic": {feeds.URL + "/never"}}, http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("reader:"+readerToken))}})
	want(x, 404, "WebSocket on an unsubscribed topic")
	_, x = wsCall("/ws", url.Values{"hub.topic": {topic}, "count": {"0"}}, rootHeader)
	want(x, 422, "WebSocket with count=0")
	want(s.call(t, newReq("GET", base+"/ws?hub.topic="+url.QueryEscape(topic), root), nil), 400, "/ws without Upgrade")
	want(s.call(t, newReq("GET", hubURL(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}}), root, "Upgrade", "websocket", "Connection", "Upgrade"), nil), 400, "a broken WebSocket handshake on /")

	// The live connection limit per user (4): streams and sockets beyond it
	// are answered 429.
	var held []io.Closer
	for i := range 4 {
		req := newReq("GET", hubURL(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"stream"}, "format": {"json"}}), crowd)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("crowd's stream %d: %v %v", i, err, resp)
		}
		held = append(held, resp.Body)
	}
	want(get(url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"stream"}, "format": {"json"}}, crowd), 429, "a stream over the connection limit")
	_, x = wsCall("/ws", url.Values{"hub.topic": {topic}}, http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("crowd:"+crowdToken))}})
	want(x, 429, "a WebSocket over the connection limit")

	// --- list, replay ---
	want(get(url.Values{"hub.mode": {"list"}}, root), 200, "list")
	want(get(url.Values{"hub.mode": {"list"}, "callback": {"cb"}, "by_page": {"2"}}, root), 200, "list JSONP")
	want(get(url.Values{"hub.mode": {"list"}, "by_page": {"501"}}, root), 422, "list by_page=501")
	want(get(url.Values{"hub.mode": {"list"}}, reader), 403, "list without the right")
	want(postForm("/", url.Values{"hub.mode": {"list"}, "authorization": {base64.StdEncoding.EncodeToString([]byte("root:" + rootToken))}}, none), 200, "list with authorization= in a form body")
	want(get(url.Values{"hub.mode": {"replay"}, "hub.topic": {topic}, "hub.callback": {hook.URL + "/cb"}, "count": {"2"}}, root), 204, "replay")
	replayed := hooks.next(t, "the replay", func(h hookRequest) bool { return h.r.Header.Get("Feedgate-Replay") == "true" })
	s.webhook(t, "delivery", replayed.r, replayed.body)
	delivered := hooks.next(t, "a delivery", func(h hookRequest) bool { return h.r.Method == "POST" && h.r.Header.Get("Feedgate-Replay") == "" })
	s.webhook(t, "delivery", delivered.r, delivered.body)
	want(get(url.Values{"hub.mode": {"replay"}, "hub.topic": {topic}, "hub.callback": {hook.URL + "/nope"}}, root), 404, "replay without such a subscription")

	// --- errors of the endpoint ---
	both(url.Values{"hub.mode": {"list"}}, none, 401, "no credentials")
	both(url.Values{"hub.mode": {"list"}}, basic("root", "wrong"), 401, "wrong credentials", "Accept", "application/json")
	both(url.Values{"hub.mode": {"fly"}}, root, 422, "an unknown mode")
	want(get(url.Values{}, root, "Accept", "application/json"), 422, "no mode")
	both(url.Values{"hub.mode": {"list"}}, root, 405, "X-HTTP-Method-Override: DELETE", "X-HTTP-Method-Override", "DELETE")
	// The landing page is the one answer of / without credentials.
	want(s.send(t, newReq("GET", base+"/", none, "Accept", "text/html"), nil, nil, true), 200, "the landing page")
	for _, method := range []string{"GET", "POST"} {
		x := slowBody(t, s, method, addr, "root:"+rootToken)
		want(x, 408, method+" with a body that does not arrive")
		req := newReq(method, base+"/?hub.mode=list", root, "Content-Type", "application/x-www-form-urlencoded")
		want(s.call(t, req, bytes.Repeat([]byte("a"), 1<<20+1)), 413, method+" with a form body over 1 MiB")
	}
	want(s.call(t, newReq("OPTIONS", base+"/", none), nil), 200, "OPTIONS")
	want(s.call(t, newReq("OPTIONS", base+"/hub", none, "Origin", "http://page.example", "Access-Control-Request-Method", "GET"), nil), 204, "a CORS preflight")
	want(s.call(t, newReq("OPTIONS", base+"/", none, "Origin", "http://evil.example", "Access-Control-Request-Method", "GET"), nil), 403, "a preflight from another origin")

	// --- upstream WebSub callbacks ---
	var up upstreamSub
	select {
	case up = <-upstream:
	case <-time.After(20 * time.Second):
		t.Fatal("the gateway did not subscribe at the upstream hub of the hubbed feed")
	}
	cb, _ := url.Parse(up.callback)
	challenge := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {up.topic}, "hub.challenge": {"c-123"}, "hub.lease_seconds": {"600"}}
	x = s.call(t, newReq("GET", base+cb.Path+"?"+challenge.Encode(), none), nil)
	if want(x, 200, "the upstream hub's verification"); string(x.body) != "c-123" {
		t.Errorf("the challenge was not echoed: %q", x.body)
	}
	want(s.call(t, newReq("GET", base+"/callback/nope?"+challenge.Encode(), none), nil), 404, "verification of an unknown callback")
	content := []byte(rss("Hubbed", "pushed-1"))
	want(s.call(t, newReq("POST", base+cb.Path, none, "Content-Type", "application/rss+xml"), content), 403, "pushed content without a signature")
	mac := hmac.New(sha256.New, []byte(up.secret))
	mac.Write(content)
	want(s.call(t, newReq("POST", base+cb.Path, none, "Content-Type", "application/rss+xml", "X-Hub-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil))), content), 200, "signed pushed content")
	want(s.call(t, newReq("POST", base+"/callback/nope", none, "Content-Type", "application/rss+xml"), content), 410, "content for an unknown callback")

	// --- operations and assets ---
	want(s.call(t, newReq("GET", base+"/healthz", none), nil), 200, "healthz")
	want(s.call(t, newReq("GET", base+"/readyz", none), nil), 200, "readyz")
	for _, u := range []string{base, admin} {
		x = s.call(t, newReq("GET", u+"/openapi.yaml", none), nil)
		if want(x, 200, "the description at "+u); !bytes.Equal(x.body, api.OpenAPI) {
			t.Errorf("%s/openapi.yaml is not the embedded description", u)
		}
	}
	for _, path := range []string{"/feedgate.js", "/feedgate.css", "/jquery.feedgate.js", "/demo", "/static/site.css", "/static/favicon.svg"} {
		x = s.call(t, newReq("GET", base+path, none), nil)
		want(x, 200, path)
		want(s.call(t, newReq("GET", base+path, none, "If-None-Match", x.header.Get("ETag")), nil), 304, path+" If-None-Match")
		want(s.call(t, newReq("HEAD", base+path, none), nil), 200, "HEAD "+path)
		want(s.call(t, newReq("HEAD", base+path, none, "If-None-Match", x.header.Get("ETag")), nil), 304, "HEAD "+path+" If-None-Match")
	}
	want(s.call(t, newReq("GET", base+"/static/nope.js", none), nil), 404, "a missing asset")
	want(s.call(t, newReq("HEAD", base+"/static/nope.js", none), nil), 404, "HEAD a missing asset")
	want(s.call(t, newReq("GET", admin+"/metrics", none), nil), 200, "metrics")
	want(s.call(t, newReq("GET", admin+"/debug/pprof/", none), nil), 200, "pprof index")
	want(s.call(t, newReq("GET", admin+"/debug/pprof/cmdline", none), nil), 200, "pprof cmdline")
	want(s.call(t, newReq("GET", admin+"/debug/pprof/nope", none), nil), 404, "an unknown profile")
	want(s.call(t, newReq("GET", admin+"/debug/pprof/heap?seconds=-1", none), nil), 400, "a bad profile parameter")
	want(s.call(t, newReq("POST", admin+"/debug/pprof/symbol", none), []byte("0x1")), 200, "pprof symbol")
	want(s.call(t, newReq("POST", admin+"/debug/pprof/cmdline", none), nil), 405, "POST to a profile")

	// --- the admin API ---
	ad := admin + "/admin/api"
	jsonReq := func(method, u string, auth func(*http.Request), body string) exchange {
		t.Helper()
		req := newReq(method, u, auth)
		var b []byte
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
			b = []byte(body)
		}
		return s.call(t, req, b)
	}
	for _, path := range []string{"/users", "/topics", "/deliveries", "/connections", "/nodes", "/overview"} {
		want(jsonReq("GET", ad+path, root, ""), 200, "admin "+path)
		want(jsonReq("GET", ad+path, none, ""), 401, "admin "+path+" without credentials")
		want(jsonReq("GET", ad+path, reader, ""), 403, "admin "+path+" without the admin right")
	}
	x = jsonReq("POST", ad+"/users", root, `{"login":"dora","rights":["retrieve","list"],"topics":["https://x.example/*"],"expires":"720h"}`)
	want(x, 201, "admin add user")
	want(jsonReq("POST", ad+"/users", root, `{"login":"dora","rights":["list"]}`), 409, "admin add an existing user")
	want(jsonReq("POST", ad+"/users", root, `{"login":"erin","colour":"red"}`), 422, "admin add with an unknown field")
	want(jsonReq("POST", ad+"/users", none, `{"login":"erin"}`), 401, "admin add without credentials")
	want(jsonReq("POST", ad+"/users", reader, `{"login":"erin"}`), 403, "admin add without the right")
	want(jsonReq("POST", ad+"/users/dora/rotate", root, `{"expires":"24h"}`), 200, "admin rotate")
	want(jsonReq("POST", ad+"/users/dora/rotate", root, ""), 200, "admin rotate without a body")
	want(jsonReq("POST", ad+"/users/dora/rotate", root, `{"expires":"soon"}`), 422, "admin rotate with a bad expiry")
	want(jsonReq("POST", ad+"/users/nobody/rotate", root, ""), 404, "admin rotate an unknown user")
	want(jsonReq("POST", ad+"/users/dora/rotate", none, ""), 401, "admin rotate without credentials")
	want(jsonReq("POST", ad+"/users/dora/rotate", reader, ""), 403, "admin rotate without the right")
	want(jsonReq("DELETE", ad+"/users/dora", root, ""), 204, "admin remove")
	want(jsonReq("DELETE", ad+"/users/dora", root, ""), 404, "admin remove twice")
	want(jsonReq("DELETE", ad+"/users/dora", none, ""), 401, "admin remove without credentials")
	want(jsonReq("DELETE", ad+"/users/dora", reader, ""), 403, "admin remove without the right")
	sub := `{"login":"root","topic":"` + topic + `","callback":"` + hook.URL + `/cb"}`
	want(jsonReq("POST", ad+"/deliveries/retry", root, sub), 202, "admin retry a delivery now")
	want(jsonReq("POST", ad+"/deliveries/retry", root, `{"login":"root","topic":"`+topic+`","callback":"http://nobody.example/"}`), 404, "admin retry an unknown subscription")
	want(jsonReq("POST", ad+"/deliveries/retry", root, `{"login":"root"}`), 422, "admin retry without topic and callback")
	want(jsonReq("POST", ad+"/deliveries/retry", none, sub), 401, "admin retry without credentials")
	want(jsonReq("POST", ad+"/deliveries/retry", reader, sub), 403, "admin retry without the right")
	want(jsonReq("GET", ad+"/users", func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+mint("root", []string{"admin"}, time.Hour))
	}, ""), 200, "admin with a JWT")
	x = s.send(t, newReq("GET", ad+"/events", root), nil, readUntil(t, "the admin event stream's first overview", func(b []byte) bool {
		return bytes.Contains(b, []byte("event: overview")) && bytes.HasSuffix(b, []byte("\n\n"))
	}), false)
	want(x, 200, "admin events")
	want(jsonReq("GET", ad+"/events", none, ""), 401, "admin events without credentials")
	want(jsonReq("GET", ad+"/events", reader, ""), 403, "admin events without the admin right")
	want(s.call(t, newReq("GET", admin+"/admin", none), nil), 301, "the admin console without its slash")
	want(s.call(t, newReq("GET", admin+"/admin/", none), nil), 200, "the admin console")
	want(s.call(t, newReq("GET", admin+"/admin/console.js", none), nil), 200, "the admin console's script")
	want(s.call(t, newReq("GET", admin+"/admin/index.html", none), nil), 301, "the admin console by file name")

	for _, c := range held {
		c.Close()
	}

	// Routes the description does not list answer 404 or 405; HEAD, where
	// Go's router serves it, answers as GET does.
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	paths := []string{base + "/", base + "/hub", base + "/ws", base + "/healthz", base + "/readyz", base + "/metrics", base + "/openapi.yaml",
		base + "/callback/x", base + "/feedgate.js", base + "/demo", base + "/static/site.css", base + "/nope", base + "/admin/api/users",
		admin + "/", admin + "/metrics", admin + "/openapi.yaml", admin + "/debug/pprof/", admin + "/debug/pprof/cmdline",
		admin + "/admin/api/users", admin + "/admin/api/users/x", admin + "/admin/api/users/x/rotate", admin + "/admin/api/topics",
		admin + "/admin/api/deliveries", admin + "/admin/api/deliveries/retry", admin + "/admin/api/connections", admin + "/admin/api/nodes", admin + "/admin/api/nope", admin + "/admin/nope"}
	for _, u := range paths {
		for _, m := range methods {
			if m == "GET" && strings.Contains(u, "/debug/pprof/") {
				continue // checked above (a profile takes its time)
			}
			req := newReq(m, u, root)
			if m == "POST" && strings.HasSuffix(u, "/users") {
				continue // would add a user: checked above
			}
			if m == "DELETE" && strings.Contains(u, "/users/") || m == "POST" && strings.HasSuffix(u, "/rotate") {
				continue // checked above
			}
			s.call(t, req, nil)
		}
		get := s.call(t, newReq("GET", u, root), nil)
		head, err := http.DefaultClient.Do(newReq("HEAD", u, root))
		if err != nil {
			t.Fatal(err)
		}
		head.Body.Close()
		if head.StatusCode != http.StatusMethodNotAllowed && head.StatusCode != get.status {
			t.Errorf("HEAD %s answered %d, GET %d", u, head.StatusCode, get.status)
		}
	}

	s.covered(t, map[string]string{
		"GET / 503":                                "the store unreachable, the node shutting down, or the verification queue full: not made on a healthy node",
		"POST / 503":                               "as GET / 503",
		"POST / 400":                               "a form body whose reading fails (a broken connection): no client sees the answer",
		"GET /ws 503":                              "the node shutting down, or live delivery interrupted",
		"GET /readyz 503":                          "the store unreachable (the store fault tests make it)",
		"POST /callback/{id} 400":                  "a body whose reading fails (a broken connection): the hub sees no answer",
		"POST /callback/{id} 413":                  "content over the fetch size limit: left out for speed",
		"POST /callback/{id} 503":                  "the store unreachable",
		"GET /callback/{id} 503":                   "the store unreachable",
		"GET /admin/api/users 503":                 "the store unreachable",
		"GET /admin/api/overview 503":              "the store unreachable",
		"POST /admin/api/users 503":                "the store unreachable",
		"DELETE /admin/api/users/{login} 503":      "the store unreachable",
		"POST /admin/api/users/{login}/rotate 503": "the store unreachable",
		"GET /admin/api/topics 503":                "the store unreachable",
		"GET /admin/api/deliveries 503":            "the store unreachable",
		"POST /admin/api/deliveries/retry 503":     "the store unreachable",
		"GET /admin/api/nodes 503":                 "the store unreachable",
	})
}

// fatPingQuiet stores items by fat ping, outside the description's
// checks (from a stream's reader, while the stream is read).
func fatPingQuiet(base, creds, topic, body string) {
	login, token, _ := strings.Cut(creds, ":")
	req, _ := http.NewRequest("POST", base+"/?hub.mode=publish&hub.topic="+url.QueryEscape(topic), strings.NewReader(body))
	req.SetBasicAuth(login, token)
	req.Header.Set("Content-Type", "application/rss+xml")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// slowBody sends a form body that never arrives in full and returns the
// gateway's answer (408 after --body-timeout).
func slowBody(t *testing.T, s *spec, method, addr, creds string) exchange {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "%s /?hub.mode=list HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nhub.mode=li",
		method, addr, base64.StdEncoding.EncodeToString([]byte(creds)))
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s with a slow body: no answer: %v", method, err)
	}
	body, _ := io.ReadAll(resp.Body)
	req, _ := http.NewRequest(method, "http://"+addr+"/?hub.mode=list", nil)
	x := exchange{req: req, status: resp.StatusCode, header: resp.Header, body: body}
	s.check(t, x)
	return x
}
