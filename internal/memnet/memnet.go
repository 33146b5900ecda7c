// Package memnet is an in-memory network for tests that run in a
// testing/synctest bubble. Real sockets keep a bubble's clock from
// advancing (a goroutine waiting on a socket is not durably blocked), so
// there the servers of a test listen on a Network and clients dial it
// (fetch.Options.Dial): every connection is a net.Pipe, whose goroutines
// block on channels of the bubble.
package memnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
)

// Network is a set of listeners by address. The zero value is not usable;
// call New.
type Network struct {
	mu        sync.Mutex
	listeners map[string]*Listener
	next      int
}

// New returns an empty network.
func New() *Network {
	return &Network{listeners: make(map[string]*Listener)}
}

// Listen returns a listener on a new loopback address ("127.0.0.1:<n>").
func (n *Network) Listen() *Listener {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	l := &Listener{
		net:   n,
		addr:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10000 + n.next},
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
	}
	n.listeners[l.addr.String()] = l
	return l
}

// Dial connects to the listener at address; with no listener there the
// connection is refused, as on a real network. It fits
// fetch.Options.Dial and http.Transport.DialContext.
func (n *Network) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	n.mu.Lock()
	l := n.listeners[address]
	n.mu.Unlock()
	refused := &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	if l == nil {
		return nil, refused
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, refused
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Client returns an HTTP client whose connections go over the network.
func (n *Network) Client() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: n.Dial}}
}

// Serve serves h on a new listener until the test ends and returns its base
// URL ("http://127.0.0.1:<n>").
func (n *Network) Serve(t testing.TB, h http.Handler) string {
	t.Helper()
	l := n.Listen()
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "http://" + l.Addr().String()
}

// Listener is a net.Listener on a Network.
type Listener struct {
	net   *Network
	addr  *net.TCPAddr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("accept on %s: %w", l.addr, net.ErrClosed)
	}
}

// Close stops listening: later dials are refused.
func (l *Listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.net.mu.Lock()
		delete(l.net.listeners, l.addr.String())
		l.net.mu.Unlock()
	})
	return nil
}

// Addr returns the listener's address.
func (l *Listener) Addr() net.Addr { return l.addr }
