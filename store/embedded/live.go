package embedded

import (
	"context"
	"sync"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// live is the in-process fan-out of appended items to listeners.
//
// A listener never slows appends: the writer only queues batches on it. Each
// listener has a goroutine moving its queue to its Batches channel. When a
// listener falls behind by more than its backlog (in items), its queue is
// dropped and it receives one Resync batch instead, after which it must
// re-read its topics from the store by cursor; memory stays bounded and the
// writer never waits.
type live struct {
	mu        sync.RWMutex
	byTopic   map[string]map[*listener]struct{}
	listeners map[*listener]struct{}
	closed    bool
	backlog   int
}

func (lv *live) init(backlog int) {
	lv.byTopic = make(map[string]map[*listener]struct{})
	lv.listeners = make(map[*listener]struct{})
	lv.backlog = backlog
}

// publish queues a batch on every listener of the topic. Batches are shared
// between listeners and must not be modified.
func (lv *live) publish(topic string, items []feed.Item, state *store.TopicState) {
	lv.mu.RLock()
	defer lv.mu.RUnlock()
	b := store.Batch{Topic: topic, Items: items, State: state}
	for l := range lv.byTopic[topic] {
		l.enqueue(b)
	}
}

// resync tells every listener of the topic to re-read it: an append whose
// announcement could not be built.
func (lv *live) resync(topic string) {
	lv.mu.RLock()
	defer lv.mu.RUnlock()
	b := store.Batch{Resync: true, Topics: []string{topic}}
	for l := range lv.byTopic[topic] {
		l.enqueue(b)
	}
}

// closeAll closes every listener; later Listen calls fail.
func (lv *live) closeAll() {
	lv.mu.Lock()
	lv.closed = true
	all := make([]*listener, 0, len(lv.listeners))
	for l := range lv.listeners {
		all = append(all, l)
	}
	lv.mu.Unlock()
	for _, l := range all {
		_ = l.Close()
	}
}

// Listen opens a live subscription; its Batches channel is closed by the
// listener's Close or the store's.
func (s *Store) Listen(ctx context.Context) (store.Listener, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l := &listener{
		lv:      &s.live,
		topics:  make(map[string]struct{}),
		backlog: s.live.backlog,
		wake:    make(chan struct{}, 1),
		out:     make(chan store.Batch, 16),
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
	s.live.mu.Lock()
	if s.live.closed {
		s.live.mu.Unlock()
		return nil, errClosed
	}
	s.live.listeners[l] = struct{}{}
	s.live.mu.Unlock()
	go l.pump()
	return l, nil
}

type listener struct {
	lv      *live
	backlog int

	mu     sync.Mutex
	topics map[string]struct{}
	queue  []store.Batch
	queued int // items in queue
	resync bool
	closed bool

	wake      chan struct{}
	out       chan store.Batch
	done      chan struct{}
	exited    chan struct{}
	closeOnce sync.Once
}

// Add starts announcing the topics' appends.
func (l *listener) Add(ctx context.Context, topics ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.lv.mu.Lock()
	defer l.lv.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errClosed
	}
	for _, t := range topics {
		set := l.lv.byTopic[t]
		if set == nil {
			set = make(map[*listener]struct{})
			l.lv.byTopic[t] = set
		}
		set[l] = struct{}{}
		l.topics[t] = struct{}{}
	}
	return nil
}

// Remove stops announcing the topics, including batches already queued.
func (l *listener) Remove(ctx context.Context, topics ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.lv.mu.Lock()
	defer l.lv.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range topics {
		l.lv.forget(l, t)
		delete(l.topics, t)
	}
	return nil
}

// forget removes l from the topic's set; lv.mu must be held.
func (lv *live) forget(l *listener, topic string) {
	if set := lv.byTopic[topic]; set != nil {
		delete(set, l)
		if len(set) == 0 {
			delete(lv.byTopic, topic)
		}
	}
}

// Batches delivers announcements; it is closed by Close.
func (l *listener) Batches() <-chan store.Batch { return l.out }

// Healthy is true until the listener or its store is closed: in-process
// delivery has no link that could break.
func (l *listener) Healthy() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.closed
}

// Close ends the subscription and closes Batches.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		l.lv.mu.Lock()
		l.mu.Lock()
		for t := range l.topics {
			l.lv.forget(l, t)
		}
		delete(l.lv.listeners, l)
		l.closed = true
		l.queue, l.queued = nil, 0
		l.mu.Unlock()
		l.lv.mu.Unlock()
		close(l.done)
		<-l.exited
	})
	return nil
}

// enqueue adds a batch to the queue without ever blocking on the consumer.
func (l *listener) enqueue(b store.Batch) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	if len(l.queue) > 0 && l.queued+len(b.Items) > l.backlog {
		// Too far behind: drop the backlog (and b) for one Resync, after
		// which the consumer re-reads its topics, b's items included.
		l.queue, l.queued, l.resync = nil, 0, true
	} else {
		l.queue = append(l.queue, b)
		l.queued += len(b.Items)
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// next takes the next batch to deliver, skipping topics removed since they
// were queued.
func (l *listener) next() (store.Batch, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.resync {
		l.resync = false
		return store.Batch{Resync: true}, true
	}
	for len(l.queue) > 0 {
		b := l.queue[0]
		l.queue[0] = store.Batch{}
		l.queue = l.queue[1:]
		l.queued -= len(b.Items)
		if l.wantedLocked(b) {
			return b, true
		}
	}
	l.queue = nil
	return store.Batch{}, false
}

// wantedLocked reports whether a queued batch is still for the listener's
// topics; l.mu must be held.
func (l *listener) wantedLocked(b store.Batch) bool {
	if !b.Resync {
		_, ok := l.topics[b.Topic]
		return ok
	}
	for _, t := range b.Topics {
		if _, ok := l.topics[t]; ok {
			return true
		}
	}
	return len(b.Topics) == 0
}

// pump moves queued batches to the Batches channel until Close.
func (l *listener) pump() {
	defer close(l.exited)
	defer close(l.out)
	for {
		b, ok := l.next()
		if !ok {
			select {
			case <-l.wake:
				continue
			case <-l.done:
				return
			}
		}
		select {
		case l.out <- b:
		case <-l.done:
			return
		}
	}
}
