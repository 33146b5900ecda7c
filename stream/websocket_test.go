package stream_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

type wsClient struct {
	t     *testing.T
	conn  *websocket.Conn
	msgs  chan []byte // closed when the socket ends
	err   chan error  // why it ended, once msgs is closed
	pings chan struct{}
	stop  chan struct{}
	done  chan struct{}
	// endedAt is when the socket ended; read it once msgs is closed.
	endedAt time.Time
}

// dialWS opens a WebSocket on path ("/" or "/ws") with ann's credentials,
// unless header carries an Authorization.
func (n *node) dialWS(path, q string, header http.Header) (*wsClient, *http.Response, error) {
	u := "ws" + strings.TrimPrefix(n.url, "http") + path + "?" + q
	if header == nil {
		header = http.Header{}
	}
	if header.Get("Authorization") == "" {
		header.Set("Authorization", basic(n.creds))
	}
	d := websocket.Dialer{NetDialContext: n.dial, HandshakeTimeout: waitFor}
	conn, resp, err := d.Dial(u, header)
	if err != nil {
		return nil, resp, err
	}
	c := &wsClient{t: n.t, conn: conn, msgs: make(chan []byte, 1000), err: make(chan error, 1),
		pings: make(chan struct{}, 100), stop: make(chan struct{}), done: make(chan struct{})}
	conn.SetPingHandler(func(string) error {
		select {
		case c.pings <- struct{}{}:
		default:
		}
		return conn.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
	})
	go func() {
		defer close(c.done)
		for {
			_, m, err := conn.ReadMessage()
			if err != nil {
				c.endedAt = time.Now()
				c.err <- err
				close(c.msgs)
				return
			}
			select {
			case c.msgs <- m:
			case <-c.stop:
				return
			}
		}
	}()
	n.t.Cleanup(c.close)
	return c, resp, nil
}

// close closes the socket from the client's side.
func (c *wsClient) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	c.conn.Close()
	awaitClosed(c.t, c.done, "the WebSocket reader to stop after the client closed the socket")
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

// next returns the next message decoded as a notification, or its error.
func (c *wsClient) next() (notification, *struct {
	Code    int
	Message string
}) {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("socket closed: %v", <-c.err)
		}
		var e struct {
			Error *struct {
				Code    int
				Message string
			} `json:"error"`
		}
		if json.Unmarshal(m, &e) == nil && e.Error != nil {
			return notification{}, e.Error
		}
		var n notification
		if err := json.Unmarshal(m, &n); err != nil {
			c.t.Fatalf("message is not JSON (%v): %s", err, m)
		}
		return n, nil
	case <-time.After(waitFor):
		c.t.Fatalf("no message within %v", waitFor)
	}
	return notification{}, nil
}

func (c *wsClient) notification() notification {
	c.t.Helper()
	n, e := c.next()
	if e != nil {
		c.t.Fatalf("got error %d %s, want a notification", e.Code, e.Message)
	}
	return n
}

// closed waits for the server to close the socket and returns its close
// error; messages sent before are dropped.
func (c *wsClient) closed(what string) *websocket.CloseError {
	c.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case _, ok := <-c.msgs:
			if ok {
				continue
			}
			err := <-c.err
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				c.t.Fatalf("%s: the socket ended with %v, not a close frame", what, err)
			}
			return ce
		case <-deadline:
			c.t.Fatalf("%s: the socket was not closed within %v", what, waitFor)
		}
	}
}

func TestWebSocketSubscribeUnsubscribe(t *testing.T) {
	for name, path := range map[string]string{"hub": "/", "ws": "/ws"} {
		t.Run(name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, st store.Store) { testWebSocketTopics(t, st, path) })
		})
	}
}

