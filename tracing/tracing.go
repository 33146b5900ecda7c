// Package tracing owns feedgate's OpenTelemetry traces: the exporter
// (OTLP over HTTP, only when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set), and the spans of an item's
// way through the gateway: the request or fetch that brought it, parse,
// store append, live fan-out and webhook delivery.
//
// Fan-out and deliveries happen later, in other goroutines, for items
// that may have come from several appends. The append of each batch
// records its span context by topic and cursor range (Appended); the
// fan-out of a notification (Fanout, called once per notification, never
// per client) and a webhook POST (StartDelivery) look the cursors up and
// start a span whose parent is the newest append and whose links are all
// of them. The record is per node: a notification fanned out on a node
// other than the one that stored its items has a span of its own trace.
// With tracing off every function here costs one atomic load.
package tracing

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/ratelog"
)

// Name is the instrumentation scope of feedgate's spans.
const Name = "github.com/feedgate/feedgate"

var (
	enabled atomic.Bool
	tracer  atomic.Pointer[trace.Tracer]
)

func init() {
	t := noop.NewTracerProvider().Tracer(Name)
	tracer.Store(&t)
}

// Enabled reports whether spans are recorded.
func Enabled() bool { return enabled.Load() }

// Use makes tp the provider of feedgate's spans (and the global one), and
// turns tracing on; tests pass an SDK provider with an in-memory exporter.
// Use(nil) turns tracing off.
func Use(tp trace.TracerProvider) {
	if tp == nil {
		enabled.Store(false)
		return
	}
	t := tp.Tracer(Name)
	tracer.Store(&t)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	enabled.Store(true)
}

// Setup turns tracing on with the OTLP/HTTP exporter when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) variable is set; the
// exporter reads the other OTEL_* variables (headers, timeout, protocol
// details) itself. The returned function flushes and stops it; it is a
// no-op when tracing is off.
// Export errors (a collector that is down) are logged to log, at most one
// line a minute.
func Setup(ctx context.Context, version string, log *slog.Logger) (shutdown func(context.Context) error, err error) {
	off := func(context.Context) error { return nil }
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return off, nil
	}
	limit := ratelog.New(ratelog.Options{})
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		if ok, held := limit.Allow("otel", time.Now(), false); ok {
			log.LogAttrs(context.Background(), slog.LevelWarn, "tracing: exporting spans failed", slog.String("err", err.Error()), ratelog.Suppressed(held))
		}
	}))
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return off, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName("feedgate"), semconv.ServiceVersion(version)))
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return off, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	Use(tp)
	return func(ctx context.Context) error {
		Use(nil)
		return tp.Shutdown(ctx)
	}, nil
}

// Mode says whether spans are exported ("otlp") or not ("off").
func Mode() string {
	if enabled.Load() {
		return "otlp"
	}
	return "off"
}

// Start starts a span (a no-op span when tracing is off).
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return (*tracer.Load()).Start(ctx, name, trace.WithAttributes(attrs...))
}

// StartServer starts the span of an incoming request, continuing the
// caller's trace when it sent a traceparent header.
func StartServer(ctx context.Context, header map[string][]string, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(header))
	return (*tracer.Load()).Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}

// Inject writes the trace context of ctx into outgoing headers.
func Inject(ctx context.Context, header map[string][]string) {
	if enabled.Load() {
		otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(header))
	}
}

// Fail marks span as failed with err.
func Fail(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}

// Topic is the attribute naming a topic.
func Topic(topic string) attribute.KeyValue { return attribute.String("feedgate.topic", topic) }

// Cursors are the attributes of a cursor range.
func Cursors(first, last feed.Cursor) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.Int64("feedgate.cursor.first", int64(first)), attribute.Int64("feedgate.cursor.last", int64(last))}
}

// Appending records that the span of ctx is appending items to topic, for
// the fan-out and deliveries of those items to link to; call done with the
// cursors stored (first > last, or zero, when none were). The record is
// made before the append, since the live hub may fan the items out before
// Append returns: meanwhile, a fan-out of the topic links to every append
// in flight.
func Appending(ctx context.Context, topic string) (done func(first, last feed.Cursor)) {
	if !enabled.Load() {
		return noDone
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return noDone
	}
	rec := appends.add(topic, sc)
	return func(first, last feed.Cursor) { appends.done(topic, rec, first, last) }
}

