// Command httpfloor is the floor of a retrieve over net/http on this
// machine: a net/http server that answers every GET with the same bytes a
// retrieve of the bench topic answers (fetched once from a gateway), with
// no routing, authentication, parsing or cache. loadgen's retrieve run
// against it shows what net/http and the kernel cost per request, to
// compare the gateway's retrieve (and raw Redis) with:
//
//	httpfloor --listen 127.0.0.1:9001 --from 'http://127.0.0.1:8080/?hub.mode=retrieve&...' --auth bench:TOKEN
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve on (loopback)")
	from := flag.String("from", "", "URL whose answer is served (a gateway retrieve)")
	creds := flag.String("auth", "", "login:token for --from")
	coalesce := flag.Bool("coalesce", false, "hold each response's writes and send them in one write(2) when it is complete")
	flag.Parse()
	if err := run(*listen, *from, *creds, *coalesce); err != nil {
		fmt.Fprintln(os.Stderr, "httpfloor:", err)
		os.Exit(1)
	}
}

func run(listen, from, creds string, coalesce bool) error {
	if from == "" {
		return fmt.Errorf("--from is required")
	}
	req, err := http.NewRequest(http.MethodGet, from, nil)
	if err != nil {
		return err
	}
	if login, token, ok := strings.Cut(creds, ":"); ok {
		req.SetBasicAuth(login, token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("--from answered %d: %s", resp.StatusCode, body)
	}
	ctype := resp.Header.Get("Content-Type")
	length := strconv.Itoa(len(body))
	fmt.Printf("serving %d bytes (%s) on %s\n", len(body), ctype, listen)
	srv := &http.Server{
		Addr:              listen,
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Cache-Control", "no-cache")
			h.Set("Content-Type", ctype)
			h.Set("Content-Length", length)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
		}),
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if coalesce {
		ln = corkListener{ln}
		srv.ConnState = func(c net.Conn, st http.ConnState) {
			if cc, ok := c.(*corkConn); ok {
				switch st {
				case http.StateActive:
					cc.cork()
				case http.StateIdle, http.StateHijacked:
					cc.uncork()
				}
			}
		}
	}
	return srv.Serve(ln)
}

type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

// corkConn holds writes while corked and sends them at once when uncorked.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked || len(c.buf)+len(p) > 64<<10 {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

func (c *corkConn) uncork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if err := c.flushLocked(); err != nil {
		_ = c.Conn.Close()
	}
}

func (c *corkConn) Close() error {
	c.uncork()
	return c.Conn.Close()
}
