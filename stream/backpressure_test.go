package stream_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// TestStalledReaderIsDisconnected opens a stream whose client never reads
// (with a tiny receive buffer) next to a healthy one, and publishes more
// than the stalled connection can absorb: the healthy client gets every
// item while the stalled one is disconnected for filling its queue. The
// write timeout is an hour: had fan-out waited on the stalled socket, the
// healthy client would have stalled with it.
func TestStalledReaderIsDisconnected(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{ClientQueue: 4, WriteTimeout: time.Hour})
		n.dialStalled(query([]string{topicA}, "wait", "stream", "format", "json"))
		healthy := n.openNDJSON([]string{topicA})
		healthy.next(waitFor)
		testkit.Eventually(t, waitFor, "two open streams", func() bool { return n.conns("ndjson") == 2 })

		big := strings.Repeat("x", 128<<10)
		fat := func(it *feed.Item) { it.Content = big }
		var seq sequence
		seq.next = 1
		for i := 0; i < 100; i++ {
			n.publish(topicA, 1, fat)
			for seq.next <= feed.Cursor(i+1) {
				got, ok := healthy.tryNext(waitFor)
				if !ok {
					t.Fatalf("the healthy client stalled at cursor %d (for %v) beside the stalled one", seq.next, waitFor)
				}
				seq.add(got.cursors())
			}
		}
		if seq.err != nil {
			t.Fatal(seq.err)
		}
		// A client leaves the gauge once its connection is closed.
		testkit.Eventually(t, waitFor, "the stalled client's disconnection", func() bool {
			return testkit.Metric(t, n.reg, "feedgate_live_slow_disconnects_total", "kind", "ndjson") >= 1 && n.conns("ndjson") == 1
		})
		// The healthy client still works.
		n.publish(topicA, 1)
		healthy.expectNext("after the disconnection", 101)
	})
}

// dialStalled sends a stream request on a raw connection with a tiny
// receive buffer, reads the response head, and never reads again.
func (n *node) dialStalled(q string) *net.TCPConn {
	n.t.Helper()
	tc := n.dialRaw("HTTP/1.1", q, func(tc *net.TCPConn) error { return tc.SetReadBuffer(1024) })
	_ = tc.SetReadDeadline(time.Now().Add(waitFor))
	br := bufio.NewReaderSize(tc, 16)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		n.t.Fatalf("stalled client: response %q, %v", line, err)
	}
	return tc
}

// dialRaw opens a connection to the node, runs setup on it, and sends a
// GET of query q with the node's credentials in protocol proto
// (HTTP/1.1, HTTP/1.0). The connection is closed at the end of the test.
func (n *node) dialRaw(proto, q string, setup ...func(*net.TCPConn) error) *net.TCPConn {
	n.t.Helper()
	u, _ := url.Parse(n.url)
	c, err := net.DialTimeout("tcp", u.Host, waitFor)
	if err != nil {
		n.t.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	n.t.Cleanup(func() { tc.Close() })
	for _, f := range setup {
		if err := f(tc); err != nil {
			n.t.Fatal(err)
		}
	}
	fmt.Fprintf(tc, "GET /?%s %s\r\nHost: %s\r\nAuthorization: Basic %s\r\n\r\n", q, proto, u.Host, base64.StdEncoding.EncodeToString([]byte(n.creds)))
	return tc
}

// TestSlowReaderGetsEverything publishes more than a client's socket
// buffers hold while the client does not read: the fan-out's direct writes
// are cut short by the full socket, the client's goroutine writes the rest
// (and queues what follows), and the client — late, but within its queue
// — receives every item once, in order, with the HTTP chunk framing
// intact. (Its writes wait for it: the write timeout is an hour.)
func TestSlowReaderGetsEverything(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{ClientQueue: 256, WriteTimeout: time.Hour})
		tc := n.dialRaw("HTTP/1.1", query([]string{topicA}, "wait", "stream", "format", "json"))
		_ = tc.SetReadDeadline(time.Now().Add(waitFor))
		br := bufio.NewReaderSize(tc, 64<<10)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		// The body of an endless stream is not closed (that would read it
		// to its end): the connection is, at the end of the test.
		if resp.StatusCode != 200 || len(resp.TransferEncoding) == 0 {
			t.Fatalf("want a chunked 200, got %s %v", resp.Status, resp.TransferEncoding)
		}
		lines := bufio.NewScanner(resp.Body)
		lines.Buffer(make([]byte, 64<<10), 4<<20)
		if !lines.Scan() {
			t.Fatalf("no first answer: %v", lines.Err())
		}

		// 40 items of 256 KiB (10 MiB) while the client does not read.
		const items = 40
		big := strings.Repeat("y", 256<<10)
		for range items {
			n.publish(topicA, 1, func(it *feed.Item) { it.Content = big })
		}
		// (The client reads nothing until the socket is seen full.)
		testkit.Eventually(t, waitFor, "a direct write cut short by the full socket", func() bool {
			return testkit.Metric(t, n.reg, "feedgate_live_direct_writes_total", "result", "partial") >= 1
		})

		var seq sequence
		seq.next = 1
		for seq.next <= items {
			_ = tc.SetReadDeadline(time.Now().Add(waitFor))
			if !lines.Scan() {
				t.Fatalf("stream ended at cursor %d: %v", seq.next, lines.Err())
			}
			if len(lines.Bytes()) == 0 {
				continue
			}
			var got notification
			if err := json.Unmarshal(lines.Bytes(), &got); err != nil {
				t.Fatalf("line %d is not a notification (%v): %.200q", seq.next, err, lines.Bytes())
			}
			if !strings.Contains(lines.Text(), big) {
				t.Fatalf("item %d arrived without its whole content", seq.next)
			}
			seq.add(got.cursors())
			if seq.err != nil {
				t.Fatal(seq.err)
			}
		}
		if slow := testkit.Metric(t, n.reg, "feedgate_live_slow_disconnects_total", "kind", "ndjson"); slow != 0 {
			t.Errorf("the late client was disconnected")
		}
	})
}

// TestDirectWritesReachEveryClient runs many clients on one topic (enough
// for the fan-out to split across workers) while items are published: each
// sees every item once, in order, and most notifications are direct writes.
func TestDirectWritesReachEveryClient(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		const clients, items = 300, 30
		cs := make([]*ndjsonClient, clients)
		for i := range cs {
			cs[i] = n.openNDJSON([]string{topicA})
			cs[i].next(waitFor)
		}
		for range items {
			n.publish(topicA, 1)
		}
		for i, c := range cs {
			var seq sequence
			seq.next = 1
			for seq.next <= items {
				got, ok := c.tryNext(waitFor)
				if !ok {
					t.Fatalf("client %d stalled at cursor %d", i, seq.next)
				}
				seq.add(got.cursors())
				if seq.err != nil {
					t.Fatalf("client %d: %v", i, seq.err)
				}
			}
		}
		// Items may arrive merged into fewer notifications; most of the
		// notifications written must be direct writes.
		whole := testkit.Metric(t, n.reg, "feedgate_live_direct_writes_total", "result", "whole")
		all := testkit.Metric(t, n.reg, "feedgate_live_deliveries_total", "kind", "ndjson") - clients // the first answers
		if whole < all/2 {
			t.Errorf("only %v of %v notifications were direct writes", whole, all)
		}
	})
}
