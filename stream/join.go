package stream

import (
	"context"

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

// session is one client's side of the gap-free join and of live delivery
// (run.go).
type session struct {
	sessionState
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
	sess := &session{svc: s, c: c, out: out, last: make(map[string]feed.Cursor)}
	sess.ctx = s.ctx
	sess.done = make(chan struct{})
	return sess
}

// begin sends the first answers of a loaded session, then parks it (see
// run.go); it returns at once when the connection fails.
func (s *Service) begin(sess *session, starts []start, ns []*feed.Notification) {
	sess.expires = s.lifetimeEnd()
	sess.touch()
	sess.sched.Store(true)
	sess.c.wmu.Lock()
	err := sess.open()
	if err == nil {
		err = sess.emit(s.ctx, starts, ns)
	}
	if err != nil {
		sess.writeFailed(err)
		sess.ended.Store(true)
		sess.c.wmu.Unlock()
		sess.finish()
		return
	}
	sess.touch()
	sess.park()
}

// open writes what a form sends before any answer.
func (s *session) open() error {
	if ss, ok := s.out.(*sseSink); ok {
		return ss.open()
	}
	return nil
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
		n, err := s.svc.rs.Join(ctx, st.topic, st.q)
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
		s.svc.m.deliveries[s.c.Kind()].add(s.c.shard)
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
	s.svc.m.deliveries[s.c.Kind()].add(s.c.shard)
	return nil
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
