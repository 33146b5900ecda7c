package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestStreamOverHTTP2 runs SSE and NDJSON clients against the fake hub
// served over TLS with HTTP/2: every client gets every item, the streams
// are HTTP/2 requests, and they share the connections --h2-streams says.
func TestStreamOverHTTP2(t *testing.T) {
	for _, kind := range []Kind{KindSSE, KindNDJSON} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			h := &fakeHub{t: t, login: "bench", token: "secret-token-123", listeners: map[chan []byte]bool{}, changed: make(chan struct{})}
			var h2Streams, h1Streams atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("wait") == "stream" || strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
					if r.ProtoMajor == 2 {
						h2Streams.Add(1)
					} else {
						h1Streams.Add(1)
					}
				}
				h.ServeHTTP(w, r)
			}))
			srv.EnableHTTP2 = true
			srv.StartTLS()
			t.Cleanup(srv.Close)

			cfg := streamConfig(t, srv.URL, kind)
			pool := x509.NewCertPool()
			pool.AddCert(srv.Certificate())
			cfg.Target.TLS = &tls.Config{RootCAs: pool}
			cfg.H2Streams = 8 // 20 clients: 3 connections
			res, err := RunStream(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(res)
			if !res.OK() || res.Received != 20*15 {
				t.Fatalf("run not clean:\n%s", res)
			}
			if res.H2Conns != 3 {
				t.Errorf("%d HTTP/2 connections, want 3 (20 clients, 8 per connection)", res.H2Conns)
			}
			if h2Streams.Load() != 20 || h1Streams.Load() != 0 {
				t.Errorf("streams: %d over HTTP/2, %d over HTTP/1.1; want 20 and 0", h2Streams.Load(), h1Streams.Load())
			}
		})
	}
}

func TestHTTPSNeedsTrustAndStreams(t *testing.T) {
	cfg := streamConfig(t, "https://127.0.0.1:1", KindSSE)
	if _, err := RunStream(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "--ca") {
		t.Errorf("an https run without a trusted certificate: %v", err)
	}
	cfg = streamConfig(t, "https://127.0.0.1:1", KindWS)
	cfg.Target.TLS = &tls.Config{}
	if _, err := RunStream(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "over https") {
		t.Errorf("a WebSocket run over https: %v", err)
	}
	if err := cfg.Target.PlainHTTP("retrieve"); err == nil {
		t.Error("the lean client accepted an https target")
	}
}
