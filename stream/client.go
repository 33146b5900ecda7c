package stream

import (
	"sync"
	"sync/atomic"

	"github.com/feedgate/feedgate/live"
)

// client is one live connection served by this package: a stream or a
// socket. It is a consumer of the hub: fan-out writes a notification
// straight to its socket when it is idle (fast.go) or queues it. The queue
// is bounded: when fan-out finds it full, the client is dropped, never
// waited for; it resumes by cursor.
type client struct {
	*live.Conn
	svc *Service
	q   queue

	// topics are those the client is subscribed to on the hub; owned by
	// the client's goroutine.
	topics map[string]struct{}

	// wmu is held by whoever writes to the connection or touches the
	// session: the client's goroutine while it is not waiting, or a fan-out
	// worker writing a notification directly (see fast.go).
	wmu sync.Mutex
	// sess is the session a fan-out worker may write for; nil unless the
	// session's loop runs and its form allows direct writes.
	sess atomic.Pointer[session]
	// shard spreads the client's counts over the metrics' shards.
	shard uint32
}

func newClient(s *Service, conn *live.Conn, queueLen int) *client {
	c := &client{Conn: conn, svc: s, shard: s.nextShard.Add(1)}
	c.q.init(queueLen)
	return c
}

// Notify implements live.Consumer: the notification is written to the
// connection directly when the client is idle, else queued for its
// session.
func (c *client) Notify(n *live.Notification) {
	if c.writeDirect(n) {
		return
	}
	if !c.q.push(n) {
		if c.Drop(live.ReasonSlow) {
			c.svc.m.slow[c.Kind()].Inc()
		}
		return
	}
	if s := c.sess.Load(); s != nil {
		s.wake(0)
	}
}

// Lost implements live.Consumer: what was missed cannot be re-read, the
// client reconnects with its cursor.
func (c *client) Lost(string) { c.Drop(live.ReasonLost) }

// queue is a client's bounded queue of notifications. It holds memory
// only while notifications wait, so an idle client costs none.
type queue struct {
	mu   sync.Mutex
	buf  []*live.Notification
	head int
	max  int
	n    atomic.Int32 // len, readable without the lock
	wake chan struct{}
}

func (q *queue) init(max int) {
	q.max = max
	q.wake = make(chan struct{}, 1)
}

// push appends n; false when the queue is full.
func (q *queue) push(n *live.Notification) bool {
	q.mu.Lock()
	if len(q.buf)-q.head >= q.max {
		q.mu.Unlock()
		return false
	}
	q.buf = append(q.buf, n)
	q.n.Add(1)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest notification.
func (q *queue) pop() (*live.Notification, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.buf) {
		return nil, false
	}
	n := q.buf[q.head]
	q.buf[q.head] = nil
	q.head++
	q.n.Add(-1)
	if q.head == len(q.buf) {
		// Empty: the memory goes too, unless it is small.
		if cap(q.buf) > 16 {
			q.buf = nil
		} else {
			q.buf = q.buf[:0]
		}
		q.head = 0
	}
	return n, true
}

func (q *queue) len() int { return int(q.n.Load()) }