func testWebSocketTopics(t *testing.T, st store.Store, path string) {
	n := newNode(t, st, stream.Options{})
	n.publish(topicA, 2)
	n.publish(topicB, 3)
	c, _, err := n.dialWS(path, query([]string{topicA}), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	if first := c.notification(); first.Status.Feed != topicA || !equalCursors(first.cursors(), 1, 2) {
		t.Fatalf("first message %+v, want A's answer with 1,2", first)
	}
	// A second topic on the open socket, replayed from a cursor.
	c.send(map[string]string{"mode": "subscribe", "topic": topicB, "after": feed.Cursor(1).String()})
	if b := c.notification(); b.Status.Feed != topicB || !equalCursors(b.cursors(), 2, 3) {
		t.Fatalf("subscribe B after 1: %+v, want B's items 2,3", b)
	}
	n.publish(topicB, 1)
	if b := c.notification(); b.Status.Feed != topicB || !equalCursors(b.cursors(), 4) {
		t.Fatalf("live B: %+v", b)
	}
	n.publish(topicA, 1)
	if a := c.notification(); a.Status.Feed != topicA || !equalCursors(a.cursors(), 3) {
		t.Fatalf("live A: %+v", a)
	}

	c.send(map[string]string{"mode": "unsubscribe", "topic": topicA})
	// Errors come back as {"error":...} and leave the socket open;
	// messages are handled in order, so after this one the unsubscription
	// is in effect.
	c.send(map[string]string{"mode": "dance"})
	if _, e := c.next(); e == nil || e.Code != 422 {
		t.Fatalf("unknown mode: %+v, want a 422 error", e)
	}
	n.publish(topicA, 1)
	n.publish(topicB, 1)
	if b := c.notification(); b.Status.Feed != topicB || !equalCursors(b.cursors(), 5) {
		t.Fatalf("after unsubscribing A: %+v, want only B's 5", b)
	}
	n.publish(topicB, 1)
	// Nothing of A since (the next message is B's next item).
	if b := c.notification(); b.Status.Feed != topicB || !equalCursors(b.cursors(), 6) {
		t.Fatalf("after unsubscribing A: %+v, want only B's 6", b)
	}

	for _, tc := range []struct {
		msg  any
		code int
	}{
		{map[string]string{"mode": "subscribe", "topic": topicB}, http.StatusConflict},
		{map[string]string{"mode": "subscribe", "topic": "https://example.com/not-followed.xml"}, http.StatusNotFound},
		{map[string]string{"mode": "subscribe", "topic": "ftp://nope"}, http.StatusUnprocessableEntity},
		{map[string]string{"mode": "subscribe", "topic": topicC, "after": "no-such-entry"}, http.StatusUnprocessableEntity},
		{map[string]string{"mode": "unsubscribe", "topic": topicC}, http.StatusNotFound},
		{"not an object", http.StatusUnprocessableEntity},
	} {
		c.send(tc.msg)
		if _, e := c.next(); e == nil || e.Code != tc.code {
			t.Errorf("%v: got %+v, want error %d", tc.msg, e, tc.code)
		}
	}
	// Subscribing again after unsubscribing starts over.
	c.send(map[string]any{"mode": "subscribe", "topic": topicA, "count": 1})
	if a := c.notification(); a.Status.Feed != topicA || !equalCursors(a.cursors(), 4) {
		t.Fatalf("subscribe A again: %+v, want A's newest (4)", a)
	}
	n.publish(topicA, 1)
	if a := c.notification(); a.Status.Feed != topicA || !equalCursors(a.cursors(), 5) {
		t.Fatalf("live A after subscribing again: %+v, want only A's 5", a)
	}
}

func TestWebSocketOriginAndPing(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{
		AllowedOrigins: []string{"https://widget.example"},
		Keepalive:      30 * time.Millisecond,
	})
	_, resp, err := n.dialWS("/ws", query([]string{topicA}), http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v resp %v, want 403", err, resp)
	}
	for _, origin := range []string{"https://widget.example", n.url} {
		c, _, err := n.dialWS("/ws", query([]string{topicA}), http.Header{"Origin": {origin}})
		if err != nil {
			t.Fatalf("origin %s: %v", origin, err)
		}
		c.notification()
		select {
		case <-c.pings:
		case <-time.After(waitFor):
			t.Fatal("no ping")
		}
	}
}

func TestWebSocketMessageLimit(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{MaxMessageSize: 1024})
	c, _, err := n.dialWS("/ws", query([]string{topicA}), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.notification()
	c.send(map[string]string{"mode": "subscribe", "topic": "https://example.com/" + strings.Repeat("x", 2000)})
	if ce := c.closed("an oversized message"); ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("close: %v, want code %d", ce, websocket.CloseMessageTooBig)
	}
}
