package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/server"
)

// countingListener counts the writes made on its connections.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func serveCorked(t *testing.T, h http.Handler) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	writes := new(atomic.Int64)
	srv := &http.Server{Handler: h, ConnState: server.CorkState(nil), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(server.Corked(countingListener{ln, writes}))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), writes
}

func rawConn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// TestCorkedAnswersInOneWrite: an answer over net/http's 4 KiB buffer goes
// out in one write, on every request of a kept-alive connection.
func TestCorkedAnswersInOneWrite(t *testing.T) {
	body := strings.Repeat("x", 10<<10)
	addr, writes := serveCorked(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	c, br := rawConn(t, addr)
	for i := range 3 {
		before := writes.Load()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != body {
			t.Fatalf("request %d: %d bytes (%v), want the %d-byte body", i, len(got), err, len(body))
		}
		if n := writes.Load() - before; n != 1 {
			t.Errorf("request %d: the answer took %d writes, want 1", i, n)
		}
	}
}

// TestCorkedContinue: 100 Continue is not held back, so a client waiting
// for it sends its body.
func TestCorkedContinue(t *testing.T) {
	addr, _ := serveCorked(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	c, br := rawConn(t, addr)
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("waiting for 100 Continue: %q %v", line, err)
	}
	if _, err := br.ReadString('\n'); err != nil { // the empty line after it
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if string(got) != "hello" {
		t.Fatalf("echo %q, want hello", got)
	}
}

// TestCorkedHijack: a connection taken over writes straight through.
func TestCorkedHijack(t *testing.T) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	addr, _ := serveCorked(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		if u, ok := conn.(interface{ Uncorked() net.Conn }); ok {
			conn = u.Uncorked()
		}
		wg.Go(func() {
			defer conn.Close()
			_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst\n")
			<-release
		})
	}))
	defer wg.Wait()
	defer close(release)
	c, br := rawConn(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line of a taken-over connection %q %v, want it before the handler ends", line, err)
	}
}
