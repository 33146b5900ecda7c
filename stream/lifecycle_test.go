package stream_test

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/stream"
)

// pollAnswer is the answer to a long-poll sent in the background.
type pollAnswer struct {
	status int
	body   string
	err    error
}

// startPoll sends a long-poll in the background; it must be answered
// within waitFor.
func (n *node) startPoll(q string, header ...string) <-chan pollAnswer {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	req := n.request(ctx, q, header...)
	out := make(chan pollAnswer, 1)
	go func() {
		defer cancel()
		resp, err := n.client.Do(req)
		if err != nil {
			out <- pollAnswer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		out <- pollAnswer{status: resp.StatusCode, body: string(body), err: err}
	}()
	return out
}

// answer waits for the answer of a poll started with startPoll.
func answer(t *testing.T, ch <-chan pollAnswer, what string) pollAnswer {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("%s: the long-poll failed: %v", what, a.err)
		}
		return a
	case <-time.After(waitFor + time.Second):
		t.Fatalf("%s: the long-poll was not answered within %v", what, waitFor)
	}
	return pollAnswer{}
}

// conns is the number of open live connections of kind on the node.
func (n *node) conns(kind string) float64 {
	return testkit.Metric(n.t, n.reg, "feedgate_live_connections", "kind", kind)
}

// TestShutdownEndsStreamsPromptly opens one connection of every kind and
// shuts the hub down: each ends at once — not at its next keep-alive,
// write timeout or poll timeout, all far beyond the test's waits — told
// to reconnect as its form allows, and new connections are refused with
// 503.
func TestShutdownEndsStreamsPromptly(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{Retry: 2 * time.Second, Keepalive: time.Hour, WriteTimeout: time.Hour})
	n.publish(topicA, 1)
	nd := n.openNDJSON([]string{topicA})
	nd.next(waitFor)
	sse := n.openSSE(query([]string{topicA}))
	sse.next(waitFor)
	ws, _, err := n.dialWS("/ws", query([]string{topicA}), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.notification()
	atomResp, cancelAtom := n.open(query([]string{topicA}, "wait", "stream"))
	defer cancelAtom()
	defer atomResp.Body.Close()
	held := n.startPoll(query([]string{topicA}, "wait", "poll", "format", "json", "timeout", "120", "after", feed.Cursor(1).String()))
	testkit.Eventually(t, waitFor, "five open connections", func() bool {
		total := 0.0
		for _, k := range []string{"ndjson", "sse", "websocket", "atom", "poll"} {
			total += n.conns(k)
		}
		return total == 5
	})

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := n.hub.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown did not see every connection released within %v: %v", waitFor, err)
	}
	nd.end("shutdown")
	sse.ended("shutdown")
	var sawReconnect bool
	for c := range drain(sse.comments) {
		sawReconnect = sawReconnect || strings.Contains(c, "reconnect")
	}
	if !sawReconnect {
		t.Error("the event stream got no comment telling it to reconnect")
	}
	if retries := drain(sse.retry); len(retries) != 2 { // the opening one and the parting one
		t.Errorf("the event stream got %d retry: fields, want 2", len(retries))
	}
	if ce := ws.closed("shutdown"); ce.Code != websocket.CloseServiceRestart {
		t.Errorf("WebSocket closed with %v, want close code 1012", ce)
	}
	body := readAll(t, atomResp.Body, cancelAtom, "the Atom stream at shutdown")
	if !strings.HasSuffix(strings.TrimSpace(body), "</feed>") {
		t.Errorf("the Atom stream ended without closing its feed: %q", body)
	}
	if a := answer(t, held, "shutdown"); a.status != http.StatusOK || len(decode(t, a.body).Items) != 0 {
		t.Errorf("held poll answered %d %s, want 200 with no items", a.status, a.body)
	}

	resp, _ := n.get(query([]string{topicA}, "wait", "stream", "format", "json"))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a stream opened during shutdown: %s, want 503", resp.Status)
	}
}

