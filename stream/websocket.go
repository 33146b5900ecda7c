package stream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// wsCommand is a client message on a WebSocket:
// {"mode":"subscribe","topic":"...","after":"...","count":10} or
// {"mode":"unsubscribe","topic":"..."}.
type wsCommand struct {
	Mode  string `json:"mode"`
	Topic string `json:"topic"`
	After string `json:"after,omitempty"`
	Count int    `json:"count,omitempty"`

	// bad is set by the reader for a message that is not a command.
	bad *api.Error
}

// WebSocket close codes (RFC 6455 §7.4 and the IANA registry).
const (
	closeGoingAway       = 1001
	closePolicyViolation = 1008
	closeInternalError   = 1011
	closeServiceRestart  = 1012
	closeTryAgainLater   = 1013
	// closeCredentialExpired (application range 4000-4999): the token the
	// socket was opened with expired; reconnect with a fresh one.
	closeCredentialExpired = 4001
)

// closeFrame is how a reason ends a WebSocket: the code and a short text
// (a close frame holds at most 123 bytes of it).
func closeFrame(r live.Reason) (int, string) {
	switch r {
	case live.ReasonShutdown:
		return closeServiceRestart, "gateway restarting; reconnect with your last cursors"
	case live.ReasonLifetime:
		return closeGoingAway, "maximum connection lifetime reached; reconnect with your last cursors"
	case live.ReasonSlow:
		return closeTryAgainLater, "too slow; reconnect with your last cursors"
	case live.ReasonLost:
		return closeTryAgainLater, "live delivery interrupted; reconnect with your last cursors"
	case live.ReasonRevoked:
		return closePolicyViolation, "credential revoked; reconnect with a valid one and your last cursors"
	case live.ReasonExpired:
		return closeCredentialExpired, "credential expired; reconnect with a fresh one and your last cursors"
	case live.ReasonGone:
		return websocket.CloseNormalClosure, ""
	}
	return websocket.CloseNormalClosure, ""
}

var wsWriteBuffers sync.Pool

// serveWebSocket upgrades the request and serves it: first the retrieve
// answer of every topic of the URL, then notifications; client messages
// subscribe to and unsubscribe from topics on the open socket.
func (s *Service) serveWebSocket(w http.ResponseWriter, r *http.Request, req retrieve.Request) {
	want := api.Want{JSON: true}
	p := auth.FromContext(r.Context())
	if !s.originAllowed(r) {
		api.WriteError(w, want, api.Errorf(http.StatusForbidden, "WebSocket connections from origin %q are not allowed; connect from the gateway's own origin or ask the operator to allow yours", truncate(r.Header.Get("Origin"))))
		return
	}
	cl, err := s.attach(p, live.KindWebSocket)
	if err != nil {
		api.WriteError(w, want, err)
		return
	}
	handedOver := false
	defer func() {
		if !handedOver {
			s.detach(cl)
		}
	}()
	starts, err := s.startsFor(r.Context(), req, nil)
	if err != nil {
		api.WriteError(w, want, err)
		return
	}
	up := websocket.Upgrader{
		HandshakeTimeout: s.opts.WriteTimeout,
		WriteBufferPool:  &wsWriteBuffers,
		CheckOrigin:      func(*http.Request) bool { return true }, // checked above
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			api.WriteError(w, want, api.Errorf(status, "WebSocket handshake failed: %v", reason))
		},
	}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	nc := conn.NetConn()
	cl.SetAbort(func() { _ = nc.SetWriteDeadline(time.Unix(1, 0)) })
	sess := s.newSession(cl, &wsSink{conn: conn, timeout: s.opts.WriteTimeout})
	ws := &wsSession{
		session:   sess,
		p:         p,
		count:     req.Count,
		maxTopics: s.rs.Limits().MaxTopics,
		maxCount:  s.rs.Limits().MaxCount,
	}
	cmds := make(chan wsCommand, 8)
	sess.cmds, sess.onCmd = cmds, ws.command
	// The socket is the session's now: a reader goroutine takes client
	// messages, and the session runs when there is something to write.
	handedOver = true
	readerDone := make(chan struct{})
	sess.end = func(bool) {
		_ = conn.Close()
		<-readerDone
		s.detach(cl)
	}
	go s.wsRead(conn, sess, cmds, readerDone)
	var ns []*feed.Notification
	if len(starts) > 0 {
		if ns, err = sess.load(s.ctx, starts); err != nil {
			out := sess.out.(*wsSink)
			_ = out.sendError(err)
			out.closeWith(closeTryAgainLater, "the first answer could not be read; retry")
			sess.ended.Store(true)
			sess.finish()
			return
		}
	}
	s.begin(sess, starts, ns)
}

