package redisstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/internal/clusterslot"
	"github.com/feedgate/feedgate/store"
)

// Limits of a listener's queue between the pub/sub connections and the
// consumer of Batches. The connections are read continuously, whatever the
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

var (
	errListenerClosed = errors.New("listener is closed")
	// errLinkLost ends a wait for a link that failed meanwhile: its topics
	// are being subscribed again on a new one.
	errLinkLost = errors.New("pub/sub link lost")
)

// Listen implements store.Live. ctx bounds the opening only; the listener
// lives until Close (or the store's Close).
//
// On one server or Sentinel a listener has one pub/sub connection. On
// Cluster it has one per shard serving its topics (sharded pub/sub: a
// topic's announcements come only from the master of its slot), opened as
// topics are added; a topic whose shard fails over, or whose slot moves,
// is subscribed again on its new master and announced by a Resync batch
// naming it.
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
		ctx:      lctx,
		cancel:   cancel,
		sharded:  s.mode == modeCluster,
		topics:   make(map[string]*link),
		links:    make(map[string]*link),
		homeless: make(map[string]struct{}),
		fresh:    make(map[string]struct{}),
		homed:    make(chan struct{}),
		barriers: make(map[string]*barrier),
		wake:     make(chan struct{}, 1),
		rehome:   make(chan struct{}, 1),
		syncReq:  make(chan chan struct{}),
		out:      make(chan store.Batch),
		done:     make(chan struct{}),

		health:     healthInterval,
		maxBatches: maxQueuedBatches,
		maxBytes:   maxQueuedBytes,
	}
	if l.sharded {
		// Links open with the topics; the slot map must be readable now.
		if err := s.topo.refresh(ctx); err != nil {
			cancel()
			return nil, s.wrap("listen", err)
		}
		l.wg.Add(2)
		go l.forward()
		go l.rehomer()
	} else {
		k := l.newLink("", s.rdb)
		l.links[""] = k
		// The first ping connects; its answer proves the link works.
		b := l.newBarrier(k)
		if err := k.pubsub().Ping(ctx, b.token); err != nil {
			_ = k.pubsub().Close()
			cancel()
			return nil, s.wrap("listen", err)
		}
		l.wg.Add(2)
		go k.receive()
		go l.forward()
		if err := l.wait(ctx, b); err != nil {
			_ = l.Close()
			return nil, s.wrap("listen", err)
		}
		l.mu.Lock()
		k.up = true
		l.recomputeLocked()
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.recomputeLocked()
	l.mu.Unlock()

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

// listener is a store.Listener over go-redis PubSub connections (links).
//
// Each link's goroutine (receive) reads its connection without pause,
// decodes announcements into one bounded queue and watches the link;
// another goroutine (forward) hands queued batches to the consumer.
//
// On one server or Sentinel, when go-redis reconnects after a broken link
// it subscribes again to every channel; the listener then pings through
// the new connection, and once the answer arrives (so every
// re-subscription is confirmed, Redis answering in order) it reports
// healthy again and queues a Resync batch.
//
// On Cluster, a link that fails in any way is dropped, and its topics are
// "homeless" until the rehomer goroutine has read the slot map again and
// subscribed them on the links of their masters (new ones after a
// failover or a slot move), confirmed by a ping; it then queues a Resync
// batch naming them. A master that gives up a slot tells its subscribers
// (SUNSUBSCRIBE); that topic alone is re-homed the same way.
//
// Add waits for the same kind of proof: it subscribes, pings, and returns
// when the ping's answer arrives, or when a resync that covers its
// subscription completes.
type listener struct {
	st      *Store
	ctx     context.Context // ends at Close
	cancel  context.CancelFunc
	sharded bool

	mu       sync.Mutex
	topics   map[string]*link // wanted topics, with their link (nil: homeless)
	links    map[string]*link // by address; "" is the one link off Cluster
	homeless map[string]struct{}
	fresh    map[string]struct{} // homeless topics never homed: Add waits for them
	homed    chan struct{}       // closed (and replaced) when topics find a link
	queue    []queued
	qBytes   int
	barriers map[string]*barrier
	tokens   uint64
	closed   bool

	health     time.Duration
	maxBatches int
	maxBytes   int

	healthy  atomic.Bool
	received atomic.Int64  // announcements read from the links
	wake     chan struct{} // something was queued
	rehome   chan struct{} // topics became homeless
	syncReq  chan chan struct{}
	out      chan store.Batch
	done     chan struct{}
	wg       sync.WaitGroup
}

// link is one pub/sub connection of a listener.
type link struct {
	l      *listener
	addr   string
	client redis.UniversalClient

	psMu sync.RWMutex // guards ps, which receive replaces when it died silently
	ps   *redis.PubSub

	// Guarded by l.mu.
	topics  map[string]struct{}
	epoch   uint64 // counts failures (one server or Sentinel)
	up      bool
	retired bool
	stop    chan struct{} // closed when retired
}

type queued struct {
	b    store.Batch
	size int
}

// barrier waits for proof that subscriptions made on a link before it are
// active.
type barrier struct {
	token string
	link  *link
	epoch uint64
	done  chan struct{}
	lost  bool // the link failed first (set before done is closed)
}

func (l *listener) newLink(addr string, client redis.UniversalClient) *link {
	k := &link{l: l, addr: addr, client: client, topics: make(map[string]struct{}), stop: make(chan struct{})}
	if l.sharded {
		k.ps = client.SSubscribe(l.ctx)
	} else {
		k.ps = client.Subscribe(l.ctx)
	}
	return k
}

func (k *link) pubsub() *redis.PubSub {
	k.psMu.RLock()
	defer k.psMu.RUnlock()
	return k.ps
}

// subscribe subscribes channels on the link: one command per slot on
// Cluster (a sharded subscription may not cross slots).
func (k *link) subscribe(ctx context.Context, chans []string) error {
	k.psMu.RLock()
	defer k.psMu.RUnlock()
	if !k.l.sharded {
		return k.ps.Subscribe(ctx, chans...)
	}
	for _, group := range bySlot(chans) {
		if err := k.ps.SSubscribe(ctx, group...); err != nil {
			return err
		}
	}
	return nil
}

func (k *link) unsubscribe(ctx context.Context, chans []string) {
	k.psMu.RLock()
	defer k.psMu.RUnlock()
	if !k.l.sharded {
		_ = k.ps.Unsubscribe(ctx, chans...)
		return
	}
	for _, group := range bySlot(chans) {
		_ = k.ps.SUnsubscribe(ctx, group...)
	}
}

// bySlot groups channels by hash slot.
func bySlot(chans []string) [][]string {
	m := make(map[int][]string)
	for _, c := range chans {
		s := clusterslot.Of(c)
		m[s] = append(m[s], c)
	}
	out := make([][]string, 0, len(m))
	for _, g := range m {
		out = append(out, g)
	}
	return out
}

func (l *listener) Batches() <-chan store.Batch { return l.out }

func (l *listener) Healthy() bool { return l.healthy.Load() }

// recomputeLocked updates Healthy: every link carrying topics is up and no
// topic that was announced before waits for a link.
func (l *listener) recomputeLocked() {
	h := !l.closed && len(l.homeless) <= len(l.fresh)
	for t := range l.homeless {
		if _, ok := l.fresh[t]; !ok {
			h = false
		}
	}
	for _, k := range l.links {
		if (len(k.topics) > 0 || !l.sharded) && !k.up {
			h = false
		}
	}
	l.healthy.Store(h)
}

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
			l.topics[t] = nil
			added = append(added, t)
		}
	}
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, l.st.opTimeout)
	defer cancel()
	var err error
	if l.sharded {
		err = l.addSharded(ctx, added)
	} else {
		err = l.addSingle(ctx, topics)
	}
	if err == nil {
		return nil
	}
	// Undo, so that what the caller believes (not added) is what holds.
	_ = l.Remove(context.WithoutCancel(ctx), added...)
	if errors.Is(err, errListenerClosed) {
		return err
	}
	return l.st.wrap("listen add", err)
}

