package stream

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedgate/feedgate/live"
)

// Running sessions. Once its first answer is sent, a session has no
// goroutine of its own while it is idle: fan-out writes notifications
// straight to its socket (fast.go), a sweeper of the Service tells it when
// a keep-alive or its lifetime is due, and the node hub tells it when it is
// dropped. Whatever must be written by the session itself — queued
// notifications, the rest of a partial direct write, a keep-alive, a
// WebSocket client's message, the goodbye — wakes it: a goroutine is
// started that does the work under the session's lock and ends when
// nothing is left. An idle connection therefore costs its own state only,
// not a goroutine stack.

// What a wake asks for, besides queued notifications and a drop.
const (
	// wakeKick: a direct write left bytes behind.
	wakeKick uint32 = 1 << iota
	// wakeKeepalive: the connection has been silent for a keep-alive
	// period.
	wakeKeepalive
	// wakeLifetime: the connection reached its maximum lifetime.
	wakeLifetime
	// wakeCmd: a WebSocket client message waits.
	wakeCmd
)

// wake has the session's work done: by a new goroutine, unless one owns the
// session already (it will see the work before it ends).
func (s *session) wake(what uint32) {
	if what != 0 {
		s.wakes.Or(what)
	}
	if s.sched.CompareAndSwap(false, true) {
		go s.run()
	}
}

// pending reports whether there is work for the session.
func (s *session) pending() bool {
	if s.ended.Load() {
		return false
	}
	return s.c.q.len() > 0 || s.wakes.Load() != 0 || s.c.Reason() != live.ReasonNone || s.ctx.Err() != nil
}

// run does the session's work until none is left, or ends the session.
func (s *session) run() {
	for {
		s.c.wmu.Lock()
		if s.ended.Load() {
			// A late wake of a session that ended.
			s.c.wmu.Unlock()
			return
		}
		ended := s.step()
		if ended {
			s.ended.Store(true)
		}
		s.c.wmu.Unlock()
		if ended {
			s.finish()
			return
		}
		s.sched.Store(false)
		if !s.pending() || !s.sched.CompareAndSwap(false, true) {
			return
		}
	}
}

// park hands the session, owned by the caller since it started, to wakes:
// the work that came meanwhile is done now.
func (s *session) park() {
	s.c.sess.Store(s)
	s.c.OnDrop(func() { s.wake(0) })
	s.svc.sessions.add(s)
	s.c.wmu.Unlock()
	s.sched.Store(false)
	if s.pending() && s.sched.CompareAndSwap(false, true) {
		s.run()
	}
}

// step does what is due, with c.wmu held; it reports whether the session
// ended.
func (s *session) step() bool {
	if r := s.c.Reason(); r != live.ReasonNone {
		if r != live.ReasonSlow && r != live.ReasonGone {
			s.out.bye(r)
			s.graceful = true
		}
		return true
	}
	if s.ctx.Err() != nil {
		return true
	}
	what := s.wakes.Swap(0)
	if what&wakeLifetime != 0 {
		s.out.bye(live.ReasonLifetime)
		s.graceful = true
		return true
	}
	if what&wakeCmd != 0 {
		for drained := false; !drained; {
			select {
			case cmd := <-s.cmds:
				if err := s.onCmd(s.ctx, cmd); err != nil {
					s.writeFailed(err)
					return true
				}
				s.touch()
			default:
				drained = true
			}
		}
	}
	if s.c.q.len() > 0 || what&wakeKick != 0 {
		if err := s.round(); err != nil {
			s.writeFailed(err)
			return true
		}
		s.touch()
	}
	if what&wakeKeepalive != 0 && s.silentFor() >= s.svc.opts.Keepalive {
		if err := s.out.keepalive(); err != nil {
			s.writeFailed(err)
			return true
		}
		s.touch()
	}
	return false
}

// maxRound bounds the notifications written between two flushes.
const maxRound = 64

