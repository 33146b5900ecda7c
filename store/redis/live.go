package redisstore

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// Limits of a listener's queue between the pub/sub connection and the
// consumer of Batches. The connection is read continuously, whatever the
// consumer does, so that Redis never disconnects a slow subscriber for its
// output buffer (client-output-buffer-limit pubsub). When the consumer falls
// this far behind, the queued batches are dropped and replaced by one Resync
// batch: the consumer re-reads the store from its cursors, which loses
// nothing.
var (
	maxQueuedBatches = 10000
	maxQueuedBytes   = 64 << 20
)

// healthInterval is how long a quiet pub/sub link goes before it is pinged;
// a link that stays silent for another interval after the ping is deemed
// dead and replaced (a silently dropped TCP connection sends no error).
var healthInterval = 10 * time.Second

var errListenerClosed = errors.New("listener is closed")

// Listen implements store.Live. ctx bounds the opening only; the listener
// lives until Close (or the store's Close).
func (s *Store) Listen(ctx context.Context) (store.Listener, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errors.New("redis listen: store is closed")
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &listener{
		st:       s,
		ps:       s.rdb.Subscribe(lctx),
		ctx:      lctx,
		cancel:   cancel,
		topics:   make(map[string]struct{}),
		barriers: make(map[string]*barrier),
		wake:     make(chan struct{}, 1),
		syncReq:  make(chan chan struct{}),
		out:      make(chan store.Batch),
		done:     make(chan struct{}),

		health:     healthInterval,
		maxBatches: maxQueuedBatches,
		maxBytes:   maxQueuedBytes,
	}
	// The first ping connects; its answer proves the link works.
	b := l.newBarrier()
	if err := l.ps.Ping(ctx, b.token); err != nil {
		_ = l.ps.Close()
		cancel()
		return nil, s.wrap("listen", err)
	}
	l.wg.Add(2)
	go l.receive()
	go l.forward()
	if err := l.wait(ctx, b); err != nil {
		_ = l.Close()
		return nil, s.wrap("listen", err)
	}
	l.healthy.Store(true)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = l.Close()
		return nil, errors.New("redis listen: store is closed")
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	return l, nil
}

// listener is a store.Listener over one go-redis PubSub connection.
//
// One goroutine (receive) reads the connection without pause, decodes
// announcements into a bounded queue and watches the link; another
// (forward) hands queued batches to the consumer. When go-redis reconnects
// after a broken link it subscribes again to every channel; the listener
// then pings through the new connection, and once the answer arrives (so
// every re-subscription is confirmed, Redis answering in order) it reports
// healthy again and queues a Resync batch.
//
// Add waits for the same kind of proof: it subscribes, pings, and returns
// when the ping's answer arrives, or when a resync that covers its
// subscription completes.
type listener struct {
	st     *Store
	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	// psMu guards ps, which receive replaces when the link died silently.
	psMu sync.RWMutex
	ps   *redis.PubSub

	mu         sync.Mutex
	topics     map[string]struct{}
	queue      []queued
	queueBytes int
	barriers   map[string]*barrier
	epoch      uint64 // counts link failures
	tokens     uint64
	closed     bool

	health     time.Duration
	maxBatches int
	maxBytes   int

	healthy  atomic.Bool
	received atomic.Int64       // announcements read from the link
	wake     chan struct{}      // something was queued
	syncReq  chan chan struct{} // Remove asks forward to drop removed topics
	out      chan store.Batch
	done     chan struct{}
	wg       sync.WaitGroup
}

type queued struct {
	b    store.Batch
	size int
}

// barrier waits for proof that subscriptions made before it are active.
type barrier struct {
	token string
	epoch uint64
	done  chan struct{}
}

func (l *listener) Batches() <-chan store.Batch { return l.out }

func (l *listener) Healthy() bool { return l.healthy.Load() }

// Add implements store.Listener: it returns once Redis confirmed the
// subscriptions, so every later Append to the topics is announced.
func (l *listener) Add(ctx context.Context, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errListenerClosed
	}
	var added []string
	for _, t := range topics {
		if _, ok := l.topics[t]; !ok {
			l.topics[t] = struct{}{}
			added = append(added, t)
		}
	}
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, l.st.opTimeout)
	defer cancel()
	chans := channels(topics)
	pause := 20 * time.Millisecond
	var err error
	for attempt := 1; ; attempt++ {
		var b *barrier
		l.psMu.RLock()
		err = l.ps.Subscribe(ctx, chans...)
		if err == nil {
			b = l.newBarrier()
			if err = l.ps.Ping(ctx, b.token); err != nil {
				l.dropBarrier(b)
			}
		}
		l.psMu.RUnlock()
		if err == nil {
			if err = l.wait(ctx, b); err == nil {
				return nil
			}
			break
		}
		// A write on a connection that just broke fails, and go-redis
		// reconnects at once: one more attempt is worth it. More are not:
		// the caller learns that Redis is away without delay.
		if attempt == 3 {
			break
		}
		select {
		case <-ctx.Done():
		case <-l.done:
		case <-time.After(pause):
			pause = min(2*pause, 500*time.Millisecond)
			continue
		}
		break
	}
	// Undo, so that what the caller believes (not added) is what holds.
	_ = l.Remove(context.WithoutCancel(ctx), added...)
	if errors.Is(err, errListenerClosed) {
		return err
	}
	return l.st.wrap("listen add", err)
}