// addSingle subscribes on the one link and waits for the proof.
func (l *listener) addSingle(ctx context.Context, topics []string) error {
	k := l.links[""]
	l.mu.Lock()
	for _, t := range topics {
		if _, ok := l.topics[t]; ok {
			l.topics[t] = k
			k.topics[t] = struct{}{}
		}
	}
	l.mu.Unlock()
	chans := channels(l.st, topics)
	pauses := newBackOff(20*time.Millisecond, 500*time.Millisecond)
	var err error
	for attempt := 1; ; attempt++ {
		var b *barrier
		k.psMu.RLock()
		err = k.ps.Subscribe(ctx, chans...)
		if err == nil {
			b = l.newBarrier(k)
			if err = k.ps.Ping(ctx, b.token); err != nil {
				l.dropBarrier(b)
			}
		}
		k.psMu.RUnlock()
		if err == nil {
			return l.wait(ctx, b)
		}
		// A write on a connection that just broke fails, and go-redis
		// reconnects at once: one more attempt is worth it. More are not:
		// the caller learns that Redis is away without delay.
		if attempt == 3 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-l.done:
			return errListenerClosed
		case <-time.After(pauses.NextBackOff()):
		}
	}
}

// addSharded hands the topics to the rehomer and waits until they have a
// link.
func (l *listener) addSharded(ctx context.Context, added []string) error {
	l.mu.Lock()
	for _, t := range added {
		if k, ok := l.topics[t]; ok && k == nil {
			l.homeless[t] = struct{}{}
			l.fresh[t] = struct{}{}
		}
	}
	l.kickRehomer()
	l.mu.Unlock()
	for {
		l.mu.Lock()
		waiting := 0
		for _, t := range added {
			if _, ok := l.fresh[t]; ok {
				waiting++
			}
		}
		homed := l.homed
		closed := l.closed
		l.mu.Unlock()
		switch {
		case closed:
			return errListenerClosed
		case waiting == 0:
			return nil
		}
		select {
		case <-homed:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d topics not subscribed on their shards: %w", waiting, len(added), ctx.Err())
		case <-l.done:
			return errListenerClosed
		}
	}
}

