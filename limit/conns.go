package limit

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Conns caps the concurrent connections per remote address that have not
// (yet) carried an authenticated request: an attacker without credentials
// cannot hold more than Max of a node's file descriptors per address, while
// connections of authenticated clients (streams, sockets) are not counted.
// Wire it as the http.Server's ConnContext and ConnState, and call
// Authenticated with the context of each authenticated request.
type Conns struct {
	max int

	mu     sync.Mutex
	conns  map[net.Conn]*connEntry
	byAddr map[netip.Addr]int
	// refused counts connections closed at once for being over the cap.
	refused int64
}

type connEntry struct {
	c       *Conns
	addr    netip.Addr
	counted bool
}

type connKey struct{}

// NewConns returns a cap of max unauthenticated connections per address; 0
// or less returns nil, which caps nothing.
func NewConns(max int) *Conns {
	if max <= 0 {
		return nil
	}
	return &Conns{max: max, conns: map[net.Conn]*connEntry{}, byAddr: map[netip.Addr]int{}}
}

func remoteAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// ConnContext registers a new connection (http.Server.ConnContext).
func (cs *Conns) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if cs == nil {
		return ctx
	}
	e := &connEntry{c: cs, addr: remoteAddr(c)}
	cs.mu.Lock()
	cs.conns[c] = e
	cs.mu.Unlock()
	return context.WithValue(ctx, connKey{}, e)
}

// refusal is written to a connection over the cap before it is closed.
var refusal = func() []byte {
	msg := "too many connections without credentials from your address: authenticate your requests, or close idle connections, and retry\n"
	return fmt.Appendf(nil, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
}()

// ConnState counts connections as they open and close
// (http.Server.ConnState); one over the cap is answered 429 and closed at
// once.
func (cs *Conns) ConnState(c net.Conn, state http.ConnState) {
	if cs == nil {
		return
	}
	switch state {
	case http.StateNew:
		cs.mu.Lock()
		e := cs.conns[c]
		over := e != nil && e.addr.IsValid() && cs.byAddr[e.addr] >= cs.max
		if e != nil && !over {
			e.counted = true
			cs.byAddr[e.addr]++
		}
		if over {
			cs.refused++
		}
		cs.mu.Unlock()
		if over {
			if _, isTLS := c.(*tls.Conn); !isTLS {
				_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
				_, _ = c.Write(refusal)
			}
			_ = c.Close()
		}
	case http.StateClosed, http.StateHijacked:
		cs.mu.Lock()
		if e := cs.conns[c]; e != nil {
			cs.uncount(e)
			delete(cs.conns, c)
		}
		cs.mu.Unlock()
	}
}

func (cs *Conns) uncount(e *connEntry) {
	if !e.counted {
		return
	}
	e.counted = false
	if n := cs.byAddr[e.addr] - 1; n > 0 {
		cs.byAddr[e.addr] = n
	} else {
		delete(cs.byAddr, e.addr)
	}
}

// Authenticated stops counting the connection of a request (its context)
// against its address's cap.
func Authenticated(ctx context.Context) {
	e, _ := ctx.Value(connKey{}).(*connEntry)
	if e == nil {
		return
	}
	e.c.mu.Lock()
	e.c.uncount(e)
	e.c.mu.Unlock()
}

// Unauthenticated returns how many connections of addr are counted now.
func (cs *Conns) Unauthenticated(addr netip.Addr) int {
	if cs == nil {
		return 0
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.byAddr[addr]
}

// Refused returns how many connections were closed for being over the cap.
func (cs *Conns) Refused() int64 {
	if cs == nil {
		return 0
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.refused
}
