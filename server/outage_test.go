package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

// TestRedisOutage stops Redis under a running gateway: a fat ping is
// answered 503 with a message (never acknowledged and lost), /readyz turns
// red, and both recover when Redis is back.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.AppendOnly())
	changes := new(store.ChangeHook)
	st, err := redisstore.New(context.Background(), srv.URL(), store.Options{Changes: changes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g := newGateway(t, st, changes)
	g.subscribe(g.admin, topic)
	g.fatPing(g.admin, topic, "urn:1", "One")

	ready := func() int {
		resp, err := http.Get(g.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("readyz before the outage: %d", code)
	}

	srv.Stop()
	a := g.do(http.MethodPost, "hub.mode=publish&hub.topic="+topic, g.admin, strings.NewReader(atomFeed("urn:2", "Two")), "Content-Type", "application/atom+xml")
	if a.code != http.StatusServiceUnavailable || !strings.Contains(a.body, "unavailable") {
		t.Fatalf("fat ping with Redis down: %d %s", a.code, a.body)
	}
	if code := ready(); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis down: %d", code)
	}

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for ready() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("readyz did not recover after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := g.fatPing(g.admin, topic, "urn:2", "Two")
	if out["stored"].(float64) != 1 || out["cursor"] != "0000000000000002" {
		t.Fatalf("fat ping after the outage: %v", out)
	}
}
