package stream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// TestNDJSONDeliversAtOnce reads the first answer and live notifications,
// each flushed when written: the keep-alive (which would flush a buffered
// write) is an hour away.
func TestNDJSONDeliversAtOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{Keepalive: time.Hour})
		n.publish(topicA, 3)
		c := n.openNDJSON([]string{topicA}, "count", "2")
		h := c.resp.Header
		for k, want := range map[string]string{
			"Content-Type":      stream.ContentTypeNDJSON,
			"Cache-Control":     "no-cache",
			"X-Accel-Buffering": "no",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		first := c.next(waitFor)
		if got := first.cursors(); len(got) != 2 || got[0] != 2 || got[1] != 3 {
			t.Fatalf("first line cursors = %v, want [2 3] (the newest count=2)", got)
		}
		if first.Status.Feed != topicA || first.Status.Cursor != 3 {
			t.Errorf("first line status = %+v, want feed %s cursor 3", first.Status, topicA)
		}
		for i := 0; i < 3; i++ {
			cs := n.publish(topicA, 1)
			got := c.next(waitFor)
			if len(got.Items) != 1 || got.Items[0].Cursor != cs[0] || got.Status.Feed != topicA || got.Status.Cursor != cs[0] {
				t.Fatalf("notification = %+v, want one item with cursor %d", got, cs[0])
			}
		}
	})
}

func TestNDJSONAfterReplaysThenGoesLive(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		n.publish(topicA, 30)
		// count=5 after 10: the first line holds 11..15, then 16..30 follow
		// before anything live.
		c := n.openNDJSON([]string{topicA}, "count", "5", "after", feed.Cursor(10).String())
		var seq sequence
		seq.next = 11
		for seq.next <= 30 {
			seq.add(c.next(waitFor).cursors())
			if seq.err != nil {
				t.Fatal(seq.err)
			}
		}
		n.publish(topicA, 2)
		for seq.next <= 32 {
			seq.add(c.next(waitFor).cursors())
		}
		if seq.err != nil {
			t.Fatal(seq.err)
		}
	})
}

func TestNDJSONMergesTopics(t *testing.T) {
	st := openEmbedded(t)
	n := newNode(t, st, stream.Options{})
	n.publish(topicB, 1)
	c := n.openNDJSON([]string{topicA, topicB})
	a, b := c.next(waitFor), c.next(waitFor)
	if a.Status.Feed != topicA || len(a.Items) != 0 || b.Status.Feed != topicB || len(b.Items) != 1 {
		t.Fatalf("first lines = %+v, %+v; want A's empty answer then B's with one item", a, b)
	}
	n.publish(topicB, 1)
	n.publish(topicA, 2)
	// Topics fan out independently (sharded by topic): B's notification
	// may come after A's although B's item was stored first.
	live := map[string]notification{}
	for range 2 {
		got := c.next(waitFor)
		if _, dup := live[got.Status.Feed]; dup {
			t.Fatalf("two notifications for %s, the second %+v", got.Status.Feed, got)
		}
		live[got.Status.Feed] = got
	}
	if got := live[topicB]; len(got.Items) != 1 || got.Items[0].Cursor != 2 {
		t.Fatalf("want B's item 2, got %+v", got)
	}
	if got := live[topicA]; len(got.Items) != 2 || got.Items[0].Cursor != 2 || got.Items[1].Cursor != 1 {
		t.Fatalf("want A's items 2,1 (newest first), got %+v", got)
	}
}

// TestStreamsOverHTTP2 runs NDJSON and SSE over HTTP/2, where connections
// cannot be taken over: the handler serves the stream itself.
func TestStreamsOverHTTP2(t *testing.T) {
	n := startNode(t, openEmbedded(t), nodeConfig{stream: stream.Options{Keepalive: 50 * time.Millisecond}, h2: true})
	n.publish(topicA, 1)
	c := n.openNDJSON([]string{topicA})
	if c.resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", c.resp.Proto)
	}
	c.next(waitFor)
	sse := n.openSSE(query([]string{topicA}))
	sse.next(waitFor)
	n.publish(topicA, 1)
	if got := c.next(waitFor); !equalCursors(got.cursors(), 2) {
		t.Fatalf("NDJSON over HTTP/2: %v", got.cursors())
	}
	if got, id := sse.next(waitFor); !equalCursors(got.cursors(), 2) || id != feed.Cursor(2).String() {
		t.Fatalf("SSE over HTTP/2: %v %q", got.cursors(), id)
	}
	testkit.Eventually(t, waitFor, "keep-alives", func() bool { return c.blanks.Load() >= 2 })
	c.close()
	testkit.Eventually(t, waitFor, "the closed stream to leave", func() bool { return n.conns("ndjson") == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := n.hub.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown did not see every connection released within %v: %v", waitFor, err)
	}
	sse.ended("shutdown over HTTP/2")
}

// TestNDJSONOverHTTP10 streams to an HTTP/1.0 client: no chunked encoding,
// the body is the NDJSON lines themselves, written directly by fan-out.
func TestNDJSONOverHTTP10(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{})
	c := n.dialRaw("HTTP/1.0", query([]string{topicA}, "wait", "stream", "format", "json"),
		func(c *net.TCPConn) error { return c.SetDeadline(time.Now().Add(waitFor)) })
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(resp.TransferEncoding) != 0 || resp.ProtoMinor != 0 {
		t.Fatalf("want an HTTP/1.0 200 without chunking, got %s %s %v", resp.Proto, resp.Status, resp.TransferEncoding)
	}
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() {
		t.Fatalf("no first answer: %v", lines.Err())
	}
	for i := 1; i <= 3; i++ {
		n.publish(topicA, 1)
		var got notification
		for lines.Scan() && len(lines.Bytes()) == 0 {
			// a keep-alive line
		}
		if err := json.Unmarshal(lines.Bytes(), &got); err != nil {
			t.Fatalf("line %d is not a notification (%v): %q", i, err, lines.Bytes())
		}
		if len(got.Items) != 1 || got.Items[0].Cursor != feed.Cursor(i) {
			t.Fatalf("notification %d: %+v", i, got)
		}
	}
	if whole := testkit.Metric(t, n.reg, "feedgate_live_direct_writes_total", "result", "whole"); whole < 1 {
		t.Errorf("no notification went out as a direct write")
	}
}