func (l *listener) kickRehomer() {
	select {
	case l.rehome <- struct{}{}:
	default:
	}
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
	byLink := make(map[*link][]string)
	var retired []*link
	for _, t := range topics {
		k, ok := l.topics[t]
		if !ok {
			continue
		}
		delete(l.topics, t)
		delete(l.homeless, t)
		delete(l.fresh, t)
		if k != nil {
			delete(k.topics, t)
			byLink[k] = append(byLink[k], t)
		}
	}
	for k := range byLink {
		if l.sharded && len(k.topics) == 0 && !k.retired {
			l.retireLocked(k)
			retired = append(retired, k)
		}
	}
	l.recomputeLocked()
	l.mu.Unlock()
	// An unsubscription that fails to reach Redis is harmless: go-redis
	// forgot the channels (no resubscription on reconnect) and
	// announcements of removed topics are dropped here.
	for k, ts := range byLink {
		if !slices.Contains(retired, k) {
			k.unsubscribe(ctx, channels(l.st, ts))
		}
	}
	for _, k := range retired {
		l.closeLink(k)
	}

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
	links := make([]*link, 0, len(l.links))
	for _, k := range l.links {
		links = append(links, k)
	}
	l.healthy.Store(false)
	l.mu.Unlock()
	close(l.done)
	l.cancel()
	for _, k := range links {
		k.psMu.Lock()
		_ = k.ps.Close()
		k.psMu.Unlock()
	}
	l.wg.Wait()
	l.st.mu.Lock()
	delete(l.st.listeners, l)
	l.st.mu.Unlock()
	return nil
}

func channels(s *Store, topics []string) []string {
	out := make([]string, len(topics))
	for i, t := range topics {
		out[i] = s.keysOf(t).live
	}
	return out
}

func (l *listener) newBarrier(k *link) *barrier {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens++
	b := &barrier{token: "b" + strconv.FormatUint(l.tokens, 10), link: k, epoch: k.epoch, done: make(chan struct{})}
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
		if b.lost {
			return errLinkLost
		}
		return nil
	case <-ctx.Done():
		l.dropBarrier(b)
		return ctx.Err()
	case <-l.done:
		l.dropBarrier(b)
		return errListenerClosed
	}
}

func (l *listener) passBarrier(token string) {
	l.mu.Lock()
	if b, ok := l.barriers[token]; ok {
		close(b.done)
		delete(l.barriers, token)
	}
	l.mu.Unlock()
}

// retireLocked drops a link of a Cluster listener: its topics become
// homeless, waits on it fail. The caller closes its connection
// (closeLink) once l.mu is released.
func (l *listener) retireLocked(k *link) {
	if k.retired {
		return
	}
	k.retired, k.up = true, false
	if l.links[k.addr] == k {
		delete(l.links, k.addr)
	}
	for t := range k.topics {
		if l.topics[t] == k {
			l.topics[t] = nil
			l.homeless[t] = struct{}{}
		}
	}
	k.topics = make(map[string]struct{})
	for token, b := range l.barriers {
		if b.link == k {
			b.lost = true
			close(b.done)
			delete(l.barriers, token)
		}
	}
	close(k.stop)
	if len(l.homeless) > 0 {
		l.kickRehomer()
	}
	l.recomputeLocked()
}

