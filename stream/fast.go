package stream

import (
	"errors"
	"os"
	"syscall"

	"github.com/feedgate/feedgate/live"
)

// Direct writes. A notification for a topic with thousands of clients is
// written by a few fan-out workers straight into each idle client's
// socket, one non-blocking write(2) of bytes shared by every client,
// instead of waking every client's goroutine to write it: no goroutine
// switch, no timer, no copy per delivery. A client that is busy (its
// goroutine is writing, it has notifications queued, its socket is full)
// or whose form has nothing shared to write (WebSocket, several topics
// over SSE, a partial event) gets the notification queued as before, so
// the order of what it receives never changes.

// writeDirect tries the direct write; false means n must be queued.
func (c *client) writeDirect(n *live.Notification) bool {
	s := c.sess.Load()
	if s == nil || c.q.len() > 0 || !c.wmu.TryLock() {
		return false
	}
	defer c.wmu.Unlock()
	// The queue is only filled by fan-out, which hands out one
	// notification at a time; re-checked under the lock in case the
	// goroutine took one.
	if c.sess.Load() != s || c.q.len() > 0 {
		return false
	}
	return s.writeDirect(n)
}

// directSink is a sink that can write a notification as bytes shared by
// every client.
type directSink interface {
	// direct returns the connection and which shared encoding of n to
	// write, or nil when this client needs bytes of its own.
	direct(s *session, n *live.Notification) (*rawOut, live.Encoding)
}

// writeDirect sends n when it directly follows what the client got;
// called with c.wmu held, by a fan-out worker.
func (s *session) writeDirect(n *live.Notification) bool {
	last, ok := s.last[n.Topic]
	if !ok || len(n.N.Items) == 0 || n.First != last+1 {
		return false
	}
	ds, ok := s.out.(directSink)
	if !ok {
		return false
	}
	o, e := ds.direct(s, n)
	if o == nil {
		return false
	}
	p := n.Bytes(e)
	if o.chunked {
		p = n.Chunk(e)
	}
	sent, err := o.tryWrite(p)
	if !sent {
		return false
	}
	s.last[n.Topic] = n.Last
	if err != nil {
		// The connection failed: the session ends it.
		s.c.Drop(live.ReasonGone)
		return true
	}
	s.touch()
	m, shard := s.svc.m, s.c.shard
	m.deliveries[s.c.Kind()].add(shard)
	if o.carry == nil {
		m.directWhole.add(shard)
		return true
	}
	// The socket took part of it; the session writes the rest, under its
	// write deadline.
	m.directPartial.add(shard)
	s.wake(wakeKick)
	return true
}

// tryWrite writes p (shared, never modified; framed as a chunk when the
// response is chunked) with one non-blocking write(2). What the socket does not
// take is kept in carry, to be written before anything else. It reports
// false when it did not try: a round is in progress or left bytes behind,
// the connection has no raw access, or its write deadline passed (the
// client's goroutine decides what that means).
func (o *rawOut) tryWrite(p []byte) (bool, error) {
	if o.raw == nil || o.head != nil || o.size > 0 || o.carry != nil {
		return false, nil
	}
	var n int
	var werr error
	err := o.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), p)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, nil
		}
		o.failed = true
		return true, err
	}
	switch {
	case werr == syscall.EAGAIN:
		n = 0
	case werr != nil:
		o.failed = true
		return true, werr
	}
	if n < len(p) {
		o.carry = p[max(n, 0):]
	}
	return true, nil
}
