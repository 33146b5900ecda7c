package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/limit"
)

// Limits are the request limits of a node. Each holds per node: behind a
// load balancer spreading over N nodes, a client gets up to N times the
// rate limits.
type Limits struct {
	// BodyTimeout bounds reading a request body, from the end of its
	// headers (default DefaultBodyTimeout).
	BodyTimeout time.Duration
	// RequestRate is requests per second per user (0: no limit);
	// RequestBurst the requests allowed at once (0: one second's worth).
	RequestRate  float64
	RequestBurst int
	// PingRate is publish pings per second per topic (0: no limit);
	// PingBurst the pings allowed at once (0: one second's worth).
	PingRate  float64
	PingBurst int
	// LoginFailures is failed logins per minute per address (0: no limit),
	// also the burst.
	LoginFailures int
}

// DefaultBodyTimeout bounds reading a request body unless configured.
const DefaultBodyTimeout = 30 * time.Second

func (l Limits) withDefaults() Limits {
	if l.BodyTimeout <= 0 {
		l.BodyTimeout = DefaultBodyTimeout
	}
	return l
}

// limiters are the token buckets of Limits.
type limiters struct {
	users  *limit.Keyed
	pings  *limit.Keyed
	logins *limit.Keyed
}

func newLimiters(l Limits) limiters {
	var lm limiters
	lm.users = limit.NewKeyed(l.RequestRate, l.RequestBurst)
	lm.pings = limit.NewKeyed(l.PingRate, l.PingBurst)
	if l.LoginFailures > 0 {
		lm.logins = limit.NewKeyed(float64(l.LoginFailures)/60, l.LoginFailures)
	}
	return lm
}

// tooMany is the 429 answered over a limit.
func tooMany(wait time.Duration, msg string) *api.Error {
	secs := limit.RetryAfter(wait)
	e := api.Errorf(http.StatusTooManyRequests, "%s; retry in %d s", msg, secs)
	e.Header = http.Header{"Retry-After": {strconv.Itoa(secs)}}
	return e
}

// clientAddr is the address a request came from (the proxy's, behind one).
func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// guardBody bounds the reading of every request body by timeout, and
// answers every request whose body is left unread with Connection: close,
// so that the server never reads (or waits for) a body nobody wants after
// the answer — a slow sender without credentials gets its 401 at once.
func guardBody(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(timeout))
		w.Header().Set("Connection", "close")
		body := &guardedBody{ReadCloser: r.Body, timeout: timeout, done: func() {
			// Read to the end: later reads (a stream's close detection)
			// must not hit the deadline, and the connection may be kept.
			_ = rc.SetReadDeadline(time.Time{})
			w.Header().Del("Connection")
		}}
		r.Body = body
		next.ServeHTTP(w, r)
		if !body.ended {
			// The server would read what is left of the body before
			// closing: stop waiting for it now.
			_ = rc.SetReadDeadline(time.Now())
		}
	})
}

type guardedBody struct {
	io.ReadCloser
	timeout time.Duration
	done    func()
	ended   bool
}

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.ended {
		b.ended = true
		b.done()
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		err = api.Errorf(http.StatusRequestTimeout, "%s", fmt.Sprintf("the request body did not arrive within %s: send it at once (or raise --body-timeout)", b.timeout))
	}
	return n, err
}
