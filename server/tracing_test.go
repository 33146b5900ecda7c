package server_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
	"github.com/feedgate/feedgate/stream"
	"github.com/feedgate/feedgate/tracing"
)

// TestTraceOfAFatPing sends one fat ping carrying a client's traceparent
// to a gateway with a stream client and a webhook subscriber, and checks
// the spans in the SDK's in-memory exporter: the request's server span
// continues the client's trace; parse and append are its children; the
// live fan-out and the webhook POST are children of (and linked to) the
// append; the POST carries the trace on to the subscriber.
func TestTraceOfAFatPing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	tracing.Use(tp)
	t.Cleanup(func() { tracing.Use(nil); tp.Shutdown(context.Background()) })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := embedded.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	lh, err := live.New(st, live.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.New(st, st, ingest.Options{AllowPrivate: true, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	rs := retrieve.New(st, retrieve.Options{HubURL: public + "/"})
	streams, err := stream.New(lh, rs, stream.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	hubs := hub.New(st, ing, hub.Options{Live: lh, PublicHubURL: public + "/hub", Fetcher: ing.Fetcher()})
	done := make(chan struct{})
	go func() { defer close(done); hubs.Run(ctx) }()
	srv.Config.Handler = server.New(server.Config{
		Role: server.RoleAll, Store: st, Auth: auth.NewAuthenticator(st, time.Second), Retrieve: rs,
		Stream: streams, Poll: poll.New(lh, rs), Live: lh, Hub: hubs, Publish: ing, Callback: ing, Registry: reg,
	})
	srv.Start()
	defer func() {
		cancel()
		<-done
		lh.Shutdown(context.Background())
		srv.Close()
		streams.Close()
		lh.Close()
	}()
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "tracer", Rights: store.AllRights})
	if err != nil {
		t.Fatal(err)
	}

	posts := make(chan http.Header, 4)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		io.Copy(io.Discard, r.Body)
		posts <- r.Header.Clone()
	}))
	defer cb.Close()
	topic := "http://127.0.0.1:1/traced.xml" // never fetched: ingest does not run here
	do := func(req *http.Request) *http.Response {
		t.Helper()
		req.SetBasicAuth("tracer", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	sub, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {cb.URL}}.Encode()))
	sub.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp := do(sub); resp.StatusCode != 204 {
		t.Fatalf("subscribe: %s", resp.Status)
	}
	sreq, _ := http.NewRequest("GET", srv.URL+"/?hub.mode=retrieve&wait=stream&format=json&hub.topic="+url.QueryEscape(topic), nil)
	stream := do(sreq)
	defer stream.Body.Close()
	lines := bufio.NewReader(stream.Body)
	if _, err := lines.ReadString('\n'); err != nil {
		t.Fatalf("stream's first line: %v", err)
	}

	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ping, _ := http.NewRequest("POST", srv.URL+"/?hub.mode=publish&hub.topic="+url.QueryEscape(topic), strings.NewReader(
		`<rss version="2.0"><channel><title>T</title><item><guid>t-1</guid><title>one</title></item><item><guid>t-2</guid><title>two</title></item></channel></rss>`))
	ping.Header.Set("Content-Type", "application/rss+xml")
	ping.Header.Set("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	if resp := do(ping); resp.StatusCode != 200 {
		t.Fatalf("fat ping: %s", resp.Status)
	}
	got := make(chan error, 1)
	go func() { _, err := lines.ReadString('\n'); got <- err }()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("stream notification: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification on the stream within 10 s")
	}
	var posted http.Header
	select {
	case posted = <-posts:
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook POST within 10 s")
	}

	// Spans end after the writes they time: wait for all five.
	byName := func() map[string]tracetest.SpanStub {
		m := map[string]tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() == clientTrace || s.Name == "live.fanout" || s.Name == "webhook.deliver" {
				m[s.Name] = s
			}
		}
		return m
	}
	want := []string{"POST /", "feed.parse", "store.append", "live.fanout", "webhook.deliver"}
	deadline := time.Now().Add(10 * time.Second)
	var spans map[string]tracetest.SpanStub
	for {
		spans = byName()
		missing := []string{}
		for _, n := range want {
			if _, ok := spans[n]; !ok {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans missing after 10 s: %v (have %v)", missing, spans)
		}
		time.Sleep(20 * time.Millisecond) // spans end on other goroutines; bounded above
	}

	req := spans["POST /"]
	if req.Parent.SpanID().String() != clientSpan || req.SpanKind != trace.SpanKindServer {
		t.Errorf("the request span does not continue the client's span: parent %s kind %v", req.Parent.SpanID(), req.SpanKind)
	}
	app := spans["store.append"]
	for _, n := range want {
		s := spans[n]
		if s.SpanContext.TraceID().String() != clientTrace {
			t.Errorf("%s is in trace %s, not the client's %s", n, s.SpanContext.TraceID(), clientTrace)
		}
	}
	for _, n := range []string{"feed.parse", "store.append"} {
		if spans[n].Parent.SpanID() != req.SpanContext.SpanID() {
			t.Errorf("%s is not a child of the request span", n)
		}
	}
	for _, n := range []string{"live.fanout", "webhook.deliver"} {
		s := spans[n]
		if s.Parent.SpanID() != app.SpanContext.SpanID() {
			t.Errorf("%s is not a child of the append", n)
		}
		linked := false
		for _, l := range s.Links {
			linked = linked || l.SpanContext.SpanID() == app.SpanContext.SpanID()
		}
		if !linked {
			t.Errorf("%s has no link to the append", n)
		}
	}
	if c := attr(app, "feedgate.stored"); c != "2" {
		t.Errorf("append span: stored = %s, want 2", c)
	}
	if c := attr(spans["live.fanout"], "feedgate.consumers"); c != "2" { // the stream and webhook scheduling
		t.Errorf("fan-out span: consumers = %s, want 2", c)
	}
	dl := spans["webhook.deliver"]
	if tp := posted.Get("traceparent"); !strings.Contains(tp, clientTrace+"-"+dl.SpanContext.SpanID().String()) {
		t.Errorf("the webhook POST carries traceparent %q, want the delivery span of trace %s", tp, clientTrace)
	}
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}
