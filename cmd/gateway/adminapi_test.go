package main_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
)

// adminCall makes a JSON call to the admin API.
func adminCall(t *testing.T, method, u, creds, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, u, rd)
	if creds != "" {
		login, token, _ := strings.Cut(creds, ":")
		req.SetBasicAuth(login, token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminAPI drives the admin API on the admin listener of a running
// gateway: who may call it, users and tokens (add, rotate, remove),
// topics with their fetch state and subscribers, webhook subscriptions and
// their failures, live connections and the node.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	addr, adminAddr := freeAddr(t), freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_ADMIN_LISTEN=" + adminAddr, "FEEDGATE_DATA_DIR=" + t.TempDir(),
		"FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_PUBLIC_URL=http://" + addr, "FEEDGATE_AUTH_CACHE=1s"}
	p := start(t, addr, env)
	root := "root:" + userAdd(t, env, "root", "--rights", "all")
	reader := "reader:" + userAdd(t, env, "reader", "--rights", "retrieve,subscribe")
	ad := "http://" + adminAddr + "/admin/api"

	if code, body := adminCall(t, "GET", ad+"/users", "", ""); code != 401 || !strings.Contains(body, `"code":401`) {
		t.Errorf("no credentials: %d %s", code, body)
	}
	if code, body := adminCall(t, "GET", ad+"/users", reader, ""); code != 403 || !strings.Contains(body, "admin right") {
		t.Errorf("without the admin right: %d %s", code, body)
	}
	if code, body := adminCall(t, "GET", ad+"/nope", root, ""); code != 404 || !strings.Contains(body, `"error"`) {
		t.Errorf("unknown route: %d %s", code, body)
	}
	if code, _ := call(t, "GET", p.url+"/metrics", "", "", ""); code == 200 {
		t.Error("/metrics answered on the public port with --admin-listen set")
	}
	if code, body := adminCall(t, "GET", "http://"+adminAddr+"/metrics", "", ""); code != 200 || !strings.Contains(body, "feedgate_build_info") {
		t.Errorf("/metrics on the admin port: %d", code)
	}

	// Users and tokens.
	code, body := adminCall(t, "POST", ad+"/users", root, `{"login":"carol","rights":["retrieve","list"],"topics":["https://x.example/*"],"expires":"720h"}`)
	var tok struct {
		Login, Token string
		Expires      time.Time
	}
	if code != 201 || json.Unmarshal([]byte(body), &tok) != nil || tok.Token == "" || time.Until(tok.Expires) < 700*time.Hour {
		t.Fatalf("add user: %d %s", code, body)
	}
	if code, _ := call(t, "GET", p.url+"/?hub.mode=list", "carol:"+tok.Token, "", ""); code != 200 {
		t.Fatalf("the new token does not work: %d", code)
	}
	for _, bad := range []string{`{"login":"carol","rights":["list"]}`, `{"login":"dave","rights":["fly"]}`, `{"login":""}`, `{"login":"erin","colour":"red"}`, `not json`} {
		code, body := adminCall(t, "POST", ad+"/users", root, bad)
		if code != 409 && code != 422 || !strings.Contains(body, `"message"`) {
			t.Errorf("add %s: %d %s", bad, code, body)
		}
	}
	code, body = adminCall(t, "GET", ad+"/users", root, "")
	if code != 200 || !strings.Contains(body, `"login":"carol"`) || strings.Contains(body, tok.Token) {
		t.Errorf("list users: %d %s", code, body)
	}
	code, body = adminCall(t, "POST", ad+"/users/carol/rotate", root, "")
	var rot struct{ Token string }
	if code != 200 || json.Unmarshal([]byte(body), &rot) != nil || rot.Token == "" || rot.Token == tok.Token {
		t.Fatalf("rotate: %d %s", code, body)
	}
	testkit.Eventually(t, 10*time.Second, "the rotated-out token refused", func() bool {
		code, _ := call(t, "GET", p.url+"/?hub.mode=list", "carol:"+tok.Token, "", "")
		return code == 401
	})
	if code, _ := call(t, "GET", p.url+"/?hub.mode=list", "carol:"+rot.Token, "", ""); code != 200 {
		t.Errorf("the rotated token does not work: %d", code)
	}
	if code, _ := adminCall(t, "POST", ad+"/users/nobody/rotate", root, ""); code != 404 {
		t.Errorf("rotate an unknown user: %d", code)
	}
	if code, body := adminCall(t, "DELETE", ad+"/users/carol", root, ""); code != 204 {
		t.Errorf("remove: %d %s", code, body)
	}
	if code, _ := adminCall(t, "DELETE", ad+"/users/carol", root, ""); code != 404 {
		t.Errorf("remove twice: %d", code)
	}

	// Topics, deliveries, connections.
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query().Get("hub.challenge"); q != "" {
			io.WriteString(w, q)
			return
		}
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/rss+xml")
			io.WriteString(w, feedDoc)
			return
		}
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer dead.Close()
	topic := dead.URL + "/feed"
	if code, body := form(t, p.url, reader, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {dead.URL + "/hook"}}); code != 204 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	login, token, _ := strings.Cut(reader, ":")
	req, _ := http.NewRequest("GET", p.url+"/?hub.mode=retrieve&wait=stream&format=json&hub.topic="+url.QueryEscape(topic), nil)
	req.SetBasicAuth(login, token)
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, stream)
	}
	defer stream.Body.Close()

	var topics []struct {
		Topic       string
		Subscribers int
		Callbacks   int
		Status      struct{ Code int }
	}
	testkit.Eventually(t, 10*time.Second, "the topic fetched and listed", func() bool {
		_, body := adminCall(t, "GET", ad+"/topics", root, "")
		json.Unmarshal([]byte(body), &topics)
		return len(topics) == 1 && topics[0].Status.Code == 200
	})
	if topics[0].Topic != topic || topics[0].Subscribers != 1 || topics[0].Callbacks != 1 {
		t.Errorf("topics: %+v", topics)
	}
	var dl []struct {
		Topic, Callback, Login string
		Failing                bool
		Progress               struct{ LastError string }
	}
	testkit.Eventually(t, 10*time.Second, "the failing delivery listed", func() bool {
		_, body := adminCall(t, "GET", ad+"/deliveries", root, "")
		json.Unmarshal([]byte(body), &dl)
		return len(dl) == 1 && dl[0].Failing
	})
	if dl[0].Login != "reader" || !strings.Contains(dl[0].Progress.LastError, "500") || dl[0].Callback != dead.URL+"/hook" {
		t.Errorf("deliveries: %+v", dl)
	}
	code, body = adminCall(t, "GET", ad+"/connections", root, "")
	if code != 200 || !strings.Contains(body, `{"login":"reader","kind":"ndjson","count":1}`) || !strings.Contains(body, `"total":1`) {
		t.Errorf("connections: %d %s", code, body)
	}
	code, body = adminCall(t, "GET", ad+"/nodes", root, "")
	if code != 200 || !strings.Contains(body, `"self":true`) || !strings.Contains(body, `"connections":1`) || !strings.Contains(body, `"store":"embedded"`) {
		t.Errorf("nodes: %d %s", code, body)
	}
}

