package live

import (
	"context"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/feedgate/feedgate/store"
)

func newBackOff(first, max time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.Multiplier = first, max, 2
	b.Reset()
	return b
}

// sleep waits d or until the hub closes; false when it closed.
func (h *Hub) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-h.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (h *Hub) currentListener() store.Listener {
	h.lmu.Lock()
	defer h.lmu.Unlock()
	return h.listener
}

func (h *Hub) setListener(l store.Listener) {
	h.lmu.Lock()
	h.listener = l
	h.lmu.Unlock()
	h.wakeSync()
}

// run opens the live subscription (again, should it end) and dispatches
// its batches until Close.
func (h *Hub) run() {
	defer h.loops.Done()
	bo := newBackOff(100*time.Millisecond, 5*time.Second)
	for h.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(h.ctx, storeTimeout)
		l, err := h.st.Listen(ctx)
		cancel()
		if err != nil {
			if h.ctx.Err() != nil {
				return
			}
			pause := bo.NextBackOff()
			h.log.LogAttrs(h.ctx, slog.LevelWarn, "live subscription failed; retrying", slog.Any("err", err), slog.Duration("in", pause))
			if !h.sleep(pause) {
				return
			}
			continue
		}
		bo.Reset()
		h.setListener(l)
		h.dispatch(l)
		h.setListener(nil)
		_ = l.Close()
		if h.ctx.Err() == nil {
			h.log.LogAttrs(h.ctx, slog.LevelWarn, "live subscription ended; opening a new one")
		}
	}
}

// dispatch routes l's batches to the fan-out shards until l ends or the
// hub closes.
func (h *Hub) dispatch(l store.Listener) {
	for {
		select {
		case <-h.ctx.Done():
			return
		case b, ok := <-l.Batches():
			if !ok {
				return
			}
			switch {
			case b.Resync:
				h.m.resyncs.Inc()
				h.resync(b.Topics)
			case len(b.Items) > 0:
				h.shardOf(b.Topic).push(work{batch: b})
			}
		}
	}
}

// resync has the named topics (every topic when none is named) re-read
// from their last announced cursor: the live link was interrupted and
// their announcements may have been lost.
func (h *Hub) resync(names []string) {
	var ts []*topic
	h.mu.Lock()
	if len(names) == 0 {
		ts = make([]*topic, 0, len(h.topics))
		for _, t := range h.topics {
			ts = append(ts, t)
		}
	} else {
		for _, n := range names {
			if t := h.topics[n]; t != nil {
				ts = append(ts, t)
			}
		}
	}
	h.mu.Unlock()
	for _, t := range ts {
		if t.isReady() {
			h.catchUp(t)
		}
	}
}

// syncLoop keeps the live subscription's topics equal to the topics the
// consumers want: it Adds a topic when its first consumer arrives (and
// then reads its newest cursor, which makes it ready) and Removes it once
// its last consumer has been gone for Options.Linger. It is the only
// caller of the listener's Add and Remove, so they happen in order.
func (h *Hub) syncLoop() {
	defer h.loops.Done()
	tickEvery := time.Second
	if h.opts.Linger > 0 && h.opts.Linger/2 < tickEvery {
		tickEvery = max(h.opts.Linger/2, 10*time.Millisecond)
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	var (
		cur   store.Listener
		added = make(map[string]bool) // topics Added on cur
		retry <-chan time.Time
		bo    = newBackOff(100*time.Millisecond, 5*time.Second)
	)
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.syncWake:
		case <-tick.C:
		case <-retry:
		}
		l := h.currentListener()
		if l != cur {
			cur = l
			clear(added)
		}
		if l == nil {
			continue
		}
		if h.syncTopics(l, added) {
			retry = nil
			bo.Reset()
		} else {
			retry = time.After(bo.NextBackOff())
		}
	}
}

// syncTopics makes one pass; it reports false when the store failed and
// the pass should be retried.
func (h *Hub) syncTopics(l store.Listener, added map[string]bool) bool {
	now := time.Now()
	var adds, removes []string
	h.mu.Lock()
	for name, t := range h.topics {
		if t.refs == 0 && now.Sub(t.idleSince) >= h.opts.Linger {
			delete(h.topics, name)
			continue
		}
		if !added[name] {
			adds = append(adds, name)
		}
	}
	for name := range added {
		if h.topics[name] == nil {
			removes = append(removes, name)
		}
	}
	h.mu.Unlock()

	ok := true
	if len(removes) > 0 {
		ctx, cancel := context.WithTimeout(h.ctx, storeTimeout)
		err := l.Remove(ctx, removes...)
		cancel()
		if err != nil {
			// Announcements of a topic nobody wants are ignored anyway.
			h.log.LogAttrs(h.ctx, slog.LevelDebug, "live unsubscribe failed", slog.Int("topics", len(removes)), slog.Any("err", err))
		}
		for _, n := range removes {
			delete(added, n)
		}
	}
	if len(adds) > 0 {
		ctx, cancel := context.WithTimeout(h.ctx, storeTimeout)
		err := l.Add(ctx, adds...)
		cancel()
		if err != nil {
			if h.ctx.Err() == nil {
				h.log.LogAttrs(h.ctx, slog.LevelWarn, "live subscribe failed; retrying", slog.Int("topics", len(adds)), slog.Any("err", err))
			}
			ok = false
		} else {
			for _, n := range adds {
				added[n] = true
			}
		}
	}

	// Make ready the topics whose subscription is in place; topics that
	// were ready already were subscribed again on a new listener and are
	// re-read from their last cursor.
	var unready, again []*topic
	h.mu.Lock()
	for name, t := range h.topics {
		if added[name] && !t.isReady() {
			unready = append(unready, t)
		}
	}
	for _, n := range adds {
		if t := h.topics[n]; t != nil && added[n] && t.isReady() {
			again = append(again, t)
		}
	}
	h.m.topics.Set(float64(len(added)))
	h.mu.Unlock()

	for _, t := range unready {
		ctx, cancel := context.WithTimeout(h.ctx, storeTimeout)
		page, err := h.st.Read(ctx, t.name, store.Query{From: store.Newest, Count: 1})
		cancel()
		if err != nil {
			if h.ctx.Err() == nil {
				h.log.LogAttrs(h.ctx, slog.LevelWarn, "reading a topic's newest cursor failed; retrying", slog.String("topic", t.name), slog.Any("err", err))
			}
			ok = false
			continue
		}
		t.smu.Lock()
		if page.Last > t.last || !t.known {
			t.last = max(t.last, page.Last)
			t.state = page.Topic
		}
		t.known = true
		t.smu.Unlock()
		close(t.ready)
	}
	for _, t := range again {
		h.catchUp(t)
	}
	return ok
}
