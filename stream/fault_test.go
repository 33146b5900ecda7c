package stream_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// TestRedisRestartLosesNothing kills Redis (append-only, fsync always)
// under open streams and restarts it. Items appended by another node as
// soon as Redis is back — while this node's broker is still resubscribing
// — and after it recovered all reach every stream, in order, once; and the
// broker reports unhealthy while the live link is down.
func TestRedisRestartLosesNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.AppendOnly())
	st := openRedis(t, srv)
	other := openRedis(t, srv) // another gateway node's store client
	n := newNode(t, st, stream.Options{})
	testkit.Eventually(t, waitFor, "healthy hub", n.hub.Healthy)

	n.publish(topicA, 3)
	n.publish(topicB, 1)
	nd := n.openNDJSON([]string{topicA, topicB})
	sse := n.openSSE(query([]string{topicA}))
	var seqA, seqB, seqSSE sequence
	seqA.next, seqB.next, seqSSE.next = 1, 1, 1
	readNDJSON := func(wantA, wantB feed.Cursor) {
		t.Helper()
		for seqA.next <= wantA || seqB.next <= wantB {
			got, ok := nd.tryNext(waitFor)
			if !ok {
				t.Fatalf("NDJSON stream stalled at A %d, B %d", seqA.next, seqB.next)
			}
			if got.Status.Feed == topicA {
				seqA.add(got.cursors())
			} else {
				seqB.add(got.cursors())
			}
			if seqA.err != nil || seqB.err != nil {
				t.Fatalf("A: %v, B: %v", seqA.err, seqB.err)
			}
		}
	}
	readSSE := func(want feed.Cursor) {
		t.Helper()
		for seqSSE.next <= want {
			got, _ := sse.next(waitFor)
			seqSSE.add(got.cursors())
			if seqSSE.err != nil {
				t.Fatal(seqSSE.err)
			}
		}
	}
	readNDJSON(3, 1)
	readSSE(3)

	for round := 1; round <= 2; round++ {
		srv.Kill()
		testkit.Eventually(t, waitFor, "the hub to notice the broken link", func() bool { return !n.hub.Healthy() })
		if round == 2 {
			// A longer outage: the listener's reconnection attempts are
			// spaced out by then, so the appends below are likely to land
			// before it is back. This is the outage's length, the
			// scenario, not a synchronisation: nothing waits on it, and
			// either order must lose nothing (the log says which it was).
			time.Sleep(1500 * time.Millisecond)
		}
		srv.Restart()
		// Appended at once by another node: the broker's link may not be
		// back yet.
		seq := &n.seq
		mustPublish(t, other, topicA, 2, seq)
		mustPublish(t, other, topicB, 1, seq)
		if n.hub.Healthy() {
			t.Logf("round %d: the broker was back before the first appends", round)
		} else {
			t.Logf("round %d: appended while the broker was still resubscribing", round)
		}
		testkit.Eventually(t, waitFor, "the hub to recover", n.hub.Healthy)
		mustPublish(t, other, topicA, 1, seq)
		mustPublish(t, st, topicB, 2, seq)
		wantA, wantB := feed.Cursor(3+3*round), feed.Cursor(1+3*round)
		readNDJSON(wantA, wantB)
		readSSE(wantA)
	}

	// A cut pub/sub connection (CLIENT KILL) is the same story.
	srv.KillPubSubClients()
	mustPublish(t, other, topicA, 2, &n.seq)
	readNDJSON(11, 7)
	readSSE(11)
	if got := testkit.Metric(t, n.reg, "feedgate_live_resyncs_total"); got < 3 {
		t.Errorf("resyncs = %v, want at least 3", got)
	}
	// Nothing repeated: the next notification is the next item alone.
	next := n.publish(topicB, 1)
	nd.expectNext("after the outages", next...)
}

// mustPublish appends, retrying while Redis is coming back (the same
// items: an append whose answer was lost is not stored twice).
func mustPublish(t *testing.T, st store.Store, topic string, count int, seq *atomic.Int64) {
	t.Helper()
	items := newItems(count, seq)
	_, err := backoff.Retry(context.Background(), func() ([]feed.Cursor, error) {
		return appendItems(st, topic, items)
	}, backoff.WithBackOff(backoff.NewConstantBackOff(20*time.Millisecond)), backoff.WithMaxElapsedTime(waitFor))
	if err != nil {
		t.Fatalf("append to %s: not stored within %v: %v", topic, waitFor, err)
	}
}
