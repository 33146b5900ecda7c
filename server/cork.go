package server

import (
	"bytes"
	"net"
	"net/http"
	"sync"
)

// Corked wraps a plain-TCP listener of the hub endpoint so that each HTTP/1
// answer leaves in one write: net/http writes a response's head and body
// through a 4 KiB buffer, which makes two write(2) calls — two TCP segments —
// for any answer over about 4 KiB (a retrieve of ten items). A connection is
// corked while a request is active (CorkState) and its writes are held; they
// are sent together when the answer is complete (the connection goes idle),
// when they pass 64 KiB, or when the connection is taken over (a stream, a
// WebSocket: they write straight to the socket from then on). Only
// responses that end are corked: every live form on this listener takes
// its connection over. Not for TLS listeners.
func Corked(ln net.Listener) net.Listener { return corkListener{ln} }

// CorkState is the http.Server's ConnState for a Corked listener; it calls
// next (when set) with the same arguments.
func CorkState(next func(net.Conn, http.ConnState)) func(net.Conn, http.ConnState) {
	return func(c net.Conn, st http.ConnState) {
		if cc, ok := c.(*corkConn); ok {
			switch st {
			case http.StateActive:
				cc.cork()
			case http.StateIdle, http.StateHijacked:
				cc.uncork()
			}
		}
		if next != nil {
			next(c, st)
		}
	}
}

type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

// maxCorked bounds the bytes held for one answer.
const maxCorked = 64 << 10

// corkConn holds writes while corked.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	held   []byte
}

// interim is how net/http writes an interim answer: 100 Continue, which a
// client waits for before it sends its body, goes out at once.
var interim = []byte("HTTP/1.1 1")

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked || len(c.held)+len(p) > maxCorked || (len(c.held) == 0 && bytes.HasPrefix(p, interim)) {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	return len(p), nil
}

func (c *corkConn) flushLocked() error {
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	if cap(c.held) > 16<<10 {
		c.held = nil
	} else {
		c.held = c.held[:0]
	}
	return err
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork sends what is held; a failure closes the connection, which the
// server notices at its next read.
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

// Uncorked returns the connection under the wrapper, for a handler that
// took the connection over (its writes are not held any more) and wants
// the socket itself (vectored writes, its descriptor).
func (c *corkConn) Uncorked() net.Conn {
	c.uncork()
	return c.Conn
}
