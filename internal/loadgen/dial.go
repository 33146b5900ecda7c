package loadgen

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Dialer opens TCP connections to one loopback address. With several
// source addresses it spreads connections over 127.0.0.2, 127.0.0.3, ...
// (round robin) so that tens of thousands of connections to one
// listener do not run out of ephemeral ports.
type Dialer struct {
	addr    string
	sources []*net.TCPAddr
	next    atomic.Uint64
	timeout time.Duration
}

// NewDialer returns a dialer for addr (already checked to be loopback).
// sources is the number of source addresses to spread over; 0 or 1 lets
// the kernel pick (127.0.0.1). Spreading needs an IPv4 target.
func NewDialer(addr string, sources int) (*Dialer, error) {
	d := &Dialer{addr: addr, timeout: 10 * time.Second}
	if sources <= 1 {
		return d, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); ip == nil || ip.To4() == nil {
		return nil, fmt.Errorf("spreading over source addresses needs an IPv4 target (got %s); use --source-ips 1", addr)
	}
	if sources > 250 {
		return nil, fmt.Errorf("--source-ips %d: at most 250 (127.0.0.2 to 127.0.0.251)", sources)
	}
	for i := 0; i < sources; i++ {
		d.sources = append(d.sources, &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))})
	}
	return d, nil
}

// AutoSources is the number of source addresses used for n connections
// when the user did not choose: one per 2 000 connections, so each source
// address uses only a small part of the ephemeral port range (TIME_WAIT
// sockets of earlier runs included).
func AutoSources(n int) int {
	if n <= 2000 {
		return 1
	}
	return min((n+1999)/2000, 250)
}

// Addr is the address the dialer connects to.
func (d *Dialer) Addr() string { return d.addr }

// Dial connects to the target address.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	return d.DialContext(ctx, "tcp", d.addr)
}

// DialContext connects to the dialer's own address; addr (what net/http or
// gorilla/websocket ask for) must be a loopback address too. Nothing is
// resolved: "localhost" means the checked target address.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if addr != d.addr {
		if _, err := CheckLoopbackAddr(addr); err != nil {
			return nil, err
		}
	}
	addr = d.addr
	network = "tcp"
	nd := net.Dialer{Timeout: d.timeout, KeepAlive: -1}
	if len(d.sources) > 0 {
		nd.LocalAddr = d.sources[d.next.Add(1)%uint64(len(d.sources))]
	}
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}

// RaiseNoFile raises the soft limit of open files to the hard limit and
// checks that need descriptors fit; it returns the new soft limit.
func RaiseNoFile(need int) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	if uint64(need) > lim.Cur {
		return lim.Cur, fmt.Errorf("%d connections need about %d open files but the limit is %d: raise the hard limit (ulimit -Hn, /etc/security/limits.conf) or use fewer clients", need-64, need, lim.Cur)
	}
	return lim.Cur, nil
}