func noDone(feed.Cursor, feed.Cursor) {}

// Fanout starts the span of one notification's fan-out (items first..last
// of topic); the live hub calls it once per notification and calls the
// returned function with the number of consumers once the notification is
// handed to its consumers (streams, polls, caches, webhook scheduling).
func Fanout(topic string, first, last feed.Cursor) (end func(consumers int)) {
	if !enabled.Load() {
		return noEnd
	}
	_, span := startCaused(context.Background(), "live.fanout", topic, first, last, trace.SpanKindInternal)
	return func(consumers int) {
		span.SetAttributes(attribute.Int("feedgate.consumers", consumers))
		span.End()
	}
}

func noEnd(int) {}

// StartDelivery starts the span of a webhook POST of topic's items
// first..last to callback (its query string left out: it may hold a
// subscriber's secret).
func StartDelivery(ctx context.Context, topic string, first, last feed.Cursor, callback string) (context.Context, trace.Span) {
	if !enabled.Load() {
		return ctx, trace.SpanFromContext(ctx)
	}
	ctx, span := startCaused(ctx, "webhook.deliver", topic, first, last, trace.SpanKindClient)
	span.SetAttributes(attribute.String("url.full", redact(callback)))
	return ctx, span
}

// startCaused starts a span caused by the appends of first..last: the
// newest of them is its parent, all are its links.
func startCaused(ctx context.Context, name, topic string, first, last feed.Cursor, kind trace.SpanKind) (context.Context, trace.Span) {
	causes := appends.find(topic, first, last)
	opts := []trace.SpanStartOption{trace.WithSpanKind(kind), trace.WithAttributes(Topic(topic)), trace.WithAttributes(Cursors(first, last)...)}
	if len(causes) > 0 {
		links := make([]trace.Link, len(causes))
		for i, sc := range causes {
			links[i] = trace.Link{SpanContext: sc}
		}
		opts = append(opts, trace.WithLinks(links...))
		ctx = trace.ContextWithRemoteSpanContext(ctx, causes[len(causes)-1])
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	return (*tracer.Load()).Start(ctx, name, opts...)
}

// appendLog remembers the span contexts of recent appends, a few per
// topic, for a bounded number of topics.
type appendLog struct {
	mu     sync.Mutex
	topics map[string][]*appendRec
	order  []string // topics in the order first recorded, to forget the oldest
}

type appendRec struct {
	pending     bool // the append has not returned yet
	first, last feed.Cursor
	sc          trace.SpanContext
}

const (
	perTopic  = 16
	maxTopics = 4096
)

var appends = &appendLog{topics: map[string][]*appendRec{}}

func (l *appendLog) add(topic string, sc trace.SpanContext) *appendRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs, ok := l.topics[topic]
	if !ok {
		if len(l.order) >= maxTopics {
			delete(l.topics, l.order[0])
			l.order = l.order[1:]
		}
		l.order = append(l.order, topic)
	}
	if len(recs) >= perTopic {
		recs = recs[1:]
	}
	r := &appendRec{pending: true, sc: sc}
	l.topics[topic] = append(recs, r)
	return r
}

func (l *appendLog) done(topic string, r *appendRec, first, last feed.Cursor) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.pending, r.first, r.last = false, first, last
	if first == 0 || first > last { // nothing stored: forget it
		recs := l.topics[topic]
		for i, x := range recs {
			if x == r {
				l.topics[topic] = append(recs[:i:i], recs[i+1:]...)
				break
			}
		}
	}
}

// find returns the span contexts of the appends that stored items in
// first..last or are still in flight, oldest first.
func (l *appendLog) find(topic string, first, last feed.Cursor) []trace.SpanContext {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []trace.SpanContext
	for _, r := range l.topics[topic] {
		if r.pending || (r.last >= first && r.first <= last) {
			out = append(out, r.sc)
		}
	}
	return out
}
