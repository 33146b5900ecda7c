package stream

import (
	"context"
	"log/slog"
	"time"

	"github.com/feedgate/feedgate/store"
)

// syncLoop keeps the live subscription's topics equal to the topics local
// clients want: it Adds a topic when its first client arrives (and then
// reads its newest cursor, which makes it ready) and Removes it once its
// last client has been gone for Options.Linger. It is the only caller of
// the listener's Add and Remove, so they happen in order.
func (b *Broker) syncLoop() {
	defer b.loops.Done()
	tickEvery := time.Second
	if b.opts.Linger > 0 && b.opts.Linger/2 < tickEvery {
		tickEvery = max(b.opts.Linger/2, 10*time.Millisecond)
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	var (
		cur   store.Listener
		added = make(map[string]bool) // topics Added on cur
		retry <-chan time.Time
		pause = 100 * time.Millisecond
	)
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.syncWake:
		case <-tick.C:
		case <-retry:
		}
		l := b.currentListener()
		if l != cur {
			cur = l
			clear(added)
		}
		if l == nil {
			continue
		}
		if b.syncTopics(l, added) {
			retry, pause = nil, 100*time.Millisecond
		} else {
			retry = time.After(pause)
			pause = min(2*pause, 5*time.Second)
		}
	}
}

// syncTopics makes one pass; it reports false when the store failed and
// the pass should be retried.
func (b *Broker) syncTopics(l store.Listener, added map[string]bool) bool {
	now := time.Now()
	var adds, removes []string
	b.mu.Lock()
	for name, t := range b.topics {
		if t.refs == 0 && now.Sub(t.idleSince) >= b.opts.Linger {
			delete(b.topics, name)
			continue
		}
		if !added[name] {
			adds = append(adds, name)
		}
	}
	for name := range added {
		if b.topics[name] == nil {
			removes = append(removes, name)
		}
	}
	b.mu.Unlock()

	ok := true
	if len(removes) > 0 {
		ctx, cancel := context.WithTimeout(b.ctx, storeTimeout)
		err := l.Remove(ctx, removes...)
		cancel()
		if err != nil {
			// Announcements of a topic nobody wants are ignored anyway.
			b.log.LogAttrs(b.ctx, slog.LevelDebug, "live unsubscribe failed", slog.Int("topics", len(removes)), slog.Any("err", err))
		}
		for _, n := range removes {
			delete(added, n)
		}
	}
	if len(adds) > 0 {
		ctx, cancel := context.WithTimeout(b.ctx, storeTimeout)
		err := l.Add(ctx, adds...)
		cancel()
		if err != nil {
			if b.ctx.Err() == nil {
				b.log.LogAttrs(b.ctx, slog.LevelWarn, "live subscribe failed; retrying", slog.Int("topics", len(adds)), slog.Any("err", err))
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
	var unready []*topic
	var again []string
	b.mu.Lock()
	for name, t := range b.topics {
		if !added[name] {
			continue
		}
		if !t.isReady() {
			unready = append(unready, t)
		}
	}
	for _, n := range adds {
		if t := b.topics[n]; t != nil && added[n] && t.isReady() {
			again = append(again, n)
		}
	}
	b.m.topics.Set(float64(len(added)))
	b.mu.Unlock()

	for _, t := range unready {
		ctx, cancel := context.WithTimeout(b.ctx, storeTimeout)
		page, err := b.st.Read(ctx, t.name, store.Query{From: store.Newest, Count: 1})
		cancel()
		if err != nil {
			if b.ctx.Err() == nil {
				b.log.LogAttrs(b.ctx, slog.LevelWarn, "reading a topic's newest cursor failed; retrying", slog.String("topic", t.name), slog.Any("err", err))
			}
			ok = false
			continue
		}
		t.mu.Lock()
		if page.Last > t.last {
			t.last = page.Last
		}
		t.known = true
		t.state = page.Topic
		t.mu.Unlock()
		close(t.ready)
	}
	if len(again) > 0 {
		b.resyncMu.Lock()
		for _, n := range again {
			b.resyncSet[n] = true
		}
		b.resyncMu.Unlock()
		select {
		case b.resyncWake <- struct{}{}:
		default:
		}
	}
	return ok
}