// wsRead reads client messages, and hands them to the session, until the
// connection fails or the session ends. A client must answer pings (or
// send something) within two keep-alive periods.
func (s *Service) wsRead(conn *websocket.Conn, sess *session, cmds chan<- wsCommand, done chan<- struct{}) {
	defer close(done)
	wait := 2*s.opts.Keepalive + s.opts.WriteTimeout
	conn.SetReadLimit(s.opts.MaxMessageSize)
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(wait))
	})
	for {
		typ, msg, err := conn.ReadMessage()
		if err != nil {
			sess.c.Drop(live.ReasonGone)
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		var cmd wsCommand
		switch {
		case typ != websocket.TextMessage:
			cmd.bad = api.Invalid("send text messages holding JSON, such as {\"mode\":\"subscribe\",\"topic\":\"https://example.com/feed.xml\"}")
		default:
			if err := json.Unmarshal(msg, &cmd); err != nil {
				cmd = wsCommand{bad: api.Invalid("a message must be a JSON object such as {\"mode\":\"subscribe\",\"topic\":\"https://example.com/feed.xml\",\"after\":\"<cursor>\"}: %v", err)}
			}
		}
		select {
		case cmds <- cmd:
			sess.wake(wakeCmd)
		case <-sess.done:
			return
		}
	}
}

// originAllowed reports whether a WebSocket may come from the request's
// Origin: none (not a browser), the gateway's own, or a configured one.
func (s *Service) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if u, err := url.Parse(origin); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range s.opts.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	return false
}

// wsSession is a session whose topics the client changes by messages.
type wsSession struct {
	*session
	p         *auth.Principal
	count     int
	maxCount  int
	maxTopics int
}

// command applies a client message; only a failed write ends the socket.
func (w *wsSession) command(ctx context.Context, cmd wsCommand) error {
	out := w.out.(*wsSink)
	if cmd.bad != nil {
		return out.sendError(cmd.bad)
	}
	var err error
	switch strings.ToLower(cmd.Mode) {
	case "subscribe":
		err = w.subscribe(ctx, cmd)
	case "unsubscribe":
		err = w.unsubscribe(cmd)
	default:
		err = api.Invalid("mode must be subscribe or unsubscribe (got %q)", truncate(cmd.Mode))
	}
	var we writeError
	if err == nil || errors.As(err, &we) {
		return err
	}
	return out.sendError(err)
}

// writeError is a failure to write to the socket, which ends it.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

func (w *wsSession) subscribe(ctx context.Context, cmd wsCommand) error {
	topic := strings.TrimSpace(cmd.Topic)
	if err := api.CheckURL("topic", topic); err != nil {
		return err
	}
	if _, ok := w.last[topic]; ok {
		return api.Errorf(http.StatusConflict, "already subscribed to %s on this socket; unsubscribe first to start over", truncate(topic))
	}
	if len(w.last) >= w.maxTopics {
		return api.Invalid("at most %d topics per socket; unsubscribe from one first", w.maxTopics)
	}
	count := w.count
	if cmd.Count != 0 {
		if cmd.Count < 1 || cmd.Count > w.maxCount {
			return api.Invalid("count must be an integer from 1 to %d", w.maxCount)
		}
		count = cmd.Count
	}
	if err := w.svc.rs.Authorize(ctx, w.p, topic); err != nil {
		return err
	}
	q := store.Query{From: store.Newest, Count: count}
	if after := strings.TrimSpace(cmd.After); after != "" {
		if len(after) > api.MaxTopicLength {
			return api.Invalid("after must be at most %d characters", api.MaxTopicLength)
		}
		c, err := w.svc.rs.ResolveCursor(ctx, topic, after)
		if err != nil {
			return err
		}
		q = store.Query{From: store.After, Cursor: c, Count: count}
	}
	starts := []start{{topic: topic, q: q}}
	ns, err := w.load(ctx, starts)
	if err != nil {
		w.svc.unsubscribe(w.c, topic)
		return err
	}
	if err := w.emit(ctx, starts, ns); err != nil {
		return writeError{err}
	}
	return nil
}

func (w *wsSession) unsubscribe(cmd wsCommand) error {
	topic := strings.TrimSpace(cmd.Topic)
	if _, ok := w.last[topic]; !ok {
		return api.Errorf(http.StatusNotFound, "not subscribed to %q on this socket", truncate(topic))
	}
	w.svc.unsubscribe(w.c, topic)
	delete(w.last, topic)
	for i, t := range w.order {
		if t == topic {
			w.order = append(w.order[:i], w.order[i+1:]...)
			break
		}
	}
	return nil
}

// wsSink writes WebSocket text messages, each one JSON object.
type wsSink struct {
	conn    *websocket.Conn
	timeout time.Duration
}

func (w *wsSink) begin() error {
	return w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
}

func (w *wsSink) send(_ *session, n *live.Notification, _ bool) error {
	return w.conn.WriteMessage(websocket.TextMessage, n.JSON())
}

func (w *wsSink) flush() error { return nil }

func (w *wsSink) keepalive() error {
	return w.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(w.timeout))
}

func (w *wsSink) bye(r live.Reason) {
	code, text := closeFrame(r)
	w.closeWith(code, text)
}

func (w *wsSink) closeWith(code int, text string) {
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(w.timeout))
}

// sendError writes {"error":{"code":...,"message":...}}.
func (w *wsSink) sendError(err error) error {
	body, _ := json.Marshal(struct {
		Error *api.Error `json:"error"`
	}{api.ErrorOf(err)})
	if err := w.begin(); err != nil {
		return err
	}
	return w.conn.WriteMessage(websocket.TextMessage, body)
}
