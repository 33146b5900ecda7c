package poll_test

// Tests where time is the subject — the poll timeout, waking at once, and
// (credentials_test.go) the revocation delay and token expiry — run in a
// synctest bubble on the fake clock, the node served over an in-memory
// network: each duration is checked exactly, whatever the load on the
// machine.

import (
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// inBubble runs f in a synctest bubble, on a node (embedded store) served
// over an in-memory network.
func inBubble(t *testing.T, cfg config, f func(t *testing.T, n *node)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		cfg.mem = true
		f(t, newNode(t, openEmbedded(t), cfg))
	})
}

// answered returns the poll's answer if it has one once every goroutine
// of the bubble is blocked.
func answered(ch <-chan answer) (answer, bool) {
	synctest.Wait()
	select {
	case a := <-ch:
		return a, true
	default:
		return answer{}, false
	}
}

// TestTimeout: a poll is answered at its timeout exactly — the one asked
// for, or 30 s without one — with 200 and no items, in JSON, Atom and
// JSONP; a timeout beyond the largest allowed is refused at once.
func TestTimeout(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kv      []string
		timeout time.Duration
		empty   func(body string) bool
	}{
		{"JSON", []string{"format", "json", "timeout", "7"}, 7 * time.Second, func(b string) bool { return strings.Contains(b, `"items":[]`) }},
		{"JSON default", []string{"format", "json"}, 30 * time.Second, func(b string) bool { return strings.Contains(b, `"items":[]`) }},
		{"Atom", []string{"timeout", "120"}, 120 * time.Second, func(b string) bool {
			return strings.Contains(b, "<feed") && !strings.Contains(b, "<entry") && strings.HasSuffix(strings.TrimSpace(b), "</feed>")
		}},
		{"JSONP", []string{"callback", "cb", "timeout", "1"}, time.Second, func(b string) bool {
			return strings.HasPrefix(b, "/**/cb({") && strings.Contains(b, `"items":[]`)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, config{}, func(t *testing.T, n *node) {
				after := n.publish(topicA, 1)[0].String()
				start := time.Now()
				p := n.start(pollQuery(topicA, append(tc.kv, "after", after)...))
				time.Sleep(tc.timeout - time.Nanosecond)
				if a, ok := answered(p); ok {
					t.Fatalf("answered %v after it was sent, before its %v timeout: %d %s", time.Since(start), tc.timeout, a.status, a.body)
				}
				time.Sleep(time.Nanosecond)
				a, ok := answered(p)
				if !ok {
					t.Fatalf("not answered at its %v timeout", tc.timeout)
				}
				if a.err != nil || a.status != http.StatusOK || !tc.empty(a.body) {
					t.Fatalf("answered %d %s (%v), want 200 with no items", a.status, a.body, a.err)
				}
			})
		})
	}
	t.Run("beyond the largest", func(t *testing.T) {
		inBubble(t, config{}, func(t *testing.T, n *node) {
			p := n.start(pollQuery(topicA, "format", "json", "timeout", "121"))
			a, ok := answered(p)
			if !ok || a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, "timeout") {
				t.Fatalf("timeout=121: answered %v, %d %s, want 422 at once", ok, a.status, a.body)
			}
		})
	})
}

// TestWakesAtOnce: a poll held for a minute is answered the moment items
// are appended, with them.
func TestWakesAtOnce(t *testing.T) {
	inBubble(t, config{}, func(t *testing.T, n *node) {
		after := n.publish(topicA, 1)[0]
		p := n.start(pollQuery(topicA, "format", "json", "timeout", "120", "after", after.String()))
		time.Sleep(time.Minute)
		if a, ok := answered(p); ok {
			t.Fatalf("answered with nothing new: %d %s", a.status, a.body)
		}
		cs := n.publish(topicA, 2)
		at := time.Now()
		a, ok := answered(p)
		if !ok {
			t.Fatal("a held poll was not woken by the items appended")
		}
		if r := decode(t, a.body, ""); a.status != http.StatusOK || !equalCursors(r.cursors(), cs...) || !a.at.Equal(at) {
			t.Fatalf("answered %v after the append with %d %s, want at once with %v", a.at.Sub(at), a.status, a.body, cs)
		}
	})
}
