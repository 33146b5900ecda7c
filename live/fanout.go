package live

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/tracing"
)

// shard is one fan-out worker and the queue of what its topics were
// announced. A topic's notifications are all made by its shard's worker,
// so they reach consumers in order.
type shard struct {
	h       *Hub
	mu      sync.Mutex
	pending []work
	wake    chan struct{}
}

// work is an announcement, or the outcome of a fill.
type work struct {
	batch store.Batch
	fill  *filled
}

func (s *shard) push(w work) {
	s.mu.Lock()
	s.pending = append(s.pending, w)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop takes everything queued since its last round at once: when
// fan-out falls behind, a topic's announcements that queued up meanwhile
// go out as one notification.
func (s *shard) loop() {
	defer s.h.loops.Done()
	var ws []work
	for {
		select {
		case <-s.h.ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		ws, s.pending = s.pending, ws[:0]
		s.mu.Unlock()
		s.handle(ws)
		clear(ws)
	}
}

// handle processes ws in order, merging a topic's batches whose cursors
// follow each other into one.
func (s *shard) handle(ws []work) {
	var order []string
	merged := make(map[string]store.Batch)
	flush := func() {
		for _, name := range order {
			s.announce(merged[name])
		}
		order = order[:0]
		clear(merged)
	}
	for _, w := range ws {
		if w.fill != nil {
			flush()
			s.applyFill(w.fill)
			continue
		}
		b := w.batch
		m, seen := merged[b.Topic]
		if seen && b.Items[0].Cursor != m.Items[len(m.Items)-1].Cursor+1 {
			// Not contiguous: what was merged goes out first.
			flush()
			m, seen = store.Batch{}, false
		}
		if !seen {
			order = append(order, b.Topic)
			m = store.Batch{Topic: b.Topic}
		}
		m.Items = append(m.Items[:len(m.Items):len(m.Items)], b.Items...)
		if b.State != nil {
			m.State = b.State
		}
		merged[b.Topic] = m
	}
	flush()
}

// announce hands a batch of t (oldest first) to its consumers: items
// already announced are dropped, and when cursors were skipped the batch
// waits while the missing items are read.
func (s *shard) announce(b store.Batch) {
	h := s.h
	t := h.lookup(b.Topic)
	if t == nil {
		return
	}
	t.smu.Lock()
	if t.filling {
		s.holdLocked(t, b)
		t.smu.Unlock()
		return
	}
	items := b.Items
	if t.known {
		if items = after(items, t.last); len(items) == 0 {
			t.smu.Unlock()
			return
		}
		if items[0].Cursor > t.last+1 && t.consumers() > 0 {
			h.m.holes.Inc()
			t.filling = true
			t.held = append(t.held, b)
			from, upTo := t.last, items[0].Cursor-1
			t.smu.Unlock()
			h.fills.push(fillJob{t: t, from: from, upTo: upTo})
			return
		}
	}
	if b.State != nil {
		t.state = *b.State
	}
	t.last, t.known = items[len(items)-1].Cursor, true
	state := t.state
	t.smu.Unlock()
	s.fanOut(t, NewNotification(t.name, state, items, h.opts.HubURL))
}

// holdLocked keeps b until the fill under way ends; past maxHeld the held
// announcements are dropped and the fill is followed by a read up to the
// newest item, which covers them.
func (s *shard) holdLocked(t *topic, b store.Batch) {
	if len(t.held) >= maxHeld {
		clear(t.held)
		t.held = t.held[:0]
		t.catchUp = true
		return
	}
	t.held = append(t.held, b)
}

// fanOut hands n to every consumer of t. It returns once every consumer
// has it.
func (s *shard) fanOut(t *topic, n *Notification) {
	t.cmu.RLock()
	defer t.cmu.RUnlock()
	cons := t.cons
	s.h.m.notifications.Inc()
	traced := tracing.Fanout(n.Topic, n.First, n.Last) // once per notification; one atomic load when off
	defer traced(len(cons))
	if len(cons) < fanOutChunk {
		for _, c := range cons {
			c.Notify(n)
		}
		return
	}
	workers := min(runtime.GOMAXPROCS(0), (len(cons)+fanOutChunk-1)/fanOutChunk)
	per := (len(cons) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		part := cons[w*per : min(len(cons), (w+1)*per)]
		wg.Go(func() {
			for _, c := range part {
				c.Notify(n)
			}
		})
	}
	for _, c := range cons[:min(len(cons), per)] {
		c.Notify(n)
	}
	wg.Wait()
}

func (s *shard) lost(t *topic) {
	t.cmu.RLock()
	defer t.cmu.RUnlock()
	for _, c := range t.cons {
		c.Lost(t.name)
	}
}

// catchUp has t re-read from its last announced cursor up to its newest
// item (the live link came back): a fill is started, or, when one is
// under way, another follows it.
func (h *Hub) catchUp(t *topic) {
	t.smu.Lock()
	if !t.known {
		// Nothing announced yet that a read could follow: the next
		// announcement sets the cursor again.
		t.smu.Unlock()
		return
	}
	if !t.resync {
		t.resync = true
		h.resyncing.Add(1)
	}
	if t.filling {
		t.catchUp = true
		t.smu.Unlock()
		return
	}
	t.filling = true
	from := t.last
	t.smu.Unlock()
	h.fills.push(fillJob{t: t, from: from})
}

// applyFill announces what a fill read, then the announcements held
// behind it.
func (s *shard) applyFill(f *filled) {
	h, t := s.h, f.t
	t.smu.Lock()
	var items []feed.Item
	if f.err == nil {
		items = after(f.items, t.last)
		if f.state != nil {
			t.state = *f.state
		}
		if len(items) > 0 {
			t.last = items[len(items)-1].Cursor
		}
	} else {
		// Clients that join later read history themselves; the next
		// announcement sets the cursor hole detection starts from again.
		t.known = false
	}
	state := t.state
	held := t.held
	t.held = nil
	if t.catchUp && f.err == nil {
		// Another read up to the newest item, before what is held.
		t.catchUp = false
		t.held = held
		from := t.last
		t.smu.Unlock()
		if len(items) > 0 {
			s.fanOut(t, NewNotification(t.name, state, items, h.opts.HubURL))
		}
		h.fills.push(fillJob{t: t, from: from})
		return
	}
	t.catchUp = false
	t.filling = false
	if t.resync {
		t.resync = false
		h.resyncing.Add(-1)
	}
	t.smu.Unlock()
	if f.err != nil {
		h.log.LogAttrs(h.ctx, slog.LevelWarn, "missed items of a topic could not be read; its consumers start over", slog.String("topic", t.name), slog.Any("err", f.err))
		h.m.lost.Inc()
		s.lost(t)
	} else if len(items) > 0 {
		s.fanOut(t, NewNotification(t.name, state, items, h.opts.HubURL))
	}
	for _, b := range held {
		s.announce(b)
	}
}

// fillJob asks for t's items after from, up to upTo (0: up to the newest).
type fillJob struct {
	t          *topic
	from, upTo feed.Cursor
}

// filled is what a fill read, oldest first, and the topic's state.
type filled struct {
	t     *topic
	items []feed.Item
	state *store.TopicState
	err   error
}

// fillQueue is the queue of fills waiting for a filler.
type fillQueue struct {
	mu   sync.Mutex
	jobs []fillJob
	wake chan struct{}
}

func (q *fillQueue) init() { q.wake = make(chan struct{}, 1) }

func (q *fillQueue) push(j fillJob) {
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *fillQueue) pop() (fillJob, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.jobs) == 0 {
		return fillJob{}, false
	}
	j := q.jobs[0]
	q.jobs[0] = fillJob{}
	q.jobs = q.jobs[1:]
	if len(q.jobs) > 0 {
		// Another filler may take the next one.
		select {
		case q.wake <- struct{}{}:
		default:
		}
	} else {
		q.jobs = nil
	}
	return j, true
}

// fillLoop runs fills until Close; their outcome goes to the topic's
// shard.
func (h *Hub) fillLoop() {
	defer h.loops.Done()
	for {
		j, ok := h.fills.pop()
		if !ok {
			select {
			case <-h.ctx.Done():
				return
			case <-h.fills.wake:
			}
			continue
		}
		f := h.fill(j)
		if h.ctx.Err() != nil {
			return
		}
		j.t.shard.push(work{fill: f})
	}
}

// fill reads j's items, retrying a failing store a few times.
func (h *Hub) fill(j fillJob) *filled {
	f := &filled{t: j.t}
	bo := newBackOff(50*time.Millisecond, time.Second)
	from := j.from
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(h.ctx, storeTimeout)
		page, err := h.st.Read(ctx, j.t.name, store.Query{From: store.After, Cursor: from, Count: fillPage})
		cancel()
		if err != nil {
			if attempt == fillAttempts || !h.sleep(bo.NextBackOff()) {
				f.err = err
				return f
			}
			continue
		}
		attempt = 0
		state := page.Topic
		f.state = &state
		if len(page.Items) == 0 {
			return f
		}
		// Page items are newest first.
		progressed := false
		for i := len(page.Items) - 1; i >= 0; i-- {
			it := page.Items[i]
			if it.Cursor <= from || (j.upTo > 0 && it.Cursor > j.upTo) {
				continue
			}
			f.items = append(f.items, it)
			from, progressed = it.Cursor, true
		}
		if !progressed || (j.upTo > 0 && from >= j.upTo) {
			return f
		}
	}
}
