package stream_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// TestThroughServer runs the hub and the stream and poll services behind
// the server package's engine, as cmd/gateway wires them: streams, /ws,
// long-polls and /readyz.
func TestThroughServer(t *testing.T) {
	st := openEmbedded(t)
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	h, err := live.New(st, live.Options{HubURL: "https://hub.example/", Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	rs := retrieve.New(st, retrieve.Options{HubURL: "https://hub.example/"})
	b, err := stream.New(h, rs, stream.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(server.Config{
		Role:     server.RoleAll,
		Store:    st,
		Auth:     auth.NewAuthenticator(st, time.Minute),
		Retrieve: rs,
		Stream:   b,
		Poll:     poll.New(h, rs),
		Live:     h,
		Registry: reg,
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { b.Close(); h.Close() })
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "bob", Rights: []store.Right{store.RightRetrieve}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutSubscription(ctx, store.Subscription{Login: "bob", Topic: topicA, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	authz := base64.StdEncoding.EncodeToString([]byte("bob:" + token))

	probe := &http.Client{Timeout: waitFor}
	testkit.Eventually(t, waitFor, "/readyz", func() bool {
		resp, err := probe.Get(srv.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// NDJSON, authenticated by the query string as a browser would.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, srv.URL+"/?"+query([]string{topicA}, "hub.mode", "retrieve", "wait", "stream", "format", "json", "authorization", authz), nil)
	headTimer := time.AfterFunc(waitFor, cancel)
	resp, err := http.DefaultClient.Do(req)
	if !headTimer.Stop() {
		t.Fatalf("stream: no response head within %v (%v)", waitFor, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != stream.ContentTypeNDJSON {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream: %s %s", resp.Status, body)
	}
	c := newNDJSONClient(t, resp, cancel)
	defer c.close()
	c.next(waitFor)

	dialer := websocket.Dialer{HandshakeTimeout: waitFor}
	ws, _, err := dialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?"+query([]string{topicA}, "authorization", authz), nil)
	if err != nil {
		t.Fatalf("/ws: %v", err)
	}
	defer ws.Close()
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}

	var seq atomic.Int64
	if _, err := publish(st, topicA, 1, &seq); err != nil {
		t.Fatal(err)
	}
	if got := c.next(waitFor); len(got.Items) != 1 {
		t.Fatalf("stream notification %+v", got)
	}
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	if _, m, err := ws.ReadMessage(); err != nil || !strings.Contains(string(m), `"items":[{`) {
		t.Fatalf("/ws notification %s, %v", m, err)
	}

	pctx, pcancel := context.WithTimeout(ctx, waitFor)
	defer pcancel()
	preq, _ := http.NewRequestWithContext(pctx, http.MethodGet, srv.URL+"/?"+query([]string{topicA}, "hub.mode", "retrieve", "wait", "poll", "format", "json", "timeout", "1", "after", "0000000000000001", "authorization", authz), nil)
	presp, err := http.DefaultClient.Do(preq)
	if err != nil {
		t.Fatalf("poll: not answered within %v: %v", waitFor, err)
	}
	body, _ := io.ReadAll(presp.Body)
	presp.Body.Close()
	if presp.StatusCode != 200 || !strings.Contains(string(body), `"items":[]`) {
		t.Fatalf("poll: %s %s", presp.Status, body)
	}
	if got := testkit.Metric(t, reg, "feedgate_live_connections", "kind", "websocket"); got != 1 {
		t.Errorf("websocket connections gauge = %v", got)
	}
}
