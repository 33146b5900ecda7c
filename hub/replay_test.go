package hub

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
)

// TestReplay replays a subscription's newest items to its callback: a
// signed POST like a delivery, marked as a replay, that leaves the
// subscription's progress alone; async answers before it is sent; an
// unknown subscription is a 404 and a failing callback a 422.
func TestReplay(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		sub := e.subscriber()
		ctx := ctxT(t)
		cb := sub.url("/cb?id=7")
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", cb, "format", "json", "hub.secret", "k3y")); err != nil {
			t.Fatal(err)
		}
		items := e.publish(topic, 3)
		if got := sub.next(5 * time.Second).cursors(t); len(got) != 3 {
			t.Fatalf("first delivery %v", got)
		}
		key := store.DeliveryKey{Login: "ann", Topic: topic, Callback: cb}
		progress := func() store.DeliveryProgress {
			d, err := e.hub.dlv.Delivery(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			return d.Progress
		}
		testkit.Eventually(t, 5*time.Second, "the first delivery recorded", func() bool { return progress().Delivered == items[2].Cursor })

		if err := e.hub.Replay(ctx, p, ReplayRequest{Topic: topic, Callback: cb, Count: 2}); err != nil {
			t.Fatalf("Replay: %v", err)
		}
		r := sub.next(time.Second) // the synchronous replay was made before Replay returned
		checkWebSubHeaders(t, r, "application/json", "k3y")
		if got, want := r.cursors(t), []feed.Cursor{items[2].Cursor, items[1].Cursor}; !slices.Equal(got, want) {
			t.Errorf("replayed cursors %v, want %v", got, want)
		}
		if r.Header.Get(HeaderReplay) != "true" || r.Header.Get(HeaderCallback) != cb || r.Header.Get(HeaderCursor) != items[2].Cursor.String() {
			t.Errorf("replay headers %v", r.Header)
		}
		var n struct {
			Status struct{ Feed string } `json:"status"`
		}
		if err := json.Unmarshal(r.Body, &n); err != nil || n.Status.Feed != topic {
			t.Errorf("replay body %s", r.Body)
		}

		// async=true: answered first, sent after.
		released := make(chan struct{})
		sub.setAnswer(func(int, *http.Request) int {
			<-released
			return http.StatusNoContent
		})
		start := time.Now()
		if err := e.hub.Replay(ctx, p, ReplayRequest{Topic: topic, Callback: cb, Count: 1, Async: true}); err != nil {
			t.Fatalf("async Replay: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("async Replay took %s: it must answer before the POST is answered", d)
		}
		close(released)
		if got := sub.next(5 * time.Second).cursors(t); !slices.Equal(got, []feed.Cursor{items[2].Cursor}) {
			t.Errorf("async replay cursors %v", got)
		}

		// The subscription's progress is that of its deliveries.
		if pr := progress(); pr.Delivered != items[2].Cursor || pr.Succeeded != 1 {
			t.Errorf("progress after replays %+v", pr)
		}
		sub.none(quiet)

		if err := e.hub.Replay(ctx, p, ReplayRequest{Topic: topic, Callback: sub.url("/other"), Count: 1}); apiCode(err) != http.StatusNotFound {
			t.Errorf("replay to a callback without a subscription: %v, want 404", err)
		}
		sub.setAnswer(func(int, *http.Request) int { return http.StatusInternalServerError })
		if err := e.hub.Replay(ctx, p, ReplayRequest{Topic: topic, Callback: cb, Count: 1}); apiCode(err) != http.StatusUnprocessableEntity {
			t.Errorf("replay to a failing callback: %v, want 422", err)
		}
		sub.next(time.Second)
		sub.none(quiet) // a failed replay is not retried
	})
}

func TestParseReplay(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		kv    []string
		count int
		async bool
		ok    bool
	}{
		{[]string{"hub.topic", topic, "hub.callback", "https://cb.example/x"}, 1, false, true},
		{[]string{"hub.topic", topic, "hub.callback", "https://cb.example/x", "count", "50", "async", "true"}, 50, true, true},
		{[]string{"hub.topic", topic, "hub.callback", "https://cb.example/x", "count", "51"}, 0, false, false},
		{[]string{"hub.topic", topic, "hub.callback", "https://cb.example/x", "count", "0"}, 0, false, false},
		{[]string{"hub.topic", topic, "hub.callback", "https://cb.example/x", "async", "maybe"}, 0, false, false},
		{[]string{"hub.topic", topic}, 0, false, false},
		{[]string{"hub.callback", "https://cb.example/x"}, 0, false, false},
	} {
		req, err := ParseReplay(params(t, c.kv...))
		if (err == nil) != c.ok || (c.ok && (req.Count != c.count || req.Async != c.async)) {
			t.Errorf("ParseReplay(%q) = %+v, %v", c.kv, req, err)
		}
		if err != nil && apiCode(err) != http.StatusUnprocessableEntity {
			t.Errorf("ParseReplay(%q) error %v is not a 422", c.kv, err)
		}
	}
}