// Remove implements store.Listener. When it returns, no batch of the
// topics is delivered any more, even one received before.
func (l *listener) Remove(ctx context.Context, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	for _, t := range topics {
		delete(l.topics, t)
	}
	l.mu.Unlock()
	// An unsubscription that fails to reach Redis is harmless: go-redis
	// forgot the channels (no resubscription on reconnect) and
	// announcements of removed topics are dropped here.
	l.psMu.RLock()
	_ = l.ps.Unsubscribe(ctx, channels(topics)...)
	l.psMu.RUnlock()

	// Make forward re-check a batch it may be holding.
	ack := make(chan struct{})
	select {
	case l.syncReq <- ack:
		<-ack
	case <-l.done:
	}
	return nil
}

// Close implements store.Listener.
func (l *listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.cancel()
	l.psMu.Lock()
	_ = l.ps.Close()
	l.psMu.Unlock()
	l.wg.Wait()
	l.healthy.Store(false)
	l.st.mu.Lock()
	delete(l.st.listeners, l)
	l.st.mu.Unlock()
	return nil
}

func channels(topics []string) []string {
	out := make([]string, len(topics))
	for i, t := range topics {
		out[i] = keysOf(t).live
	}
	return out
}

func (l *listener) newBarrier() *barrier {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens++
	b := &barrier{token: "b" + strconv.FormatUint(l.tokens, 10), epoch: l.epoch, done: make(chan struct{})}
	l.barriers[b.token] = b
	return b
}

func (l *listener) dropBarrier(b *barrier) {
	l.mu.Lock()
	delete(l.barriers, b.token)
	l.mu.Unlock()
}

// wait waits for the barrier to be passed.
func (l *listener) wait(ctx context.Context, b *barrier) error {
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		l.dropBarrier(b)
		return ctx.Err()
	case <-l.done:
		l.dropBarrier(b)
		return errListenerClosed
	}
}

// receive reads the pub/sub connection until Close.
func (l *listener) receive() {
	defer l.wg.Done()
	var (
		recovering  bool   // the link broke; a resync is under way
		resyncToken string // the resync ping sent, "" before it is sent
		resyncEpoch uint64
		quiet       bool // a health ping is out, unanswered
		pause       = 20 * time.Millisecond
	)
	for {
		l.psMu.RLock()
		ps := l.ps
		l.psMu.RUnlock()
		if recovering && resyncToken == "" {
			l.mu.Lock()
			l.tokens++
			token := "r" + strconv.FormatUint(l.tokens, 10)
			epoch := l.epoch
			l.mu.Unlock()
			// Ping reconnects (and resubscribes) when go-redis has no
			// connection; it fails while Redis cannot be reached.
			if err := ps.Ping(l.ctx, token); err != nil {
				select {
				case <-l.done:
					return
				case <-time.After(pause):
					pause = min(2*pause, time.Second)
				}
				continue
			}
			resyncToken, resyncEpoch = token, epoch
		}
		msg, err := ps.ReceiveTimeout(l.ctx, l.health)
		select {
		case <-l.done:
			return
		default:
		}
		if err != nil {
			var nerr net.Error
			if errors.As(err, &nerr) && nerr.Timeout() {
				if !quiet {
					quiet = true
					if ps.Ping(l.ctx, "h") == nil {
						continue
					}
				}
				// Silent for two intervals, or cannot even write: drop
				// this connection for a new one.
				l.replace()
			} else {
				l.linkDown()
			}
			recovering, resyncToken, quiet = true, "", false
			continue
		}
		quiet = false
		switch m := msg.(type) {
		case *redis.Message:
			l.announce(m.Payload)
		case *redis.Pong:
			if recovering && m.Payload == resyncToken {
				recovering, resyncToken = false, ""
				pause = 20 * time.Millisecond
				l.linkUp(resyncEpoch)
			} else {
				l.passBarrier(m.Payload)
			}
		}
	}
}