// TestAdminRetryNow has a webhook subscriber fail with 503 and Retry-After
// an hour, then recover: the admin API's retry delivers at once, without
// waiting for the back-off.
func TestAdminRetryNow(t *testing.T) {
	t.Parallel()
	addr, adminAddr := freeAddr(t), freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_ADMIN_LISTEN=" + adminAddr, "FEEDGATE_DATA_DIR=" + t.TempDir(),
		"FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_PUBLIC_URL=http://" + addr}
	p := start(t, addr, env)
	root := "root:" + userAdd(t, env, "root", "--rights", "all")
	ad := "http://" + adminAddr + "/admin/api"

	var healthy atomic.Bool
	posts := make(chan []byte, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Query().Get("hub.challenge") != "":
			io.WriteString(w, r.URL.Query().Get("hub.challenge"))
		case r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "application/rss+xml")
			io.WriteString(w, feedDoc)
		case !healthy.Load():
			w.Header().Set("Retry-After", "3600")
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		default:
			b, _ := io.ReadAll(r.Body)
			posts <- b
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	topic, hook := srv.URL+"/feed", srv.URL+"/hook"
	sub := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {hook}, "format": {"json"}}
	if code, body := form(t, p.url, root, sub); code != 204 {
		t.Fatalf("subscribe: %d %s", code, body)
	}

	type delivery struct {
		Topic, Callback, Login string
		Failing, InProgress    bool
		Queued                 int
		NextAttempt            time.Time
		Progress               struct {
			Attempts, Succeeded int
			LastError           string
		}
	}
	var dl []delivery
	testkit.Eventually(t, 20*time.Second, "the delivery failing and backing off for the hour the callback asked", func() bool {
		_, body := adminCall(t, "GET", ad+"/deliveries", root, "")
		dl = nil
		json.Unmarshal([]byte(body), &dl)
		return len(dl) == 1 && dl[0].Failing && !dl[0].InProgress && time.Until(dl[0].NextAttempt) > 30*time.Minute
	})
	if d := dl[0]; d.Queued != 2 || d.Progress.Attempts != 1 || !strings.Contains(d.Progress.LastError, "503") {
		t.Fatalf("failing delivery: %+v", d)
	}

	for _, bad := range []struct {
		body string
		code int
	}{
		{`{"login":"root","topic":"` + topic + `"}`, 422},
		{`{"login":"root","topic":"` + topic + `","callback":"` + srv.URL + `/other"}`, 404},
		{`{"login":"nobody","topic":"` + topic + `","callback":"` + hook + `"}`, 404},
		{`[]`, 422},
	} {
		if code, body := adminCall(t, "POST", ad+"/deliveries/retry", root, bad.body); code != bad.code || !strings.Contains(body, `"message"`) {
			t.Errorf("retry %s: %d %s, want %d", bad.body, code, body, bad.code)
		}
	}

	healthy.Store(true)
	code, body := adminCall(t, "POST", ad+"/deliveries/retry", root, `{"login":"root","topic":"`+topic+`","callback":"`+hook+`"}`)
	var retried delivery
	if code != 202 || json.Unmarshal([]byte(body), &retried) != nil || retried.Callback != hook || time.Until(retried.NextAttempt) > 5*time.Second {
		t.Fatalf("retry now: %d %s", code, body)
	}
	select {
	case b := <-posts:
		var n struct {
			Items []struct{ ID string } `json:"items"`
		}
		if err := json.Unmarshal(b, &n); err != nil || len(n.Items) != 2 {
			t.Fatalf("delivery after retry now: %v %s", err, b)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no delivery within 15 s of retry now (the back-off had an hour to run)\n%s", p.logs.String())
	}
	testkit.Eventually(t, 10*time.Second, "the delivery listed as healthy", func() bool {
		_, body := adminCall(t, "GET", ad+"/deliveries", root, "")
		dl = nil
		json.Unmarshal([]byte(body), &dl)
		return len(dl) == 1 && !dl[0].Failing && dl[0].Queued == 0 && dl[0].Progress.Succeeded == 1
	})
}