// closeLink closes a retired link's connection, which ends its receive.
func (l *listener) closeLink(k *link) {
	k.psMu.Lock()
	_ = k.ps.Close()
	k.psMu.Unlock()
}

// linkFor returns the listener's link to the master at addr, opening it;
// nil once the listener is closed.
func (l *listener) linkFor(addr string) *link {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if k, ok := l.links[addr]; ok {
		return k
	}
	k := l.newLink(addr, l.st.topo.client(addr))
	k.up = true
	l.links[addr] = k
	l.wg.Add(1)
	go k.receive()
	return k
}

// rehomer subscribes homeless topics on their masters' links until Close.
func (l *listener) rehomer() {
	defer l.wg.Done()
	pauses := newBackOff(20*time.Millisecond, time.Second)
	for {
		select {
		case <-l.done:
			return
		case <-l.rehome:
		}
		for {
			l.mu.Lock()
			topics := make([]string, 0, len(l.homeless))
			for t := range l.homeless {
				topics = append(topics, t)
			}
			l.mu.Unlock()
			if len(topics) == 0 {
				pauses.Reset()
				break
			}
			if err := l.home(topics); err == nil {
				pauses.Reset()
				continue
			}
			if !sleep(l.ctx, pauses.NextBackOff()) {
				return
			}
		}
	}
}

