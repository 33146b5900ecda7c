package stream

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
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

// payload names a shared encoding of an event.
type payload int

const (
	payloadNDJSON payload = iota // the NDJSON line
	payloadSSE                   // the whole SSE event of a one-topic stream
	payloadAtom                  // the Atom entries
	payloads
)

// bytes returns the encoding k of ev, as an HTTP/1.1 chunk if chunked.
func (ev *event) bytes(k payload, chunked bool) []byte {
	var p []byte
	switch k {
	case payloadNDJSON:
		p = ev.ndjson()
	case payloadSSE:
		p = ev.sseFrame()
	default:
		p = ev.atomEntries()
	}
	if !chunked {
		return p
	}
	c := &ev.chunks[k]
	c.once.Do(func() {
		b := make([]byte, 0, len(p)+12)
		b = strconv.AppendInt(b, int64(len(p)), 16)
		b = append(b, '\r', '\n')
		b = append(b, p...)
		c.b = append(b, '\r', '\n')
	})
	return c.b
}

// chunkOnce is an encoding framed as a chunk, made once.
type chunkOnce struct {
	once sync.Once
	b    []byte
}

// fanOutChunk is the number of clients below which one goroutine fans out
// alone; above it the work is split across GOMAXPROCS workers.
const fanOutChunk = 256

// fanOut hands ev to every client in subs: written directly where
// possible, queued otherwise. It returns once every client has it.
func (b *Broker) fanOut(ev *event, subs map[*client]struct{}) {
	if len(subs) < fanOutChunk {
		for c := range subs {
			c.deliver(ev)
		}
		return
	}
	list := make([]*client, 0, len(subs))
	for c := range subs {
		list = append(list, c)
	}
	workers := min(runtime.GOMAXPROCS(0), (len(list)+fanOutChunk-1)/fanOutChunk)
	per := (len(list) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		part := list[w*per : min(len(list), (w+1)*per)]
		wg.Go(func() {
			for _, c := range part {
				c.deliver(ev)
			}
		})
	}
	for _, c := range list[:min(len(list), per)] {
		c.deliver(ev)
	}
	wg.Wait()
}

// deliver writes ev to c's connection directly when c is idle, or queues
// it for c's goroutine.
func (c *client) deliver(ev *event) {
	if !c.writeDirect(ev) {
		c.offer(ev)
	}
}

// writeDirect tries the direct write; false means ev must be queued.
func (c *client) writeDirect(ev *event) bool {
	s := c.sess.Load()
	if s == nil || len(c.q) > 0 || !c.wmu.TryLock() {
		return false
	}
	defer c.wmu.Unlock()
	// The queue is only filled by fan-out, which hands out one event at a
	// time; re-checked under the lock in case the goroutine took one.
	if c.sess.Load() != s || len(c.q) > 0 {
		return false
	}
	return s.writeDirect(ev)
}

// directSink is a sink that can write a notification as bytes shared by
// every client.
type directSink interface {
	// direct returns the connection and which shared encoding of ev to
	// write, or nil when this client needs bytes of its own.
	direct(s *session, ev *event) (*rawOut, payload)
}

// writeDirect sends ev when it directly follows what the client got;
// called with c.wmu held, by a fan-out worker.
func (s *session) writeDirect(ev *event) bool {
	last, ok := s.last[ev.topic]
	if !ok || len(ev.n.Items) == 0 || ev.first != last+1 {
		return false
	}
	ds, ok := s.out.(directSink)
	if !ok {
		return false
	}
	o, k := ds.direct(s, ev)
	if o == nil {
		return false
	}
	sent, err := o.tryWrite(ev.bytes(k, o.chunked))
	if !sent {
		return false
	}
	s.last[ev.topic] = ev.last
	if err != nil {
		// The connection failed: the client's goroutine ends it.
		s.c.drop(reasonGone)
		return true
	}
	s.b.m.deliveries[s.c.kind].Inc()
	if o.carry == nil {
		s.b.m.directWhole.Inc()
		return true
	}
	// The socket took part of it; the rest goes out from the client's
	// goroutine, under its write deadline.
	s.b.m.directPartial.Inc()
	select {
	case s.c.kick <- struct{}{}:
	default:
	}
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
