package stream

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// sink writes one form of live answer (NDJSON, Atom, SSE, WebSocket).
type sink interface {
	// begin starts a round of writes: it sets the write deadline.
	begin() error
	// send writes a notification; first marks a topic's first answer.
	send(s *session, n *live.Notification, first bool) error
	// flush sends what the round wrote.
	flush() error
	// keepalive writes a keep-alive and flushes it.
	keepalive() error
	// bye tells the client, as far as the form allows, why the connection
	// ends and that it should reconnect.
	bye(r live.Reason)
}

// session is one client's side of the gap-free join and its live loop.
type session struct {
	svc *Service
	c   *client
	out sink
	// last is the newest cursor sent per subscribed topic.
	last map[string]feed.Cursor
	// order lists the subscribed topics in the order they were asked for.
	order []string
	// cmds carries WebSocket client messages (nil for other forms).
	cmds  <-chan wsCommand
	onCmd func(context.Context, wsCommand) error
}

func (s *Service) newSession(c *client, out sink) *session {
	return &session{svc: s, c: c, out: out, last: make(map[string]feed.Cursor)}
}

// start is where a topic's first answer starts.
type start struct {
	topic string
	q     store.Query
	// resume: the client resumes (SSE Last-Event-ID); a first answer with
	// no items is not sent.
	resume bool
}

// load is the first half of the join: register for the topics (from now
// on live items queue up), then read their history. Nothing is written, so
// a failure can still be answered with an HTTP error.
func (s *session) load(ctx context.Context, starts []start) ([]*feed.Notification, error) {
	names := make([]string, len(starts))
	for i, st := range starts {
		names[i] = st.topic
	}
	if err := s.svc.subscribe(ctx, s.c, names...); err != nil {
		return nil, err
	}
	ns := make([]*feed.Notification, len(starts))
	for i, st := range starts {
		n, err := s.svc.rs.Load(ctx, st.topic, st.q)
		if err != nil {
			return nil, err
		}
		ns[i] = n
	}
	return ns, nil
}

// emit is the second half: send the first answers, then whatever followed
// them up to the newest item when they were read (an after= replay longer
// than count). Live items queued meanwhile are sent by loop, those already
// sent skipped.
func (s *session) emit(ctx context.Context, starts []start, ns []*feed.Notification) error {
	for i, st := range starts {
		if _, ok := s.last[st.topic]; !ok {
			s.order = append(s.order, st.topic)
		}
		s.last[st.topic] = lastSent(st.q, ns[i])
	}
	if err := s.out.begin(); err != nil {
		return err
	}
	for i, st := range starts {
		if st.resume && len(ns[i].Items) == 0 {
			continue
		}
		if err := s.out.send(s, live.FromFeed(ns[i], s.svc.rs.HubURL()), true); err != nil {
			return err
		}
	}
	if err := s.out.flush(); err != nil {
		return err
	}
	for i, st := range starts {
		if err := s.fill(ctx, st.topic, ns[i].Status.Cursor); err != nil {
			return err
		}
	}
	return nil
}

// fillPage is how many items one store read fetches when a client fills a
// hole or replays what followed its cursor.
const fillPage = 100

// lastSent is the newest cursor a first answer covers.
func lastSent(q store.Query, n *feed.Notification) feed.Cursor {
	if q.From == store.After {
		if len(n.Items) > 0 {
			return n.Items[0].Cursor
		}
		// Nothing follows the cursor; a cursor ahead of the topic (a reset
		// store) must not hide the items to come.
		return min(q.Cursor, n.Status.Cursor)
	}
	return n.Status.Cursor
}

// fill sends topic's items after the last one sent, up to cursor upTo,
// read from the store.
func (s *session) fill(ctx context.Context, topic string, upTo feed.Cursor) error {
	for {
		from, ok := s.last[topic]
		if !ok || from >= upTo {
			return nil
		}
		fn, err := s.svc.rs.Load(ctx, topic, store.Query{From: store.After, Cursor: from, Count: fillPage})
		if err != nil {
			return err
		}
		if len(fn.Items) == 0 || fn.Items[0].Cursor <= from {
			return nil
		}
		n := live.FromFeed(fn, s.svc.rs.HubURL()).Since(from)
		s.last[topic] = n.Last
		if err := s.out.begin(); err != nil {
			return err
		}
		if err := s.out.send(s, n, false); err != nil {
			return err
		}
		if err := s.out.flush(); err != nil {
			return err
		}
		s.svc.m.deliveries[s.c.Kind()].Inc()
	}
}

