package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// DefaultH2Streams is how many clients share one HTTP/2 connection unless
// configured (Go's HTTP/2 server allows 250 concurrent streams).
const DefaultH2Streams = 100

// TrustCA returns a TLS configuration for an https target that trusts the
// PEM certificates in file (the gateway's own, or the CA that signed it).
func TrustCA(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s holds no PEM certificate", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// h2Pool is the HTTP/2 connections over TLS that the clients of a run
// share, streams clients each, in the order they connect: many streams
// multiplexed over a few connections, as a browser holding many
// EventSource streams of one origin does (golang.org/x/net/http2's client).
type h2Pool struct {
	t       *Target
	dialer  *Dialer
	tr      *http2.Transport
	streams int

	mu    sync.Mutex
	conns []*h2Conn
	next  atomic.Int64
}

type h2Conn struct {
	once sync.Once
	cc   *http2.ClientConn
	err  error
}

func newH2Pool(t *Target, d *Dialer, streams int) *h2Pool {
	if streams < 1 {
		streams = DefaultH2Streams
	}
	return &h2Pool{t: t, dialer: d, streams: streams, tr: &http2.Transport{
		// The gateway's own keep-alives keep idle streams busy enough;
		// loadgen adds no pings of its own.
		ReadIdleTimeout: 0,
	}}
}

// conn returns the connection of the next client, dialing it for the
// first client that needs it.
func (p *h2Pool) conn(ctx context.Context) (*http2.ClientConn, error) {
	i := int(p.next.Add(1)-1) / p.streams
	p.mu.Lock()
	for len(p.conns) <= i {
		p.conns = append(p.conns, &h2Conn{})
	}
	c := p.conns[i]
	p.mu.Unlock()
	c.once.Do(func() { c.cc, c.err = p.dial(ctx) })
	return c.cc, c.err
}

func (p *h2Pool) dial(ctx context.Context) (*http2.ClientConn, error) {
	nc, err := p.dialer.Dial(ctx)
	if err != nil {
		return nil, err
	}
	cfg := p.t.TLS.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	if cfg.ServerName == "" {
		cfg.ServerName = p.t.Hostname()
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	if proto := tc.ConnectionState().NegotiatedProtocol; proto != http2.NextProtoTLS {
		tc.Close()
		return nil, fmt.Errorf("the gateway did not negotiate HTTP/2 (ALPN %q)", proto)
	}
	return p.tr.NewClientConn(tc)
}

// Conns is the number of connections opened.
func (p *h2Pool) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.conns {
		if c.cc != nil {
			n++
		}
	}
	return n
}

func (p *h2Pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.cc != nil {
			c.cc.Close()
		}
	}
}

// h2StreamClient is an NDJSON or SSE client whose stream is one of many
// on a shared HTTP/2 connection over TLS.
func (r *streamRun) h2StreamClient(c *client, release func()) error {
	sse := r.cfg.Kind == KindSSE
	q := r.query()
	if !sse {
		q.Set("format", "json")
		q.Set("wait", "stream")
	}
	cc, err := r.h2.conn(r.connCtx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.runCtx)
	defer cancel()
	stopConnect := context.AfterFunc(r.connCtx, cancel)
	defer stopConnect()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.Target.Endpoint()+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", r.cfg.Auth.Basic())
	req.Header.Set("User-Agent", "feedgate-loadgen")
	if sse {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return statusError(resp.StatusCode, body)
	}
	lr := NewLineReader(resp.Body, 4096)
	// The first answer means the client is connected (as streamClient).
	for {
		line, err := lr.Line()
		if err != nil {
			return fmt.Errorf("reading the first answer: %w", err)
		}
		if sse && !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		r.deliver(c, line, time.Now().UnixNano())
		break
	}
	stop, err := r.handoff(c, stopConnect, release, cancel)
	if err != nil {
		return err
	}
	defer stop()
	for {
		line, err := lr.Line()
		if err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("the gateway ended the stream: %w", err)
			}
			return err
		}
		if len(line) == 0 || sse && !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		r.deliver(c, line, time.Now().UnixNano())
	}
}
