package memnet

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// TestServeInBubble: a server on the network answers a client in a bubble,
// also on a connection kept alive while the bubble's clock moves on; once
// the listener is closed, dials are refused.
func TestServeInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		l := n.Listen()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(l) }()
		c := n.Client()
		url := "http://" + l.Addr().String()
		for i := range 3 {
			resp, err := c.Get(url)
			if err != nil {
				t.Fatalf("GET %d: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "ok" {
				t.Fatalf("GET %d answered %q", i, b)
			}
			time.Sleep(time.Minute)
		}
		c.CloseIdleConnections()
		_ = srv.Close()
		<-done
		if _, err := n.Dial(context.Background(), "tcp", l.Addr().String()); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Dial after Close = %v, want connection refused", err)
		}
		if _, err := n.Dial(context.Background(), "tcp", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("Dial to nobody = %v, want connection refused", err)
		}
	})
}