// home subscribes topics on the links of the masters serving them now,
// and queues a Resync naming those that were announced before.
func (l *listener) home(topics []string) error {
	ctx, cancel := context.WithTimeout(l.ctx, l.st.opTimeout)
	defer cancel()
	if err := l.st.topo.refresh(ctx); err != nil {
		return err
	}
	groups := make(map[string][]string)
	for _, t := range topics {
		addr, err := l.st.topo.master(ctx, clusterslot.Of(l.st.keysOf(t).live))
		if err != nil {
			return err
		}
		groups[addr] = append(groups[addr], t)
	}
	var firstErr error
	for addr, ts := range groups {
		k := l.linkFor(addr)
		if k == nil {
			return errListenerClosed
		}
		err := k.subscribe(ctx, channels(l.st, ts))
		if err == nil {
			b := l.newBarrier(k)
			if err = k.pubsub().Ping(ctx, b.token); err != nil {
				l.dropBarrier(b)
			} else {
				err = l.wait(ctx, b)
			}
		}
		l.mu.Lock()
		if err != nil {
			// A new link next time.
			retire := !k.retired && !errors.Is(err, errListenerClosed)
			if retire {
				l.retireLocked(k)
			}
			l.mu.Unlock()
			if retire {
				l.closeLink(k)
			}
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		var resync, unwanted []string
		for _, t := range ts {
			_, wanted := l.topics[t]
			_, waiting := l.homeless[t]
			if !wanted && !k.retired {
				// Removed meanwhile: not to stay subscribed.
				unwanted = append(unwanted, t)
			}
			if !wanted || !waiting || k.retired {
				continue
			}
			delete(l.homeless, t)
			l.topics[t] = k
			k.topics[t] = struct{}{}
			if _, ok := l.fresh[t]; ok {
				delete(l.fresh, t)
			} else {
				resync = append(resync, t)
			}
		}
		if len(resync) > 0 {
			slices.Sort(resync)
			l.enqueueLocked(queued{b: store.Batch{Resync: true, Topics: resync}})
		}
		close(l.homed)
		l.homed = make(chan struct{})
		l.recomputeLocked()
		l.mu.Unlock()
		if len(unwanted) > 0 {
			k.unsubscribe(ctx, channels(l.st, unwanted))
		}
	}
	return firstErr
}

// slotLeft re-homes the topic of a channel whose master gave up its slot.
func (l *listener) slotLeft(k *link, channel string) {
	l.mu.Lock()
	for t := range k.topics {
		if l.st.keysOf(t).live != channel || l.topics[t] != k {
			continue
		}
		delete(k.topics, t)
		l.topics[t] = nil
		l.homeless[t] = struct{}{}
		l.kickRehomer()
	}
	l.recomputeLocked()
	l.mu.Unlock()
}

// receive reads the link's connection until it is closed.
func (k *link) receive() {
	defer k.l.wg.Done()
	if k.l.sharded {
		k.receiveShard()
	} else {
		k.receiveOne()
	}
}

// receiveShard reads a Cluster link; on any failure the link is retired
// and its topics re-homed.
func (k *link) receiveShard() {
	l := k.l
	quiet := false // a health ping is out, unanswered
	for {
		ps := k.pubsub()
		msg, err := ps.ReceiveTimeout(l.ctx, l.health)
		select {
		case <-l.done:
			return
		case <-k.stop:
			return
		default:
		}
		if err != nil {
			if isTimeout(err) && !quiet {
				quiet = true
				if ps.Ping(l.ctx, "h") == nil {
					continue
				}
			}
			l.mu.Lock()
			l.retireLocked(k)
			l.mu.Unlock()
			l.closeLink(k)
			return
		}
		quiet = false
		switch m := msg.(type) {
		case *redis.Message:
			l.announce(m.Payload)
		case *redis.Pong:
			l.passBarrier(m.Payload)
		case *redis.Subscription:
			if m.Kind == "sunsubscribe" {
				l.slotLeft(k, m.Channel)
			}
		}
	}
}

// receiveOne reads the link of one server or Sentinel; go-redis reconnects
// it and subscribes again, and the listener confirms that with a ping
// before it queues a Resync.
func (k *link) receiveOne() {
	l := k.l
	var (
		recovering  bool   // the link broke; a resync is under way
		resyncToken string // the resync ping sent, "" before it is sent
		resyncEpoch uint64
		quiet       bool // a health ping is out, unanswered
		pauses      = newBackOff(20*time.Millisecond, time.Second)
	)
	for {
		ps := k.pubsub()
		if recovering && resyncToken == "" {
			l.mu.Lock()
			l.tokens++
			token := "r" + strconv.FormatUint(l.tokens, 10)
			epoch := k.epoch
			l.mu.Unlock()
			// Ping reconnects (and resubscribes) when go-redis has no
			// connection; it fails while Redis cannot be reached.
			if err := ps.Ping(l.ctx, token); err != nil {
				if !sleep(l.ctx, pauses.NextBackOff()) {
					return
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
			if isTimeout(err) {
				if !quiet {
					quiet = true
					if ps.Ping(l.ctx, "h") == nil {
						continue
					}
				}
				// Silent for two intervals, or cannot even write: drop
				// this connection for a new one.
				k.replace()
			} else {
				k.down()
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
				pauses.Reset()
				k.resynced(resyncEpoch)
			} else {
				l.passBarrier(m.Payload)
			}
		}
	}
}

func isTimeout(err error) bool {
	var nerr interface{ Timeout() bool }
	return errors.As(err, &nerr) && nerr.Timeout()
}

// down records a broken link.
func (k *link) down() {
	k.l.mu.Lock()
	k.epoch++
	k.up = false
	k.l.recomputeLocked()
	k.l.mu.Unlock()
}

// replace swaps a dead PubSub for a new one subscribed to every topic.
func (k *link) replace() {
	l := k.l
	k.psMu.Lock()
	defer k.psMu.Unlock()
	l.mu.Lock()
	k.epoch++
	k.up = false
	topics := make([]string, 0, len(k.topics))
	for t := range k.topics {
		topics = append(topics, t)
	}
	l.recomputeLocked()
	l.mu.Unlock()
	_ = k.ps.Close()
	k.ps = k.client.Subscribe(l.ctx)
	if len(topics) > 0 {
		// Failure to write is fine: the channels are remembered and
		// subscribed when the connection comes up.
		_ = k.ps.Subscribe(l.ctx, channels(l.st, topics)...)
	}
	select {
	case <-l.done:
		_ = k.ps.Close()
	default:
	}
}

// resynced records a link re-established with every subscription
// confirmed as of the resync ping sent at epoch.
func (k *link) resynced(epoch uint64) {
	l := k.l
	l.mu.Lock()
	for token, b := range l.barriers {
		if b.link == k && b.epoch < epoch {
			close(b.done)
			delete(l.barriers, token)
		}
	}
	// Healthy before the Resync is queued: a consumer that takes the
	// Resync must find the link up.
	k.up = true
	l.recomputeLocked()
	l.enqueueLocked(queued{b: store.Batch{Resync: true}})
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
	if len(l.queue) >= l.maxBatches || l.qBytes+q.size > l.maxBytes {
		// The consumer fell behind: drop what it has not taken and tell
		// it to re-read instead.
		clear(l.queue)
		l.queue = l.queue[:0]
		l.qBytes = 0
		q = queued{b: store.Batch{Resync: true}}
	}
	l.queue = append(l.queue, q)
	l.qBytes += q.size
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
		l.qBytes -= q.size
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