// adminNode is a node of GET /admin/api/nodes.
type adminNode struct {
	ID, Role, Version, PublicURL, AdminURL, Store string
	Self                                          bool
	Started, Seen                                 time.Time
	Connections                                   int
	ByKind                                        map[string]int
	ByUser                                        []struct {
		Login, Kind string
		Count       int
	}
	TopicConnections map[string]int
}

func adminNodes(t *testing.T, ad, creds string) []adminNode {
	t.Helper()
	code, body := adminCall(t, "GET", ad+"/nodes", creds, "")
	var ns []adminNode
	if code != 200 || json.Unmarshal([]byte(body), &ns) != nil {
		t.Fatalf("nodes: %d %s", code, body)
	}
	return ns
}

func nodeIDs(ns []adminNode) string {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
		if n.Self {
			ids[i] += "*"
		}
	}
	return strings.Join(ids, " ")
}

// TestAdminNodes runs two gateways on one Redis: each lists both, with
// the other's live connections as its heartbeat counted them; a node that
// stops leaves the list at once, one that is killed when its record
// expires.
func TestAdminNodes(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	feedSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/rss+xml")
		io.WriteString(w, feedDoc)
	}))
	defer feedSrv.Close()
	addrA, adminA, addrB, adminB := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	common := []string{"FEEDGATE_REDIS_URL=" + rs.URL(), "FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_NODE_HEARTBEAT=300ms"}
	envA := append([]string{"FEEDGATE_LISTEN=" + addrA, "FEEDGATE_ADMIN_LISTEN=" + adminA, "FEEDGATE_PUBLIC_URL=http://" + addrA,
		"FEEDGATE_NODE_ID=node-a"}, common...)
	envB := append([]string{"FEEDGATE_LISTEN=" + addrB, "FEEDGATE_ADMIN_LISTEN=" + adminB, "FEEDGATE_PUBLIC_URL=http://" + addrB,
		"FEEDGATE_ROLE=api"}, common...)
	start(t, addrA, envA)
	b := start(t, addrB, envB)
	root := "root:" + userAdd(t, nil, "root", "--rights", "all", "--redis-url", rs.URL())
	adA, adB := "http://"+adminA+"/admin/api", "http://"+adminB+"/admin/api"
	host, _ := os.Hostname()
	_, portB, _ := net.SplitHostPort(addrB)
	idB := host + ":" + portB

	// A stream on node B.
	topic := feedSrv.URL + "/feed"
	if code, body := form(t, b.url, root, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}); code != 204 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	login, token, _ := strings.Cut(root, ":")
	req, _ := http.NewRequest("GET", b.url+"/?hub.mode=retrieve&wait=stream&format=json&hub.topic="+url.QueryEscape(topic), nil)
	req.SetBasicAuth(login, token)
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, stream)
	}
	defer stream.Body.Close()

	var ns []adminNode
	testkit.Eventually(t, 15*time.Second, "node A listing both nodes, with B's stream", func() bool {
		ns = adminNodes(t, adA, root)
		return len(ns) == 2 && ns[0].Connections+ns[1].Connections == 1
	})
	if got, want := nodeIDs(ns), "node-a* "+idB; got != want && nodeIDs(ns) != idB+" node-a*" {
		t.Fatalf("nodes seen by A: %s, want %s", got, want)
	}
	var nb adminNode
	for _, n := range ns {
		if n.ID == idB {
			nb = n
		}
	}
	if nb.Role != "api" || nb.PublicURL != "http://"+addrB || nb.AdminURL != "http://"+adminB+"/admin/" || nb.Version == "" ||
		nb.Started.IsZero() || time.Since(nb.Seen) > time.Minute || !strings.HasPrefix(nb.Store, "redis") ||
		nb.ByKind["ndjson"] != 1 || len(nb.ByUser) != 1 || nb.ByUser[0].Login != "root" || nb.TopicConnections[topic] != 1 {
		t.Errorf("node B as A sees it: %+v", nb)
	}
	if got := nodeIDs(adminNodes(t, adB, root)); !strings.Contains(got, idB+"*") || !strings.Contains(got, "node-a") {
		t.Errorf("nodes seen by B: %s", got)
	}

	// B stops: it leaves the list at once.
	stream.Body.Close()
	b.stop(t)
	testkit.Eventually(t, 5*time.Second, "node B gone from the list after its graceful stop", func() bool {
		return nodeIDs(adminNodes(t, adA, root)) == "node-a*"
	})
	// B is killed: it leaves the list when its record expires.
	b = start(t, addrB, envB)
	testkit.Eventually(t, 15*time.Second, "node B back in the list", func() bool { return len(adminNodes(t, adA, root)) == 2 })
	b.cmd.Process.Kill()
	testkit.Eventually(t, 15*time.Second, "node B gone from the list after it was killed (three heartbeats)", func() bool {
		return nodeIDs(adminNodes(t, adA, root)) == "node-a*"
	})
}

