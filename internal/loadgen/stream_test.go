package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"
)

func streamConfig(t *testing.T, url string, kind Kind) StreamConfig {
	t.Helper()
	tg, err := ParseTarget(url)
	if err != nil {
		t.Fatal(err)
	}
	return StreamConfig{
		Target: tg, Auth: Auth{"bench", "secret-token-123"}, Topic: "http://t/feed", Kind: kind,
		Clients: 20, Items: 15, Rate: 0, ItemBytes: 50,
		ConnectTimeout: 10 * time.Second, Drain: 3 * time.Second, Settle: 10 * time.Millisecond,
		PollTimeout: 5,
	}
}

func TestStreamKindsDeliverEverything(t *testing.T) {
	for _, kind := range []Kind{KindNDJSON, KindSSE, KindWS, KindPoll} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			_, srv := newFakeHub(t)
			cfg := streamConfig(t, srv.URL, kind)
			cfg.Batch = 2 // an odd item count in pings of 2: the last ping holds 1
			cfg.Body = BodyJSON
			if kind == KindPoll {
				cfg.Rate = 100 // spread the items over several polls
			}
			res, err := RunStream(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			if !res.OK() {
				t.Fatalf("run not clean:\n%s", res)
			}
			if res.Expected != 20*15 || res.Received != res.Expected {
				t.Fatalf("expected %d deliveries, got %d", 20*15, res.Received)
			}
			if res.Latency.N != int(res.Expected) || res.Latency.Max <= 0 || res.Latency.Max > 5*time.Second {
				t.Fatalf("latency summary is off: %+v", res.Latency)
			}
			if res.DeliveriesSec <= 0 || res.Window <= 0 {
				t.Fatalf("no delivery rate: %+v", res)
			}
		})
	}
}

func TestStreamCountsDuplicatesAndDrops(t *testing.T) {
	t.Parallel()
	h, srv := newFakeHub(t)
	h.dupEvery = 5 // every 5th notification twice
	cfg := streamConfig(t, srv.URL, KindNDJSON)
	cfg.Clients = 4
	cfg.Items = 10
	res, err := RunStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicated != 4*2 || res.Lost != 0 || res.OK() {
		t.Fatalf("want 8 duplicates, 0 lost, not OK; got\n%s", res)
	}

	h2, srv2 := newFakeHub(t)
	h2.dropAfter = 3 // streams end after 3 notifications
	cfg = streamConfig(t, srv2.URL, KindSSE)
	cfg.Clients = 4
	cfg.Items = 10
	cfg.Drain = 500 * time.Millisecond
	res, err = RunStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped != 4 || res.Lost != 4*7 || res.Received != 4*3 {
		t.Fatalf("want 4 dropped, 28 lost, 12 received; got\n%s", res)
	}
	if !strings.Contains(res.DropReason.String(), "EOF") {
		t.Fatalf("drop reason should say the stream ended: %s", res.DropReason)
	}
}

func TestPollReconnectsLoseNothing(t *testing.T) {
	t.Parallel()
	h, srv := newFakeHub(t)
	h.closePolls = true // every answer closes the connection
	cfg := streamConfig(t, srv.URL, KindPoll)
	cfg.Clients = 5
	cfg.Items = 12
	cfg.Rate = 200
	res, err := RunStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("run not clean:\n%s", res)
	}
	if res.Reconnects != 0 {
		t.Fatalf("a connection the gateway closes is re-opened, not a reconnect after an error: %d", res.Reconnects)
	}
}

func TestStreamRefusedClientsAreConnectFailures(t *testing.T) {
	t.Parallel()
	h, srv := newFakeHub(t)
	h.maxStreams = 3
	cfg := streamConfig(t, srv.URL, KindNDJSON)
	cfg.Clients = 5
	cfg.Items = 4
	res, err := RunStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 3 || res.ConnectFailures.Total() != 2 || res.OK() {
		t.Fatalf("want 3 connected and 2 failures; got\n%s", res)
	}
	if !strings.Contains(res.String(), "status 429: too many connections") {
		t.Fatalf("the report must say why clients failed:\n%s", res)
	}
	if res.Expected != 3*4 || res.Lost != 0 {
		t.Fatalf("deliveries are counted for connected clients: %s", res)
	}

	// A wrong token fails the set-up with the gateway's answer.
	cfg.Auth = Auth{"bench", "wrong"}
	if _, err := RunStream(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("the set-up with a wrong token must fail with 401, got %v", err)
	}
}

func TestIdleRunMeasuresMemory(t *testing.T) {
	t.Parallel()
	_, srv := newFakeHub(t)
	cfg := streamConfig(t, srv.URL, KindNDJSON)
	cfg.Items = 0
	cfg.Hold = 200 * time.Millisecond
	cfg.GatewayPID = selfPID() // the test server lives in this process
	res, err := RunStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != cfg.Clients || res.Dropped != 0 {
		t.Fatalf("idle run: %s", res)
	}
	if res.RSSBefore <= 0 || res.RSSConnected <= 0 || res.RSSEnd <= 0 {
		t.Fatalf("RSS not read: %+v", res)
	}
	if !strings.Contains(res.String(), "per connection") {
		t.Fatalf("report lacks memory per connection:\n%s", res)
	}
}

func TestIdleRunNeedsHold(t *testing.T) {
	t.Parallel()
	cfg := StreamConfig{Clients: 1}
	if _, err := RunStream(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--hold") {
		t.Fatalf("want an error asking for --hold, got %v", err)
	}
}
