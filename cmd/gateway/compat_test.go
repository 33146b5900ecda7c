package main_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/testkit"
)

// hookPost is one POST a webhook receiver got.
type hookPost struct {
	path   string
	header http.Header
	body   []byte
}

// hookServer is a loopback WebSub subscriber: it echoes challenges and
// records POSTs; the first POST to a path in failOnce is answered 500.
type hookServer struct {
	*httptest.Server
	posts    chan hookPost
	mu       sync.Mutex
	failOnce map[string]bool
}

func newHookServer(t *testing.T, failOnce ...string) *hookServer {
	h := &hookServer{posts: make(chan hookPost, 64), failOnce: map[string]bool{}}
	for _, p := range failOnce {
		h.failOnce[p] = true
	}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		body, _ := io.ReadAll(r.Body)
		h.posts <- hookPost{r.URL.Path, r.Header.Clone(), body}
		h.mu.Lock()
		fail := h.failOnce[r.URL.Path]
		delete(h.failOnce, r.URL.Path)
		h.mu.Unlock()
		if fail {
			http.Error(w, "not now", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) next(t *testing.T, what string) hookPost {
	t.Helper()
	select {
	case p := <-h.posts:
		return p
	case <-time.After(10 * time.Second):
		t.Fatalf("no POST within 10 s: %s", what)
		return hookPost{}
	}
}

// anonCall sends a request without an Authorization header: the
// credential, if any, is a parameter.
func anonCall(t *testing.T, method, u, ctype, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func atomDoc(entries ...string) string {
	var b strings.Builder
	b.WriteString(`<feed xmlns="http://www.w3.org/2005/Atom"><title>Compat</title><id>urn:compat</id>`)
	for i := len(entries) - 1; i >= 0; i-- {
		ts := time.Date(2026, 11, 22, 10, 0, i, 0, time.UTC).Format(time.RFC3339)
		b.WriteString(`<entry><id>` + entries[i] + `</id><title>` + entries[i] + `</title><updated>` + ts + `</updated><link href="https://compat.example/` + url.PathEscape(entries[i]) + `"/></entry>`)
	}
	b.WriteString(`</feed>`)
	return b.String()
}

func fatPing(t *testing.T, base, creds, topic, doc string) {
	t.Helper()
	if code, body := call(t, "POST", base+"/?hub.mode=publish&hub.topic="+url.QueryEscape(topic), creds, "application/atom+xml", doc); code != 200 {
		t.Fatalf("fat ping of %s: %d %s", topic, code, body)
	}
}

// TestSuperfeedrWebhooks runs a gateway configured for sha1 signatures and
// checks what a Superfeedr subscriber relies on, through real listeners:
// authorization= in a form body, the delivery headers, the retry marker,
// hub.mode=replay, and hub.mode=retrieve by hub.callback.
func TestSuperfeedrWebhooks(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_ALLOW_PRIVATE=true",
		"FEEDGATE_PUBLIC_URL=http://" + addr, "FEEDGATE_WEBHOOK_SIGNATURE=sha1"}
	p := start(t, addr, env)
	creds := "rack:" + userAdd(t, env, "rack", "--rights", "subscribe,unsubscribe,list,retrieve,publish")
	auth := base64.StdEncoding.EncodeToString([]byte(creds))
	hooks := newHookServer(t, "/b")
	topicA, topicB := "https://compat.example/a.xml", "https://compat.example/b.xml"
	cbA, cbB := hooks.URL+"/a?feed=1", hooks.URL+"/b"

	// rack-superfeedr: every parameter, the credential too, in the form body.
	for _, s := range []url.Values{
		{"hub.mode": {"subscribe"}, "hub.topic": {topicA}, "hub.callback": {cbA}, "hub.secret": {"s3cret"}, "format": {"json"}, "authorization": {auth}},
		{"hub.mode": {"subscribe"}, "hub.topic": {topicB}, "hub.callback": {cbB}, "authorization": {auth}},
	} {
		if code, body := anonCall(t, "POST", p.url+"/", "application/x-www-form-urlencoded", s.Encode()); code != 204 {
			t.Fatalf("subscribe with authorization= in the body: %d %s", code, body)
		}
	}

	fatPing(t, p.url, creds, topicA, strings.Replace(atomDoc("urn:a:1", "urn:a:2"), "<title>urn:a:2</title>", `<title>urn:a:2</title><content type="text">a &lt;b&gt; tag</content>`, 1))
	d := hooks.next(t, "the delivery of topic A")
	// Text stays text in a webhook too: content is HTML, so it is escaped.
	var delivered struct {
		Items []struct{ ID, Content string } `json:"items"`
	}
	if err := json.Unmarshal(d.body, &delivered); err != nil || len(delivered.Items) != 2 || delivered.Items[0].Content != "a &lt;b&gt; tag" {
		t.Fatalf("delivered items %+v (%v); want urn:a:2 with the content a &lt;b&gt; tag", delivered.Items, err)
	}
	if d.path != "/a" || d.header.Get("X-PubSubHubbub-Topic") != topicA || d.header.Get("X-PubSubHubbub-Callback") != cbA {
		t.Fatalf("delivery to %s with X-PubSubHubbub-Topic %q, X-PubSubHubbub-Callback %q; want %s and %s",
			d.path, d.header.Get("X-PubSubHubbub-Topic"), d.header.Get("X-PubSubHubbub-Callback"), topicA, cbA)
	}
	mac := hmac.New(sha1.New, []byte("s3cret"))
	mac.Write(d.body)
	if got, want := d.header.Get("X-Hub-Signature"), "sha1="+hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("X-Hub-Signature %q, want %q (FEEDGATE_WEBHOOK_SIGNATURE=sha1)", got, want)
	}
	if d.header.Get("Feedgate-Cursor") != "0000000000000002" || d.header.Get("X-Superfeedr-Retried") != "" ||
		!strings.Contains(strings.Join(d.header.Values("Link"), ","), `<`+topicA+`>; rel="self"`) {
		t.Fatalf("delivery headers %v", d.header)
	}

	// A failed POST is retried, marked as such.
	fatPing(t, p.url, creds, topicB, atomDoc("urn:b:1"))
	if first := hooks.next(t, "the first POST to B"); first.header.Get("X-Superfeedr-Retried") != "" {
		t.Fatalf("a first attempt carries X-Superfeedr-Retried: %v", first.header)
	}
	if retry := hooks.next(t, "the retry to B"); retry.path != "/b" || retry.header.Get("X-Superfeedr-Retried") != "1" {
		t.Fatalf("the retry to %s carries X-Superfeedr-Retried %q, want 1", retry.path, retry.header.Get("X-Superfeedr-Retried"))
	}

	// Replay, as rack-superfeedr sends it: a GET with the credential in the query.
	q := url.Values{"hub.mode": {"replay"}, "hub.topic": {topicA}, "hub.callback": {cbA}, "count": {"1"}, "authorization": {auth}}
	if code, body := anonCall(t, "GET", p.url+"/?"+q.Encode(), "", ""); code != 204 {
		t.Fatalf("replay: %d %s", code, body)
	}
	r := hooks.next(t, "the replay")
	var n struct {
		Items []struct{ ID string } `json:"items"`
	}
	if err := json.Unmarshal(r.body, &n); err != nil || len(n.Items) != 1 || n.Items[0].ID != "urn:a:2" || r.header.Get("Feedgate-Replay") != "true" {
		t.Fatalf("replayed %s %v: %s", r.path, r.header, r.body)
	}
	q.Set("hub.callback", hooks.URL+"/nowhere")
	if code, body := anonCall(t, "GET", p.url+"/?"+q.Encode(), "", ""); code != 404 {
		t.Fatalf("replay to a callback without a subscription: %d %s", code, body)
	}

	// Retrieve by callback, % matching both callbacks.
	base := p.url + "/?hub.mode=retrieve&hub.callback=" + url.QueryEscape(hooks.URL+"/%") + "&count=5"
	code, body := call(t, "GET", base+"&format=json", creds, "", "")
	var m struct {
		Items []struct {
			ID     string `json:"id"`
			Source struct {
				Feed string `json:"feed"`
			} `json:"source"`
		} `json:"items"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("retrieve by callback: %d %s", code, body)
	}
	var got []string
	for _, it := range m.Items {
		got = append(got, it.ID+" "+it.Source.Feed)
	}
	// Newest first by date: b:1 and a:1 share a date, a:2 is a second later.
	if want := []string{"urn:a:2 " + topicA, "urn:a:1 " + topicA, "urn:b:1 " + topicB}; !slices.Equal(got, want) {
		t.Fatalf("retrieve by callback items %q, want %q", got, want)
	}
	code, body = call(t, "GET", base, creds, "", "")
	var feed struct {
		Entries []struct {
			ID     string `xml:"id"`
			Source struct {
				Links []struct {
					Rel  string `xml:"rel,attr"`
					Href string `xml:"href,attr"`
				} `xml:"link"`
			} `xml:"source"`
		} `xml:"entry"`
	}
	if code != 200 || xml.Unmarshal([]byte(body), &feed) != nil || len(feed.Entries) != 3 ||
		len(feed.Entries[2].Source.Links) != 1 || feed.Entries[2].Source.Links[0].Href != topicB {
		t.Fatalf("retrieve by callback as Atom: %d %s", code, body)
	}
	if code, body := call(t, "GET", base+"&callback=cb", creds, "", ""); code != 200 || !strings.HasPrefix(body, "/**/cb({") {
		t.Fatalf("retrieve by callback as JSONP: %d %s", code, body)
	}
	if code, body := call(t, "GET", p.url+"/?hub.mode=retrieve&format=json&hub.callback="+url.QueryEscape("https://other.example/%"), creds, "", ""); code != 404 {
		t.Fatalf("retrieve by a callback nobody used: %d %s", code, body)
	}
}

// ndjsonLines opens a wait=stream&format=json retrieve and sends each
// non-blank line.
func ndjsonLines(t *testing.T, base, creds, topic string) <-chan map[string]any {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/?hub.mode=retrieve&wait=stream&format=json&count=1&hub.topic="+url.QueryEscape(topic), nil)
	login, token, _ := strings.Cut(creds, ":")
	req.SetBasicAuth(login, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("open stream: %v %v", err, resp)
	}
	out := make(chan map[string]any, 16)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if len(sc.Bytes()) == 0 {
				continue
			}
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				out <- m
			}
		}
	}()
	return out
}

func nextLine(t *testing.T, lines <-chan map[string]any, what string) map[string]any {
	t.Helper()
	select {
	case m, ok := <-lines:
		if !ok {
			t.Fatalf("the stream ended before %s", what)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no line within 10 s: %s", what)
		return nil
	}
}

type statusView struct {
	Code      int    `json:"code"`
	HTTP      string `json:"http"`
	Period    int64  `json:"period"`
	LastFetch int64  `json:"lastFetch"`
	NextFetch int64  `json:"nextFetch"`
}

func statusOf(t *testing.T, m map[string]any) statusView {
	t.Helper()
	b, _ := json.Marshal(m["status"])
	var s statusView
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNotificationStatus: a notification carries the status of the fetch
// or push that brought its items, never the one before, and period and
// nextFetch say the same.
func TestNotificationStatus(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_PUBLIC_URL=http://" + addr}
	p := start(t, addr, env)
	creds := "st:" + userAdd(t, env, "st", "--rights", "subscribe,retrieve,publish")

	// Pushes: each notification says what its own document held.
	pushed := "https://compat.example/pushed.xml"
	if code, body := form(t, p.url, creds, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {pushed}}); code != 204 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	// Subscribing fetched the topic once (its host does not resolve); a
	// fetch writes the status too, so wait for it to be done.
	testkit.Eventually(t, 10*time.Second, "the first fetch of the pushed topic", func() bool {
		code, body := call(t, "GET", p.url+"/?hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(pushed), creds, "", "")
		var m map[string]any
		return code == 200 && json.Unmarshal([]byte(body), &m) == nil && statusOf(t, m).LastFetch != 0
	})
	fatPing(t, p.url, creds, pushed, atomDoc("urn:p:1"))
	lines := ndjsonLines(t, p.url, creds, pushed)
	nextLine(t, lines, "the first answer")
	fatPing(t, p.url, creds, pushed, atomDoc("urn:p:1", "urn:p:2"))
	if st := statusOf(t, nextLine(t, lines, "the notification of the second push")); st.HTTP != "published: 2 entries parsed" {
		t.Fatalf("the second push's notification says %q", st.HTTP)
	}
	fatPing(t, p.url, creds, pushed, atomDoc("urn:p:1", "urn:p:2", "urn:p:3"))
	if st := statusOf(t, nextLine(t, lines, "the notification of the third push")); st.HTTP != "published: 3 entries parsed" {
		t.Fatalf("the third push's notification says %q", st.HTTP)
	}

	// Polls: a fetch's notification carries that fetch's status.
	var doc atomic.Value
	doc.Store(atomDoc("urn:f:1"))
	var fetches atomic.Int32
	feedSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/atom+xml")
		io.WriteString(w, doc.Load().(string))
	}))
	defer feedSrv.Close()
	polled := feedSrv.URL + "/feed.xml"
	if code, body := form(t, p.url, creds, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {polled}}); code != 204 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	lines = ndjsonLines(t, p.url, creds, polled)
	first := nextLine(t, lines, "the first answer")
	if items, _ := first["items"].([]any); len(items) == 0 {
		// The first fetch had not stored its item yet: it comes as a notification.
		first = nextLine(t, lines, "the first fetch's notification")
	}
	before := statusOf(t, first)
	doc.Store(atomDoc("urn:f:1", "urn:f:2", "urn:f:3"))
	if code, body := call(t, "POST", p.url+"/?hub.mode=publish&hub.url="+url.QueryEscape(polled), creds, "", ""); code != 204 {
		t.Fatalf("publish ping: %d %s", code, body)
	}
	n := nextLine(t, lines, "the notification of the pinged fetch")
	st := statusOf(t, n)
	if st.Code != 200 || st.HTTP != "200 OK: 3 entries parsed" || st.LastFetch < before.LastFetch || st.Period <= 0 || st.NextFetch != st.LastFetch+st.Period {
		t.Fatalf("the pinged fetch's notification has status %+v (the one before: %+v); want this fetch's, with nextFetch = lastFetch + period", st, before)
	}
	if items, _ := n["items"].([]any); len(items) != 2 {
		t.Fatalf("notification items %v, want the 2 new entries", n["items"])
	}
	code, body := call(t, "GET", p.url+"/?hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(polled), creds, "", "")
	var m map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("retrieve: %d %s", code, body)
	}
	if now := statusOf(t, m); now != st {
		t.Fatalf("retrieve's status %+v differs from the notification's %+v though nothing happened since", now, st)
	}
}