// TestAdminConsoleAndEvents: the console's page and assets on the admin
// listener, the overview, its event stream (an event at once, more as
// things change, an end when the token is rotated), and the guards of the
// admin API against browsers (no Basic prompt for the console, no
// cross-origin writes).
func TestAdminConsoleAndEvents(t *testing.T) {
	t.Parallel()
	addr, adminAddr := freeAddr(t), freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_ADMIN_LISTEN=" + adminAddr, "FEEDGATE_DATA_DIR=" + t.TempDir(),
		"FEEDGATE_PUBLIC_URL=http://" + addr, "FEEDGATE_NODE_ID=solo", "FEEDGATE_AUTH_CACHE=1s"}
	start(t, addr, env)
	root := "root:" + userAdd(t, env, "root", "--rights", "all")
	base := "http://" + adminAddr

	for _, c := range []struct{ path, ctype string }{{"/admin/", "text/html"}, {"/admin/console.js", "text/javascript"}, {"/admin/console.css", "text/css"}} {
		resp, err := http.Get(base + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") || len(b) == 0 {
			t.Errorf("GET %s: %d %v", c.path, resp.StatusCode, resp.Header)
		}
	}
	if code, body := adminCall(t, "GET", base+"/admin/nope.js", "", ""); code != 404 {
		t.Errorf("GET /admin/nope.js: %d %s", code, body)
	}

	// The console's calls get no Basic challenge; other clients do.
	for _, console := range []bool{false, true} {
		req, _ := http.NewRequest("GET", base+"/admin/api/users", nil)
		if console {
			req.Header.Set("X-Feedgate-Console", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if challenge := resp.Header.Get("WWW-Authenticate") != ""; resp.StatusCode != 401 || challenge == console {
			t.Errorf("no credentials (console %v): %d, WWW-Authenticate %q", console, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// A page of another origin cannot make the operator's browser write.
	login, token, _ := strings.Cut(root, ":")
	req, _ := http.NewRequest("POST", base+"/admin/api/users/root/rotate", nil)
	req.SetBasicAuth(login, token)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("cross-site rotate: %d, want 403", resp.StatusCode)
	}

	code, body := adminCall(t, "GET", base+"/admin/api/overview", root, "")
	var o struct {
		Node        string
		Nodes       []adminNode
		Users       []struct{ Login string }
		TopicsTotal int
		Error       string
	}
	if code != 200 || json.Unmarshal([]byte(body), &o) != nil || o.Node != "solo" || len(o.Nodes) != 1 || !o.Nodes[0].Self || len(o.Users) != 2 || o.Error != "" {
		t.Fatalf("overview: %d %s", code, body)
	}

	// The event stream: an overview at once, then one with the new user.
	req, _ = http.NewRequest("GET", base+"/admin/api/events", nil)
	req.SetBasicAuth(login, token)
	events, err := http.DefaultClient.Do(req)
	if err != nil || events.StatusCode != 200 || events.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %v %v", err, events)
	}
	defer events.Body.Close()
	type event struct{ name, data string }
	evs := make(chan event, 64)
	go func() {
		defer close(evs)
		sc := bufio.NewScanner(events.Body)
		sc.Buffer(nil, 1<<20)
		var ev event
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			case line == "" && ev.name != "":
				evs <- ev
				ev = event{}
			}
		}
	}()
	next := func(what string, match func(event) bool) event {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case ev, ok := <-evs:
				if !ok {
					t.Fatalf("the event stream ended before %s", what)
				}
				if match(ev) {
					return ev
				}
			case <-deadline:
				t.Fatalf("no event within 15 s: %s", what)
			}
		}
	}
	next("a first overview", func(ev event) bool { return ev.name == "overview" && strings.Contains(ev.data, `"login":"root"`) })
	if code, body := adminCall(t, "POST", base+"/admin/api/users", root, `{"login":"dora","rights":["retrieve"]}`); code != 201 {
		t.Fatalf("add dora: %d %s", code, body)
	}
	next("an overview with the new user", func(ev event) bool { return ev.name == "overview" && strings.Contains(ev.data, `"login":"dora"`) })
	// Rotating the stream's own token ends it.
	if code, body := adminCall(t, "POST", base+"/admin/api/users/root/rotate", root, ""); code != 200 {
		t.Fatalf("rotate root: %d %s", code, body)
	}
	ev := next("an end event after the token was rotated", func(ev event) bool { return ev.name == "end" })
	if !strings.Contains(ev.data, "rotated") {
		t.Errorf("end event: %s", ev.data)
	}
}
