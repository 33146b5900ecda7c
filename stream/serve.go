package stream

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/retrieve"
)

// ServeStream answers a live retrieve whose topics the server already
// authorized: wait=stream (NDJSON for JSON, else Atom), Server-Sent Events,
// or a WebSocket.
//
// Over HTTP/1 the connection is taken over (hijacked) once the answer's
// head is decided and served by a goroutine of the broker: the handler
// returns at once, and an idle stream costs its own small state only.
// Over HTTP/2 the handler serves the stream until it ends.
func (s *Service) ServeStream(w http.ResponseWriter, r *http.Request, req retrieve.Request) {
	switch {
	case req.WebSocket:
		s.serveWebSocket(w, r, req)
	case req.Format == retrieve.SSE:
		s.serveHTTP(w, r, req, live.KindSSE)
	case req.Format == retrieve.JSON:
		s.serveHTTP(w, r, req, live.KindNDJSON)
	default:
		s.serveHTTP(w, r, req, live.KindAtom)
	}
}

// Content types of the streams.
const (
	ContentTypeNDJSON = "application/x-ndjson"
	ContentTypeSSE    = "text/event-stream; charset=utf-8"
	ContentTypeAtom   = "application/atom+xml; charset=utf-8"
)

// serveHTTP runs an NDJSON, Atom or SSE stream: the join (whose failures
// are still answered as HTTP errors), then live delivery (run.go).
func (s *Service) serveHTTP(w http.ResponseWriter, r *http.Request, req retrieve.Request, k live.Kind) {
	want := api.Want{JSON: k != live.KindAtom}
	p := auth.FromContext(r.Context())
	ctx := r.Context()
	cl, err := s.attach(p, k)
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

	var resume map[string]feed.Cursor
	if k == live.KindSSE && req.LastEventID != "" {
		if resume, err = parseResumeToken(req.LastEventID, req.Topics); err != nil {
			api.WriteError(w, want, err)
			return
		}
	}
	starts, err := s.startsFor(ctx, req, resume)
	if err != nil {
		api.WriteError(w, want, err)
		return
	}
	sess := s.newSession(cl, nil)
	ns, err := sess.load(ctx, starts)
	if err != nil {
		if ctx.Err() == nil {
			api.WriteError(w, want, err)
		}
		return
	}

	h := w.Header()
	switch k {
	case live.KindSSE:
		h.Set("Content-Type", ContentTypeSSE)
	case live.KindNDJSON:
		h.Set("Content-Type", ContentTypeNDJSON)
	default:
		h.Set("Content-Type", ContentTypeAtom)
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	for _, n := range ns {
		if n.Status.Gap {
			h.Set("Feedgate-Gap", "true")
		}
	}

	if r.ProtoMajor == 1 {
		if raw := s.hijack(w, r); raw != nil {
			// The connection is the session's now: the handler returns
			// once the first answers are sent, and an idle stream holds
			// no goroutine.
			handedOver = true
			cl.SetAbort(raw.abort)
			sess.out = s.newSink(k, raw)
			unwatch := s.close.watch(raw.conn, cl)
			sess.end = func(graceful bool) {
				unwatch()
				r := cl.Reason()
				raw.finish(graceful && r != live.ReasonSlow && r != live.ReasonGone)
				s.detach(cl)
			}
			s.begin(sess, starts, ns)
			return
		}
	}

	uw := unwrap(w)
	out := &httpOut{w: uw, rc: http.NewResponseController(uw), timeout: s.opts.WriteTimeout}
	cl.SetAbort(out.abort)
	defer func() {
		// A connection kept alive for another request must not keep this
		// stream's deadline; one that failed or was cut is closed anyway.
		if !out.failed && cl.Reason() != live.ReasonSlow {
			_ = out.rc.SetWriteDeadline(time.Time{})
		}
	}()
	// The server's read timeout, if any, must not end the stream.
	_ = out.rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	sess.out = s.newSink(k, out)
	// The response lives while the handler runs: it waits for the end of
	// the session, or of the request.
	s.begin(sess, starts, ns)
	select {
	case <-sess.done:
	case <-ctx.Done():
		cl.Drop(live.ReasonGone)
		<-sess.done
	}
}

// hijack takes over an HTTP/1 connection and prepares the response head
// from the headers set so far; nil when the writer cannot be hijacked.
func (s *Service) hijack(w http.ResponseWriter, r *http.Request) *rawOut {
	h := w.Header()
	chunked := r.ProtoAtLeast(1, 1)
	if chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	conn, _, err := http.NewResponseController(w).Hijack()
	if u, ok := conn.(interface{ Uncorked() net.Conn }); ok {
		// The socket itself, under the server's write-holding wrapper
		// (server.Corked): vectored writes and its descriptor.
		conn = u.Uncorked()
	}
	if err != nil {
		h.Del("Transfer-Encoding")
		h.Del("Connection")
		h.Del("Date")
		return nil
	}
	_ = conn.SetReadDeadline(time.Time{})
	return newRawOut(conn, s.opts.WriteTimeout, chunked, responseHead(r.Proto, h))
}

func (s *Service) newSink(k live.Kind, o byteOut) sink {
	switch k {
	case live.KindSSE:
		return &sseSink{o: o, retry: s.opts.Retry}
	case live.KindNDJSON:
		return &ndjsonSink{o: o}
	default:
		return &atomSink{o: o, hubURL: s.rs.HubURL()}
	}
}

func (s *Service) debugEnd(ctx context.Context, k live.Kind, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "live connection ended", slog.String("kind", k.String()), slog.Any("err", err))
}

// unwrap returns the net/http writer under any wrapping writer (a router's
// or a middleware's), whose FlushError reports write failures (wrappers may
// swallow them). Wrappers share the header map.
func unwrap(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}
