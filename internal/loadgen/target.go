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
	"crypto/tls"
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
	// HTTPS is true for an https:// URL; TLS is then the client's TLS
	// configuration (which certificates it trusts), set by the caller.
	HTTPS bool
	TLS   *tls.Config
}

// ParseTarget checks that raw is an http or https URL on a loopback host
// (127.0.0.0/8, ::1 or localhost) and returns it as a Target.
func ParseTarget(raw string) (*Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--url %q is not a URL: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--url %q: only http:// and https:// are supported (the gateway on loopback), not %q", raw, u.Scheme)
	}
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
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
		Base:  u.Scheme + "://" + u.Host,
		Addr:  net.JoinHostPort(ip.String(), port),
		Host:  u.Host,
		Path:  path,
		HTTPS: u.Scheme == "https",
	}, nil
}

// Endpoint is the hub endpoint's URL.
func (t *Target) Endpoint() string { return t.Base + t.Path }

// Hostname is the target's host without the port (the TLS server name).
func (t *Target) Hostname() string {
	if h, _, err := net.SplitHostPort(t.Host); err == nil {
		return h
	}
	return t.Host
}

// PlainHTTP refuses an https target for what only speaks plain HTTP/1.1
// (the lean client).
func (t *Target) PlainHTTP(what string) error {
	if t.HTTPS {
		return fmt.Errorf("%s speaks plain HTTP/1.1: give an http:// --url (over https only SSE and NDJSON streams run, on HTTP/2)", what)
	}
	return nil
}

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
