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
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/stream"
)

// TestShutdownEndsStreamsPromptly opens one connection of every kind and
// shuts the broker down: each ends within a second, told to reconnect as
// its form allows, and new connections are refused with 503.
func TestShutdownEndsStreamsPromptly(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{Retry: 2 * time.Second})
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
	atomResp, err := n.client.Do(n.request(context.Background(), query([]string{topicA}, "wait", "stream")))
	if err != nil {
		t.Fatal(err)
	}
	defer atomResp.Body.Close()
	pollDone := make(chan string, 1)
	go func() {
		_, body, _ := n.poll(query([]string{topicA}, "wait", "poll", "format", "json", "timeout", "10", "after", feed.Cursor(1).String()))
		pollDone <- body
	}()
	eventually(t, "five open connections", func() bool {
		total := 0.0
		for _, k := range []string{"ndjson", "sse", "websocket", "atom", "poll"} {
			total += metric(t, n.reg, "feedgate_live_connections", "kind", k)
		}
		return total == 5
	})

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.hub.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if !nd.ended(time.Second) {
		t.Error("the NDJSON stream did not end")
	}
	select {
	case <-sse.done:
	case <-time.After(time.Second):
		t.Fatal("the event stream did not end")
	}
	var sawReconnect bool
	for c := range drain(sse.comments) {
		sawReconnect = sawReconnect || strings.Contains(c, "reconnect")
	}
	if !sawReconnect {
		t.Error("the event stream got no comment telling it to reconnect")
	}
	retries := drain(sse.retry)
	if len(retries) != 2 { // the opening one and the parting one
		t.Errorf("the event stream got %d retry: fields, want 2", len(retries))
	}
	var ce *websocket.CloseError
	select {
	case err := <-ws.err:
		if !asCloseError(err, &ce) || ce.Code != websocket.CloseServiceRestart {
			t.Errorf("WebSocket ended with %v, want close code 1012", err)
		}
	case <-time.After(time.Second):
		t.Error("the WebSocket was not closed")
	}
	body, _ := io.ReadAll(atomResp.Body)
	if !strings.HasSuffix(strings.TrimSpace(string(body)), "</feed>") {
		t.Errorf("the Atom stream ended without closing its feed: %q", body)
	}
	select {
	case b := <-pollDone:
		if a := decode(t, b); len(a.Items) != 0 {
			t.Errorf("held poll answered %v, want no items", a.cursors())
		}
	case <-time.After(time.Second):
		t.Error("the held long-poll was not answered")
	}

	resp, err := n.client.Do(n.request(context.Background(), query([]string{topicA}, "wait", "stream", "format", "json")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a stream opened during shutdown: %s, want 503", resp.Status)
	}
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
	n := newNodeWith(t, openEmbedded(t), stream.Options{}, live.Options{MaxConnsPerUser: 2}, false)
	a := n.openNDJSON([]string{topicA})
	n.openNDJSON([]string{topicB})
	resp, err := n.client.Do(n.request(context.Background(), query([]string{topicC}, "wait", "stream", "format", "json")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "live connections") {
		t.Fatalf("third stream: %s %s, want 429 with a message", resp.Status, body)
	}
	a.close()
	eventually(t, "a free slot", func() bool {
		return metric(t, n.reg, "feedgate_live_connections", "kind", "ndjson") == 1
	})
	n.openNDJSON([]string{topicC}).next(waitFor)
}

func TestMaxLifetime(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{MaxLifetime: 300 * time.Millisecond})
	start := time.Now()
	nd := n.openNDJSON([]string{topicA})
	sse := n.openSSE(query([]string{topicA}))
	ws, _, err := n.dialWS("/ws", query([]string{topicA}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !nd.ended(3 * time.Second) {
		t.Fatal("the NDJSON stream outlived its lifetime")
	}
	<-sse.done
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("streams ended after %v, lifetime 300ms", d)
	}
	found := false
	for c := range drain(sse.comments) {
		found = found || strings.Contains(c, "lifetime")
	}
	if !found {
		t.Error("the event stream was not told why it ends")
	}
	var ce *websocket.CloseError
	select {
	case err := <-ws.err:
		if !asCloseError(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Errorf("WebSocket ended with %v, want close code 1001", err)
		}
	case <-time.After(3 * time.Second):
		t.Error("the WebSocket outlived its lifetime")
	}
}

// TestAtomStream reads a wait=stream Atom feed: one open <feed> whose
// entries arrive as items are stored; what was received, closed, is valid
// XML with every entry.
func TestAtomStream(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{Keepalive: 50 * time.Millisecond})
	n.publish(topicA, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := n.client.Do(n.request(ctx, query([]string{topicA}, "wait", "stream")))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != stream.ContentTypeAtom {
		t.Errorf("Content-Type %q", ct)
	}
	var got strings.Builder
	buf := make([]byte, 64<<10)
	readUntil := func(want int) {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for strings.Count(got.String(), "<entry") < want {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %d entries, got %q", want, got.String())
			}
			k, err := resp.Body.Read(buf)
			got.Write(buf[:k])
			if err != nil {
				t.Fatalf("read: %v (got %q)", err, got.String())
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
	n := newNodeWith(t, openEmbedded(t), stream.Options{}, live.Options{Linger: -1}, false)
	eventually(t, "healthy hub", n.hub.Healthy)
	a := n.openNDJSON([]string{topicA, topicB})
	b := n.openNDJSON([]string{topicA})
	a.next(waitFor)
	b.next(waitFor)
	if got := metric(t, n.reg, "feedgate_live_topics"); got != 2 {
		t.Errorf("live topics = %v, want 2", got)
	}
	a.close()
	eventually(t, "B dropped with its last client", func() bool { return metric(t, n.reg, "feedgate_live_topics") == 1 })
	b.close()
	eventually(t, "A dropped with its last client", func() bool { return metric(t, n.reg, "feedgate_live_topics") == 0 })
}
