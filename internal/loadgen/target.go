// Package loadgen is the logic of cmd/loadgen, feedgate's load generator:
// retrieve throughput against the gateway and raw Redis, and live delivery
// runs (NDJSON, SSE, WebSocket, long-poll) measuring publish→client latency,
// losses, duplicates and the gateway's memory per connection.
//
// It talks only to loopback addresses: every target is checked by
// ParseTarget or CheckLoopbackAddr before anything is dialed, and every run
// is bounded in count and time.
package loadgen

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Target is a checked gateway base URL on a loopback address.
type Target struct {
	// Base is scheme and host, e.g. http://127.0.0.1:8080.
	Base string
	// Addr is the host:port to dial; "localhost" is replaced by 127.0.0.1
	// so that nothing is resolved.
	Addr string
	// Host is the Host header value (as given).
	Host string
	// Path is the hub endpoint path ("/" unless the URL says otherwise).
	Path string
}

// ParseTarget checks that raw is an http URL on a loopback host
// (127.0.0.0/8, ::1 or localhost) and returns it as a Target.
func ParseTarget(raw string) (*Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--url %q is not a URL: %w", raw, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("--url %q: only http:// is supported (the gateway on loopback), not %q", raw, u.Scheme)
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = "80"
	}
	ip, err := loopbackIP(host)
	if err != nil {
		return nil, fmt.Errorf("--url %q: %w", raw, err)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return &Target{
		Base: "http://" + u.Host,
		Addr: net.JoinHostPort(ip.String(), port),
		Host: u.Host,
		Path: path,
	}, nil
}

// Endpoint is the hub endpoint's URL.
func (t *Target) Endpoint() string { return t.Base + t.Path }

// CheckLoopbackAddr checks that addr (host:port) is a loopback address and
// returns it with localhost replaced by 127.0.0.1.
func CheckLoopbackAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q is not host:port: %w", addr, err)
	}
	ip, err := loopbackIP(host)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// loopbackIP maps host to a loopback IP without resolving anything, or
// refuses it.
func loopbackIP(host string) (net.IP, error) {
	if strings.EqualFold(host, "localhost") {
		return net.IPv4(127, 0, 0, 1), nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("host %q is not a loopback address: loadgen only talks to 127.0.0.0/8, ::1 or localhost", host)
	}
	return ip, nil
}
