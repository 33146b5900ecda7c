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
func (b *Broker) ServeStream(w http.ResponseWriter, r *http.Request, req retrieve.Request) {
	switch {
	case req.WebSocket:
		b.serveWebSocket(w, r, req)
	case req.Format == retrieve.SSE:
		b.serveHTTP(w, r, req, kindSSE)
	case req.Format == retrieve.JSON:
		b.serveHTTP(w, r, req, kindNDJSON)
	default:
		b.serveHTTP(w, r, req, kindAtom)
	}
}

// Content types of the streams.
const (
	ContentTypeNDJSON = "application/x-ndjson"
	ContentTypeSSE    = "text/event-stream; charset=utf-8"
	ContentTypeAtom   = "application/atom+xml; charset=utf-8"
)

// serveHTTP runs an NDJSON, Atom or SSE stream: the join (whose failures
// are still answered as HTTP errors), then the live loop.
func (b *Broker) serveHTTP(w http.ResponseWriter, r *http.Request, req retrieve.Request, k kind) {
	want := api.Want{JSON: k != kindAtom}
	p := auth.FromContext(r.Context())
	ctx := r.Context()
	cl, err := b.attach(p, k, b.opts.ClientQueue)
	if err != nil {
		api.WriteError(w, want, err)
		return
	}
	handedOver := false
	defer func() {
		if !handedOver {
			b.detach(cl)
		}
	}()

	var resume map[string]feed.Cursor
	if k == kindSSE && req.LastEventID != "" {
		if resume, err = parseResumeToken(req.LastEventID, req.Topics); err != nil {
			api.WriteError(w, want, err)
			return
		}
	}
	starts, err := b.startsFor(ctx, req, resume)
	if err != nil {
		api.WriteError(w, want, err)
		return
	}
	s := b.newSession(cl, nil)
	ns, err := s.load(ctx, starts)
	if err != nil {
		if ctx.Err() == nil {
			api.WriteError(w, want, err)
		}
		return
	}

	h := w.Header()
	switch k {
	case kindSSE:
		h.Set("Content-Type", ContentTypeSSE)
	case kindNDJSON:
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
		if raw := b.hijack(w, r); raw != nil {
			handedOver = true
			cl.setAbort(raw.abort)
			s.out = b.newSink(k, raw)
			go func() {
				defer b.detach(cl)
				readerDone := make(chan struct{})
				go watchClose(raw.conn, cl, readerDone)
				graceful := b.stream(b.ctx, s, starts, ns)
				r := cl.reason()
				raw.finish(graceful && r != reasonSlow && r != reasonGone)
				<-readerDone
			}()
			return
		}
	}

	uw := unwrap(w)
	out := &httpOut{w: uw, rc: http.NewResponseController(uw), timeout: b.opts.WriteTimeout}
	cl.setAbort(out.abort)
	defer func() {
		// A connection kept alive for another request must not keep this
		// stream's deadline; one that failed or was cut is closed anyway.
		if !out.failed && cl.reason() != reasonSlow {
			_ = out.rc.SetWriteDeadline(time.Time{})
		}
	}()
	// The server's read timeout, if any, must not end the stream.
	_ = out.rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	s.out = b.newSink(k, out)
	b.stream(ctx, s, starts, ns)
}

// hijack takes over an HTTP/1 connection and prepares the response head
// from the headers set so far; nil when the writer cannot be hijacked.
func (b *Broker) hijack(w http.ResponseWriter, r *http.Request) *rawOut {
	h := w.Header()
	chunked := r.ProtoAtLeast(1, 1)
	if chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		h.Del("Transfer-Encoding")
		h.Del("Connection")
		h.Del("Date")
		return nil
	}
	_ = conn.SetReadDeadline(time.Time{})
	return newRawOut(conn, b.opts.WriteTimeout, chunked, responseHead(r.Proto, h))
}

// watchClose reads a hijacked stream connection until it fails: the
// client closed it (or the stream ended and closed it), which drops the
// client at once rather than at the next write.
func watchClose(conn net.Conn, c *client, done chan<- struct{}) {
	defer close(done)
	var buf [1]byte
	for {
		if _, err := conn.Read(buf[:]); err != nil {
			c.drop(reasonGone)
			return
		}
	}
}

func (b *Broker) newSink(k kind, o byteOut) sink {
	switch k {
	case kindSSE:
		return &sseSink{o: o, retry: b.opts.Retry}
	case kindNDJSON:
		return &ndjsonSink{o: o}
	default:
		return &atomSink{o: o, hubURL: b.rs.HubURL()}
	}
}

// stream sends the first answers and runs the live loop; it reports
// whether the stream ended on purpose (shutdown, lifetime) rather than by
// a failure.
func (b *Broker) stream(ctx context.Context, s *session, starts []start, ns []*feed.Notification) bool {
	if ss, ok := s.out.(*sseSink); ok {
		if err := ss.open(); err != nil {
			s.writeFailed(err)
			return false
		}
	}
	if err := s.emit(ctx, starts, ns); err != nil {
		s.writeFailed(err)
		b.debugEnd(ctx, s.c.kind, err)
		return false
	}
	err := s.loop(ctx)
	if err != nil {
		b.debugEnd(ctx, s.c.kind, err)
	}
	return err == nil
}

func (b *Broker) debugEnd(ctx context.Context, k kind, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	b.log.LogAttrs(ctx, slog.LevelDebug, "live connection ended", slog.String("kind", k.String()), slog.Any("err", err))
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
