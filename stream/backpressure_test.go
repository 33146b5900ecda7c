package stream_test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// TestStalledReaderIsDisconnected opens a stream whose client never reads
// (with a tiny receive buffer) next to a healthy one, and publishes more
// than the stalled connection can absorb: the healthy client gets every
// item promptly, the stalled one is disconnected.
func TestStalledReaderIsDisconnected(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{ClientQueue: 4, WriteTimeout: time.Second})
		n.dialStalled(query([]string{topicA}, "wait", "stream", "format", "json"))
		healthy := n.openNDJSON([]string{topicA})
		healthy.next(waitFor)
		eventually(t, "two open streams", func() bool {
			return metric(t, n.reg, "feedgate_live_connections", "kind", "ndjson") == 2
		})

		big := strings.Repeat("x", 128<<10)
		fat := func(it *feed.Item) { it.Content = big }
		var seq sequence
		seq.next = 1
		var worst time.Duration
		for i := 0; i < 100; i++ {
			start := time.Now()
			n.publish(topicA, 1, fat)
			for seq.next <= feed.Cursor(i+1) {
				got, ok := healthy.tryNext(waitFor)
				if !ok {
					t.Fatalf("healthy client stalled at cursor %d", seq.next)
				}
				seq.add(got.cursors())
			}
			worst = max(worst, time.Since(start))
		}
		if seq.err != nil {
			t.Fatal(seq.err)
		}
		if worst > time.Second {
			t.Errorf("the healthy client waited up to %v for an item; the stalled one must not delay it", worst)
		}
		// A client leaves the gauge once its connection is closed.
		eventually(t, "the stalled client's disconnection", func() bool {
			return metric(t, n.reg, "feedgate_live_slow_disconnects_total", "kind", "ndjson") >= 1 &&
				metric(t, n.reg, "feedgate_live_connections", "kind", "ndjson") == 1
		})
		// The healthy client still works.
		n.publish(topicA, 1)
		if got := healthy.next(waitFor); got.Items[0].Cursor != 101 {
			t.Errorf("after the disconnection the healthy client got %v, want cursor 101", got.cursors())
		}
	})
}

// dialStalled sends a stream request on a raw connection with a tiny
// receive buffer, reads the response head, and never reads again.
func (n *node) dialStalled(q string) *net.TCPConn {
	n.t.Helper()
	u, _ := url.Parse(n.url)
	d := net.Dialer{Control: nil}
	c, err := d.Dial("tcp", u.Host)
	if err != nil {
		n.t.Fatal(err)
	}
	tc := c.(*net.TCPConn)
	if err := tc.SetReadBuffer(1024); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { tc.Close() })
	fmt.Fprintf(tc, "GET /?%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Basic %s\r\n\r\n", q, u.Host, base64.StdEncoding.EncodeToString([]byte(n.creds)))
	br := bufio.NewReaderSize(tc, 16)
	line, err := br.ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		n.t.Fatalf("stalled client: response %q, %v", line, err)
	}
	return tc
}