// readAll reads body to its end, which must come within waitFor (cancel
// aborts the request).
func readAll(t *testing.T, body io.Reader, cancel context.CancelFunc, what string) string {
	t.Helper()
	timer := time.AfterFunc(waitFor, cancel)
	b, err := io.ReadAll(body)
	if !timer.Stop() {
		t.Fatalf("%s: did not end within %v (read %q)", what, waitFor, b)
	}
	if err != nil {
		t.Fatalf("%s: %v (read %q)", what, err, b)
	}
	return string(b)
}

// drain returns what the channel holds once the stream has ended.
func drain(c chan string) chan string {
	out := make(chan string, len(c))
	for {
		select {
		case s := <-c:
			out <- s
		default:
			close(out)
			return out
		}
	}
}

func TestPerUserLimit(t *testing.T) {
	n := startNode(t, openEmbedded(t), nodeConfig{live: live.Options{MaxConnsPerUser: 2}})
	a := n.openNDJSON([]string{topicA})
	n.openNDJSON([]string{topicB})
	resp, body := n.get(query([]string{topicC}, "wait", "stream", "format", "json"))
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "live connections") {
		t.Fatalf("third stream: %s %s, want 429 with a message", resp.Status, body)
	}
	a.close()
	testkit.Eventually(t, waitFor, "a free slot", func() bool { return n.conns("ndjson") == 1 })
	n.openNDJSON([]string{topicC}).next(waitFor)
}

// TestAtomStream reads a wait=stream Atom feed: one open <feed> whose
// entries arrive as items are stored; what was received, closed, is valid
// XML with every entry.
func TestAtomStream(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{Keepalive: 50 * time.Millisecond})
	n.publish(topicA, 2)
	resp, cancel := n.open(query([]string{topicA}, "wait", "stream"))
	defer cancel()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != stream.ContentTypeAtom {
		t.Errorf("Content-Type %q", ct)
	}
	var got strings.Builder
	buf := make([]byte, 64<<10)
	readUntil := func(want int) {
		t.Helper()
		timer := time.AfterFunc(waitFor, cancel)
		defer timer.Stop()
		for strings.Count(got.String(), "<entry") < want {
			k, err := resp.Body.Read(buf)
			got.Write(buf[:k])
			if err != nil {
				t.Fatalf("waiting for %d entries (at most %v): %v; got %q", want, waitFor, err, got.String())
			}
		}
	}
	readUntil(2)
	n.publish(topicA, 3)
	readUntil(5)
	doc := got.String() + feed.AtomClose
	var f struct {
		Entries []struct {
			Cursor string `xml:"http://superfeedr.com/xmpp-pubsub-ext cursor"`
		} `xml:"entry"`
	}
	if err := xml.Unmarshal([]byte(doc), &f); err != nil {
		t.Fatalf("stream + </feed> is not XML: %v\n%s", err, doc)
	}
	var cs []string
	for _, e := range f.Entries {
		cs = append(cs, strings.TrimLeft(e.Cursor, "0"))
	}
	// The first answer newest first, then live entries as they arrived.
	if strings.Join(cs, ",") != "2,1,3,4,5" {
		t.Errorf("entry cursors %v, want 2,1,3,4,5", cs)
	}
}

func TestTopicSubscriptionFollowsClients(t *testing.T) {
	n := startNode(t, openEmbedded(t), nodeConfig{live: live.Options{Linger: -1}})
	testkit.Eventually(t, waitFor, "healthy hub", n.hub.Healthy)
	a := n.openNDJSON([]string{topicA, topicB})
	b := n.openNDJSON([]string{topicA})
	a.next(waitFor)
	b.next(waitFor)
	if got := testkit.Metric(t, n.reg, "feedgate_live_topics"); got != 2 {
		t.Errorf("live topics = %v, want 2", got)
	}
	a.close()
	testkit.Eventually(t, waitFor, "B dropped with its last client", func() bool { return testkit.Metric(t, n.reg, "feedgate_live_topics") == 1 })
	b.close()
	testkit.Eventually(t, waitFor, "A dropped with its last client", func() bool { return testkit.Metric(t, n.reg, "feedgate_live_topics") == 0 })
}