// handle sends a live notification: only items after the last sent, and
// the missing ones first when cursors were skipped.
func (s *session) handle(ctx context.Context, n *live.Notification) error {
	last, ok := s.last[n.Topic]
	if !ok || n.Last <= last {
		return nil
	}
	if n.First > last+1 {
		if err := s.fill(ctx, n.Topic, n.First-1); err != nil {
			return err
		}
		if last = s.last[n.Topic]; n.Last <= last {
			return nil
		}
	}
	n = n.Since(last)
	s.last[n.Topic] = n.Last
	if err := s.out.send(s, n, false); err != nil {
		return err
	}
	s.svc.m.deliveries[s.c.Kind()].Inc()
	return nil
}

// maxRound bounds the notifications written between two flushes.
const maxRound = 64

// loop delivers live notifications until the client leaves, falls behind,
// the connection reaches its lifetime or the node shuts down.
//
// The session is the goroutine's while it is not waiting (c.wmu); while it
// waits, fan-out may write notifications to the connection directly
// (fast.go).
func (s *session) loop(ctx context.Context) error {
	lifetime, stop := s.svc.lifetime()
	defer stop()
	ka := time.NewTimer(s.svc.opts.Keepalive)
	defer ka.Stop()
	mu := &s.c.wmu
	mu.Lock()
	defer mu.Unlock()
	if _, ok := s.out.(directSink); ok {
		s.c.sess.Store(s)
		defer s.c.sess.Store(nil)
	}
	for {
		mu.Unlock()
		select {
		case <-s.c.q.wake:
			mu.Lock()
			if err := s.round(ctx); err != nil {
				return s.writeFailed(err)
			}
			ka.Reset(s.svc.opts.Keepalive)
		case <-s.c.kick:
			// A direct write left bytes behind: send them, under the
			// write deadline.
			mu.Lock()
			if err := s.out.begin(); err != nil {
				return s.writeFailed(err)
			}
			if err := s.out.flush(); err != nil {
				return s.writeFailed(err)
			}
		case cmd := <-s.cmds:
			mu.Lock()
			if err := s.onCmd(ctx, cmd); err != nil {
				return s.writeFailed(err)
			}
			ka.Reset(s.svc.opts.Keepalive)
		case <-ka.C:
			mu.Lock()
			if err := s.out.keepalive(); err != nil {
				return s.writeFailed(err)
			}
			ka.Reset(s.svc.opts.Keepalive)
		case <-lifetime:
			mu.Lock()
			s.out.bye(live.ReasonLifetime)
			return nil
		case <-s.c.Gone():
			mu.Lock()
			if r := s.c.Reason(); r != live.ReasonSlow && r != live.ReasonGone {
				s.out.bye(r)
			}
			return nil
		case <-ctx.Done():
			mu.Lock()
			return nil
		}
	}
}

// round writes what is queued (up to maxRound notifications), then
// flushes once.
func (s *session) round(ctx context.Context) error {
	if err := s.out.begin(); err != nil {
		return err
	}
	for range maxRound {
		n, ok := s.c.q.pop()
		if !ok {
			break
		}
		if err := s.handle(ctx, n); err != nil {
			return err
		}
	}
	if s.c.q.len() > 0 {
		// More than a round's worth: come back for the rest.
		select {
		case s.c.q.wake <- struct{}{}:
		default:
		}
	}
	return s.out.flush()
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
	return err
}

// startsFor turns a request's topics and after= into where each topic's
// first answer starts.
func (s *Service) startsFor(ctx context.Context, req retrieve.Request, resume map[string]feed.Cursor) ([]start, error) {
	out := make([]start, 0, len(req.Topics))
	for _, t := range req.Topics {
		if c, ok := resume[t]; ok {
			out = append(out, start{topic: t, q: store.Query{From: store.After, Cursor: c, Count: req.Count}, resume: true})
			continue
		}
		q, err := s.rs.Query(ctx, t, req)
		if err != nil {
			return nil, err
		}
		out = append(out, start{topic: t, q: q})
	}
	return out, nil
}