// linkDown records a broken link.
func (l *listener) linkDown() {
	l.mu.Lock()
	l.epoch++
	l.mu.Unlock()
	l.healthy.Store(false)
}

// replace swaps a dead PubSub for a new one subscribed to every topic.
func (l *listener) replace() {
	l.psMu.Lock()
	defer l.psMu.Unlock()
	l.mu.Lock()
	l.epoch++
	topics := make([]string, 0, len(l.topics))
	for t := range l.topics {
		topics = append(topics, t)
	}
	l.mu.Unlock()
	l.healthy.Store(false)
	_ = l.ps.Close()
	l.ps = l.st.rdb.Subscribe(l.ctx)
	if len(topics) > 0 {
		// Failure to write is fine: the channels are remembered and
		// subscribed when the connection comes up.
		_ = l.ps.Subscribe(l.ctx, channels(topics)...)
	}
	select {
	case <-l.done:
		_ = l.ps.Close()
	default:
	}
}

// linkUp records a link re-established with every subscription confirmed
// as of the resync ping sent at epoch.
func (l *listener) linkUp(epoch uint64) {
	l.mu.Lock()
	for token, b := range l.barriers {
		if b.epoch < epoch {
			close(b.done)
			delete(l.barriers, token)
		}
	}
	// Healthy before the Resync is queued: a consumer that takes the
	// Resync must find the link up.
	l.healthy.Store(true)
	l.enqueueLocked(queued{b: store.Batch{Resync: true}})
	l.mu.Unlock()
}

func (l *listener) passBarrier(token string) {
	l.mu.Lock()
	if b, ok := l.barriers[token]; ok {
		close(b.done)
		delete(l.barriers, token)
	}
	l.mu.Unlock()
}

// announce queues the batch a live message carries, if its topic is wanted.
func (l *listener) announce(payload string) {
	l.received.Add(1)
	m, err := decodeLive(payload)
	var state store.TopicState
	if err == nil {
		if m.state == "" {
			state = store.TopicState{Topic: m.topic}
		} else {
			state, err = l.st.meta.decode(m.topic, m.state)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		// What it announced cannot be known: have the consumer re-read
		// the topic it names, or every topic when it names none.
		if m.topic == "" {
			l.enqueueLocked(queued{b: store.Batch{Resync: true}})
		} else if _, ok := l.topics[m.topic]; ok {
			l.enqueueLocked(queued{b: store.Batch{Resync: true, Topics: []string{m.topic}}})
		}
		return
	}
	if _, ok := l.topics[m.topic]; !ok || len(m.items) == 0 {
		return
	}
	l.enqueueLocked(queued{b: store.Batch{Topic: m.topic, Items: m.items, State: &state}, size: len(payload)})
}

func (l *listener) enqueueLocked(q queued) {
	if len(l.queue) >= l.maxBatches || l.queueBytes+q.size > l.maxBytes {
		// The consumer fell behind: drop what it has not taken and tell
		// it to re-read instead.
		clear(l.queue)
		l.queue = l.queue[:0]
		l.queueBytes = 0
		q = queued{b: store.Batch{Resync: true}}
	}
	l.queue = append(l.queue, q)
	l.queueBytes += q.size
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest queued batch still wanted.
func (l *listener) next() (store.Batch, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.queue) > 0 {
		q := l.queue[0]
		l.queue[0] = queued{}
		l.queue = l.queue[1:]
		l.queueBytes -= q.size
		if len(l.queue) == 0 {
			l.queue = nil // let the backing array go
		}
		if l.wantedLocked(q.b) {
			return q.b, true
		}
	}
	return store.Batch{}, false
}

func (l *listener) wantedLocked(b store.Batch) bool {
	if b.Resync {
		if len(b.Topics) == 0 {
			return true
		}
		for _, t := range b.Topics {
			if _, ok := l.topics[t]; ok {
				return true
			}
		}
		return false
	}
	_, ok := l.topics[b.Topic]
	return ok
}

// forward hands batches to the consumer until Close, then closes Batches.
func (l *listener) forward() {
	defer l.wg.Done()
	defer close(l.out)
	for {
		b, ok := l.next()
		if !ok {
			select {
			case <-l.wake:
			case ack := <-l.syncReq:
				close(ack)
			case <-l.done:
				return
			}
			continue
		}
		for sent := false; !sent; {
			select {
			case l.out <- b:
				sent = true
			case ack := <-l.syncReq:
				l.mu.Lock()
				keep := l.wantedLocked(b)
				l.mu.Unlock()
				close(ack)
				sent = !keep
			case <-l.done:
				return
			}
		}
	}
}
