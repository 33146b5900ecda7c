package stream_test

// Tests where time is the subject — keep-alives, connection lifetimes,
// and (credentials_test.go) the revocation delay and token expiry — run
// in a synctest bubble on the fake clock, with the node served over an
// in-memory network: each duration is checked exactly, whatever the load
// on the machine.

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedgate/feedgate/stream"
)

// inBubble runs f in a synctest bubble, on a node (embedded store) served
// over an in-memory network.
func inBubble(t *testing.T, cfg nodeConfig, f func(t *testing.T, n *node)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		cfg.mem = true
		f(t, startNode(t, openEmbedded(t), cfg))
	})
}

// isClosed reports whether ch is closed, once every goroutine of the
// bubble is blocked.
func isClosed(ch <-chan struct{}) bool {
	synctest.Wait()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// liveSet is one connection of each streaming form.
type liveSet struct {
	nd  *ndjsonClient
	sse *sseClient
	ws  *wsClient
}

// openAll opens an NDJSON stream, an event stream and a WebSocket on
// topicA with the given credentials (an Authorization header; ann's when
// empty).
func (n *node) openAll(authz string) liveSet {
	n.t.Helper()
	var header []string
	if authz != "" {
		header = []string{"Authorization", authz}
	}
	var ls liveSet
	ls.nd = n.openNDJSONWith(query([]string{topicA}, "wait", "stream", "format", "json"), header...)
	ls.nd.next(waitFor)
	ls.sse = n.openSSE(query([]string{topicA}), header...)
	ls.sse.next(waitFor)
	h := make(map[string][]string)
	if authz != "" {
		h["Authorization"] = []string{authz}
	}
	ws, _, err := n.dialWS("/ws", query([]string{topicA}), h)
	if err != nil {
		n.t.Fatalf("open WebSocket: %v", err)
	}
	ws.notification()
	ls.ws = ws
	return ls
}

// open lists the forms still open.
func (ls liveSet) open() []string {
	var out []string
	if !isClosed(ls.nd.done) {
		out = append(out, "NDJSON")
	}
	if !isClosed(ls.sse.done) {
		out = append(out, "SSE")
	}
	if !isClosed(ls.ws.done) {
		out = append(out, "WebSocket")
	}
	return out
}

// slack is how far off its due time a keep-alive or the end of a lifetime
// may come: the service looks for them periodically, not at each one's
// instant.
const slack = time.Second

// TestKeepalivesWhileIdle: an idle stream gets a keep-alive each time it
// has been silent for Keepalive (give or take the slack) — a blank NDJSON
// line, an SSE comment, a WebSocket ping — and none in between.
func TestKeepalivesWhileIdle(t *testing.T) {
	const every = 20 * time.Second
	const step = 50 * time.Millisecond
	inBubble(t, nodeConfig{stream: stream.Options{Keepalive: every}}, func(t *testing.T, n *node) {
		ls := n.openAll("")
		opened := time.Now()
		forms := []string{"NDJSON", "SSE", "WebSocket"}
		// When each form's keep-alives arrived, to within a step.
		var at [3][]time.Time
		for time.Since(opened) < 3*every+every/2 {
			time.Sleep(step)
			synctest.Wait()
			counts := [3]int{int(ls.nd.blanks.Load()), len(ls.sse.comments), len(ls.ws.pings)}
			for i, k := range counts {
				for len(at[i]) < k {
					at[i] = append(at[i], time.Now())
				}
			}
		}
		for i, form := range forms {
			if len(at[i]) != 3 {
				t.Errorf("%s: %d keep-alives in %v of silence, want 3 (one every %v)", form, len(at[i]), 3*every+every/2, every)
				continue
			}
			prev := opened
			for k, when := range at[i] {
				if d := when.Sub(prev); d < every-slack || d > every+slack+step {
					t.Errorf("%s: keep-alive %d came %v after the stream's last write, want %v (±%v)", form, k+1, d, every, slack)
				}
				prev = when
			}
		}
	})
}

// TestMaxLifetime: a stream ends at its maximum lifetime, less up to 10%
// of jitter (give or take the slack), told why as its form allows.
func TestMaxLifetime(t *testing.T) {
	const lifetime = 10 * time.Minute
	inBubble(t, nodeConfig{stream: stream.Options{MaxLifetime: lifetime}}, func(t *testing.T, n *node) {
		ls := n.openAll("")
		time.Sleep(lifetime*9/10 - slack)
		if open := ls.open(); len(open) != 3 {
			t.Fatalf("%v before 90%% of the lifetime, only %v are open, want all three", lifetime*9/10-slack, open)
		}
		time.Sleep(lifetime/10 + 2*slack)
		if open := ls.open(); len(open) != 0 {
			t.Fatalf("%v outlived the lifetime of %v", open, lifetime)
		}
		ls.nd.end("lifetime")
		ls.sse.ended("lifetime")
		found := false
		for c := range drain(ls.sse.comments) {
			found = found || strings.Contains(c, "lifetime")
		}
		if !found {
			t.Error("the event stream was not told why it ends")
		}
		if ce := ls.ws.closed("lifetime"); ce.Code != websocket.CloseGoingAway {
			t.Errorf("WebSocket closed with %v, want close code 1001", ce)
		}
	})
}
