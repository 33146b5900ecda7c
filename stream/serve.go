package stream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/retrieve"
)

// ServeStream answers a live retrieve whose topics the server already
// authorized: wait=stream (NDJSON for JSON, else Atom), Server-Sent Events,
// or a WebSocket.
func (b *Broker) ServeStream(c *gin.Context, p *auth.Principal, req retrieve.Request) {
	switch {
	case req.WebSocket:
		b.serveWebSocket(c, p, req)
	case req.Format == retrieve.SSE:
		b.serveHTTP(c, p, req, kindSSE)
	case req.Format == retrieve.JSON:
		b.serveHTTP(c, p, req, kindNDJSON)
	default:
		b.serveHTTP(c, p, req, kindAtom)
	}
}

// Content types of the streams.
const (
	ContentTypeNDJSON = "application/x-ndjson"
	ContentTypeSSE    = "text/event-stream; charset=utf-8"
	ContentTypeAtom   = "application/atom+xml; charset=utf-8"
)

// serveHTTP runs an NDJSON, Atom or SSE stream: the join (errors still
// answered as HTTP errors), then the live loop.
func (b *Broker) serveHTTP(gc *gin.Context, p *auth.Principal, req retrieve.Request, k kind) {
	want := api.Want{JSON: k != kindAtom}
	ctx := gc.Request.Context()
	cl, err := b.attach(p, k, b.opts.ClientQueue)
	if err != nil {
		api.WriteError(gc.Writer, want, err)
		return
	}
	defer b.detach(cl)

	w := unwrap(gc.Writer)
	out := &httpOut{w: w, rc: http.NewResponseController(w), timeout: b.opts.WriteTimeout}
	cl.abort = out.abort
	defer func() {
		// A connection kept alive for another request must not keep this
		// stream's deadline; one that failed or was cut is closed anyway.
		if !out.failed && cl.reason() != reasonSlow {
			_ = out.rc.SetWriteDeadline(time.Time{})
		}
	}()

	var resume map[string]feed.Cursor
	if k == kindSSE && req.LastEventID != "" {
		if resume, err = parseResumeToken(req.LastEventID, req.Topics); err != nil {
			api.WriteError(gc.Writer, want, err)
			return
		}
	}
	starts, err := b.startsFor(ctx, req, resume)
	if err != nil {
		api.WriteError(gc.Writer, want, err)
		return
	}
	var snk sink
	switch k {
	case kindSSE:
		snk = &sseSink{httpOut: out, retry: b.opts.Retry}
	case kindNDJSON:
		snk = &ndjsonSink{httpOut: out}
	default:
		snk = &atomSink{httpOut: out, hubURL: b.rs.HubURL()}
	}
	s := b.newSession(cl, snk)
	ns, err := s.load(ctx, starts)
	if err != nil {
		if ctx.Err() == nil {
			api.WriteError(gc.Writer, want, err)
		}
		return
	}

	h := gc.Writer.Header()
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
	// The server's read timeout, if any, must not end the stream.
	_ = out.rc.SetReadDeadline(time.Time{})
	gc.Writer.WriteHeader(http.StatusOK)
	gc.Writer.WriteHeaderNow()
	if ss, ok := snk.(*sseSink); ok {
		if err := ss.open(); err != nil {
			return
		}
	}
	if err := s.emit(ctx, starts, ns); err != nil {
		s.writeFailed(err)
		b.debugEnd(ctx, k, err)
		return
	}
	if err := s.loop(ctx); err != nil {
		b.debugEnd(ctx, k, err)
	}
}

func (b *Broker) debugEnd(ctx context.Context, k kind, err error) {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	b.log.LogAttrs(ctx, slog.LevelDebug, "live connection ended", slog.String("kind", k.String()), slog.Any("err", err))
}

// unwrap returns the net/http writer under gin's, whose FlushError reports
// write failures (gin's Flush swallows them). The headers were set through
// gin, which shares the header map.
func unwrap(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// httpOut writes a streamed HTTP response with a deadline on every round.
type httpOut struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
	failed  bool
}

func (o *httpOut) begin() error {
	if err := o.rc.SetWriteDeadline(time.Now().Add(o.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (o *httpOut) write(p []byte) error {
	_, err := o.w.Write(p)
	o.failed = o.failed || err != nil
	return err
}

func (o *httpOut) flush() error {
	err := o.rc.Flush()
	o.failed = o.failed || err != nil
	return err
}

// abort makes a write in progress fail now (the client is dropped).
func (o *httpOut) abort() { _ = o.rc.SetWriteDeadline(time.Unix(1, 0)) }

// writeNow writes p as its own round.
func (o *httpOut) writeNow(p []byte) error {
	if err := o.begin(); err != nil {
		return err
	}
	if err := o.write(p); err != nil {
		return err
	}
	return o.flush()
}
