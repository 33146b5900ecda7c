package stream

import (
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/feedgate/feedgate/api"
)

// reason says why the gateway ends a live connection.
type reason int

const (
	reasonNone reason = iota
	// reasonSlow: the client fell behind (its queue filled up).
	reasonSlow
	// reasonShutdown: the node is shutting down.
	reasonShutdown
	// reasonLifetime: the connection reached its maximum lifetime.
	reasonLifetime
	// reasonLost: the live link was interrupted and what was missed could
	// not be re-read.
	reasonLost
	// reasonGone: the client closed the connection.
	reasonGone
)

// message is the reason as told to the client.
func (r reason) message() string {
	switch r {
	case reasonSlow:
		return "too slow: notifications were not read fast enough; reconnect with the cursor of the last item you received"
	case reasonShutdown:
		return "the gateway is restarting; reconnect with the cursor of the last item you received"
	case reasonLifetime:
		return "the connection reached its maximum lifetime; reconnect with the cursor of the last item you received"
	case reasonLost:
		return "live delivery was interrupted; reconnect with the cursor of the last item you received"
	case reasonGone:
		return "the client closed the connection"
	}
	return "the connection ends"
}

// client is one live connection (or held long-poll) registered with the
// broker. Its queue is bounded: when the broker finds it full, the client
// is dropped, never waited for.
type client struct {
	b     *Broker
	login string
	kind  kind
	q     chan *event

	// abort interrupts a write in progress; set once the connection is
	// known (see setAbort).
	abort atomic.Pointer[func()]

	// topics are those the client is subscribed to; owned by the client's
	// goroutine, and read by the broker under Broker.mu.
	topics map[string]*topic

	// wmu is held by whoever writes to the connection or touches the
	// session: the client's goroutine while it is not waiting, or a fan-out
	// worker writing a notification directly (see fast.go).
	wmu sync.Mutex
	// sess is the session a fan-out worker may write for; nil unless the
	// session's loop runs and its form allows direct writes.
	sess atomic.Pointer[session]
	// kick wakes the client's goroutine to write what a direct write left.
	kick chan struct{}

	dropOnce sync.Once
	gone     chan struct{} // closed by drop
	why      reason
}

// offer queues ev for c, or drops c when its queue is full.
func (c *client) offer(ev *event) {
	select {
	case c.q <- ev:
	default:
		if c.drop(reasonSlow) {
			c.b.m.slow[c.kind].Inc()
		}
	}
}

// drop ends the client's connection for r; it reports whether this call
// dropped it (the first one does).
func (c *client) drop(r reason) bool {
	first := false
	c.dropOnce.Do(func() {
		first = true
		c.why = r
		close(c.gone)
		if f := c.abort.Load(); f != nil {
			(*f)()
		}
	})
	return first
}

// setAbort sets how to interrupt the client's writes; a client dropped
// before has them interrupted at once.
func (c *client) setAbort(f func()) {
	c.abort.Store(&f)
	select {
	case <-c.gone:
		f()
	default:
	}
}

// reason returns why the client was dropped; only valid once gone is
// closed.
func (c *client) reason() reason {
	select {
	case <-c.gone:
		return c.why
	default:
		return reasonNone
	}
}

// err is the error of a dropped client.
func (c *client) err() error {
	return api.Errorf(http.StatusServiceUnavailable, "%s", c.reason().message())
}
