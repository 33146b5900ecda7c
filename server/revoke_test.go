package server_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/admin"
	"github.com/feedgate/feedgate/auth"
	hubpkg "github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
	"github.com/feedgate/feedgate/stream"
)

const jwtSecret = "server-test-secret-of-at-least-32-bytes!"

// node is one gateway node whose live connections revalidate their
// credential through its authenticator, as `gateway serve` wires them.
type node struct {
	*gateway
	auth *auth.Authenticator
	hub  *hubpkg.Service
}

func newNode(t *testing.T, st store.Store) *node {
	t.Helper()
	reg := prometheus.NewRegistry()
	authn, err := auth.New(st, auth.Options{CacheTTL: 2 * time.Second, JWT: auth.JWTOptions{Secret: []byte(jwtSecret)}})
	if err != nil {
		t.Fatal(err)
	}
	lh, err := live.New(st, live.Options{Registry: reg, Revalidate: authn.Revalidate, RevalidateEvery: authn.RevalidateEvery()})
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.New(st, st.(store.IngestStore), ingest.Options{AllowPrivate: true, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	rs := retrieve.New(st, retrieve.Options{HubURL: "http://" + srv.Listener.Addr().String() + "/"})
	streams, err := stream.New(lh, rs, stream.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	hs := hubpkg.New(st, ing, hubpkg.Options{Live: lh})
	srv.Config.Handler = server.New(server.Config{
		Role: server.RoleAll, Store: st, Auth: authn, Retrieve: rs, Stream: streams,
		Poll: poll.New(lh, rs), Live: lh, Hub: hs, Publish: ing, Registry: reg,
	})
	srv.Start()
	t.Cleanup(func() {
		lh.Shutdown(context.Background())
		srv.Close()
		streams.Close()
		lh.Close()
	})
	return &node{gateway: &gateway{t: t, url: srv.URL, store: st}, auth: authn, hub: hs}
}

type sseEvent struct{ name, id, data string }

// sseStream reads events (and a final "end" when the stream closes).
func sseStream(t *testing.T, u string, header ...string) <-chan sseEvent {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE %s: %s", u, resp.Status)
	}
	t.Cleanup(func() { resp.Body.Close() })
	out := make(chan sseEvent, 100)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					out <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event:"):
				ev.name = strings.TrimSpace(line[6:])
			case strings.HasPrefix(line, "id:"):
				ev.id = strings.TrimSpace(line[3:])
			case strings.HasPrefix(line, "data:"):
				ev.data += strings.TrimSpace(line[5:])
			}
		}
		out <- sseEvent{name: "end"}
	}()
	return out
}

// next returns the next event other than keep-alives within d.
func next(t *testing.T, events <-chan sseEvent, d time.Duration, what string) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatalf("the stream ended before %s", what)
		}
		return ev
	case <-time.After(d):
		t.Fatalf("not within %s: %s", d, what)
		return sseEvent{}
	}
}

func mintJWT(t *testing.T, sub string, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	tok, err := auth.Mint([]byte(jwtSecret), auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), IssuedAt: jwt.NewNumericDate(now),
	}, Rights: []string{"retrieve"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestRemovalEndsStreamsOnEveryNode: a user removed through one node loses
// its SSE stream on another node within 5 s, with a "revoked" event.
func TestRemovalEndsStreamsOnEveryNode(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	open := func() store.Store {
		st, err := redisstore.New(context.Background(), srv.URL(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := newNode(t, open()), newNode(t, open())
	topic := "https://revoke.example/feed"
	creds := a.user("gone", "all")
	a.subscribe(creds, topic)
	a.fatPing(creds, topic, "r-1", "One")
	events := sseStream(t, b.url+"/?hub.mode=retrieve&authorization="+url.QueryEscape(basic(creds))+"&hub.topic="+url.QueryEscape(topic))
	if ev := next(t, events, 10*time.Second, "the first notification"); ev.name != "notification" {
		t.Fatalf("first event %+v", ev)
	}
	removed := time.Now()
	if err := (admin.Direct{Store: a.store, Subscriptions: a.hub, Forget: a.auth.Forget}).Remove(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	for {
		ev := next(t, events, 6*time.Second, "the end of the removed user's stream")
		if ev.name == "revoked" {
			t.Logf("node B ended the stream %s after the removal on node A", time.Since(removed).Round(time.Millisecond))
			if time.Since(removed) > auth.RevocationDelay+500*time.Millisecond {
				t.Fatalf("the stream ended %s after the removal, want within %s", time.Since(removed), auth.RevocationDelay)
			}
			return
		}
		if ev.name == "end" {
			t.Fatal("the stream ended without a revoked event")
		}
	}
}

// TestJWTStreamExpiresAndResumes: an SSE stream opened with a JWT ends
// with an "expired" event when the token expires; reconnecting with a fresh
// token and the last event id loses nothing.
func TestJWTStreamExpiresAndResumes(t *testing.T) {
	t.Parallel()
	n := newNode(t, teststore.Embedded(t, store.Options{}))
	topic := "https://jwt.example/feed"
	creds := n.user("app", "all")
	n.subscribe(creds, topic)
	n.fatPing(creds, topic, "j-1", "One")
	base := n.url + "/?hub.mode=retrieve&hub.topic=" + url.QueryEscape(topic)

	events := sseStream(t, base+"&access_token="+mintJWT(t, "app", 3*time.Second))
	first := next(t, events, 10*time.Second, "the first notification")
	if first.name != "notification" || !strings.Contains(first.data, "j-1") {
		t.Fatalf("first event %+v", first)
	}
	n.fatPing(creds, topic, "j-2", "Two")
	second := next(t, events, 10*time.Second, "j-2 while the token is valid")
	if !strings.Contains(second.data, "j-2") {
		t.Fatalf("second event %+v", second)
	}
	for {
		ev := next(t, events, 10*time.Second, "the expired event")
		if ev.name == "expired" {
			if !strings.Contains(ev.data, "401") {
				t.Fatalf("expired event data %q", ev.data)
			}
			break
		}
		if ev.name == "end" {
			t.Fatal("the stream ended without an expired event")
		}
	}
	// Published while the client fetches a new token.
	n.fatPing(creds, topic, "j-3", "Three")
	resumed := sseStream(t, base+"&access_token="+mintJWT(t, "app", time.Hour), "Last-Event-ID", second.id)
	ev := next(t, resumed, 10*time.Second, "j-3 after resuming")
	if strings.Contains(ev.data, `"j-2"`) || strings.Contains(ev.data, `"j-1"`) || !strings.Contains(ev.data, `"j-3"`) {
		t.Fatalf("resumed with %+v: want j-3 alone", ev)
	}
	// An expired token cannot open a new stream.
	req, _ := http.NewRequest(http.MethodGet, base+"&access_token="+mintJWT(t, "app", -time.Minute), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an expired JWT: %s, want 401", resp.Status)
	}
}