// round writes what is queued (up to maxRound notifications, and what a
// direct write left), then flushes once.
func (s *session) round() error {
	if err := s.out.begin(); err != nil {
		return err
	}
	for range maxRound {
		n, ok := s.c.q.pop()
		if !ok {
			break
		}
		if err := s.handle(s.ctx, n); err != nil {
			return err
		}
	}
	return s.out.flush()
}

// finish ends a session (once, by whoever set ended): done is closed, the
// transport closes the connection and the client is released.
func (s *session) finish() {
	s.c.sess.Store(nil)
	s.svc.sessions.remove(s)
	close(s.done)
	if s.end != nil {
		s.end(s.graceful)
	}
}

// touch records a write, for keep-alives.
func (s *session) touch() { s.lastWrite.Store(s.svc.clock.Load()) }

// silentFor is how long the connection has been silent.
func (s *session) silentFor() time.Duration {
	return time.Duration(s.svc.clock.Load() - s.lastWrite.Load())
}

// writeFailed classifies a failed write: one that timed out means the
// client does not read fast enough.
func (s *session) writeFailed(err error) error {
	if s.c.Reason() == live.ReasonSlow {
		return err
	}
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		if s.c.Drop(live.ReasonSlow) {
			s.svc.m.slow[s.c.Kind()].Inc()
		}
	}
	s.svc.debugEnd(s.ctx, s.c.Kind(), err)
	return err
}

// sessions are a Service's running sessions, for the sweeper.
type sessions struct {
	mu  sync.Mutex
	all map[*session]struct{}
}

func (ss *sessions) add(s *session) {
	ss.mu.Lock()
	if ss.all == nil {
		ss.all = make(map[*session]struct{})
	}
	ss.all[s] = struct{}{}
	ss.mu.Unlock()
}

func (ss *sessions) remove(s *session) {
	ss.mu.Lock()
	delete(ss.all, s)
	ss.mu.Unlock()
}

func (ss *sessions) snapshot(buf []*session) []*session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for s := range ss.all {
		buf = append(buf, s)
	}
	return buf
}

// sweepEvery is how often the sweeper looks for keep-alives and lifetimes
// due: a quarter of the shorter of the two, between 5 ms and 500 ms.
func (s *Service) sweepEvery() time.Duration {
	d := s.opts.Keepalive
	if s.opts.MaxLifetime > 0 {
		d = min(d, s.opts.MaxLifetime)
	}
	return min(max(d/4, 5*time.Millisecond), 500*time.Millisecond)
}

// sweep wakes, until ctx ends, the sessions whose keep-alive or lifetime
// is due; it also keeps the coarse clock sessions time their writes with.
func (s *Service) sweep(ctx context.Context) {
	tick := time.NewTicker(s.sweepEvery())
	defer tick.Stop()
	var buf []*session
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			ns := now.UnixNano()
			s.clock.Store(ns)
			buf = s.sessions.snapshot(buf[:0])
			for _, sess := range buf {
				switch {
				case sess.expires != 0 && ns >= sess.expires:
					sess.wake(wakeLifetime)
				case time.Duration(ns-sess.lastWrite.Load()) >= s.opts.Keepalive:
					sess.wake(wakeKeepalive)
				}
			}
			clear(buf)
		}
	}
}

// lifetimeEnd returns when a connection starting now reaches its maximum
// lifetime (minus up to 10% of jitter, so that clients do not all come
// back at once), as UnixNano; 0 when unlimited.
func (s *Service) lifetimeEnd() int64 {
	limit := s.opts.MaxLifetime
	if limit <= 0 {
		return 0
	}
	return time.Now().Add(limit - jitterDuration(limit/10)).UnixNano()
}

// sessionState is the part of a session that runs it.
type sessionState struct {
	ctx       context.Context // the service's; ends at Close
	sched     atomic.Bool     // a goroutine owns the session, or is started
	ended     atomic.Bool     // the session ended: late wakes do nothing
	wakes     atomic.Uint32
	lastWrite atomic.Int64 // on the service's clock
	expires   int64        // UnixNano of the maximum lifetime; 0: none
	graceful  bool         // the session said goodbye
	end       func(graceful bool)
	done      chan struct{} // closed when the session has ended
}
