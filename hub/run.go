package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/store"
)

// Delivery in short. A callback subscription's queue is the topic itself:
// items are stored durably with contiguous cursors before a publisher is
// answered, and each subscription keeps, durably, the cursor it has been
// delivered up to. A delivery job per subscription, in the store's leased
// timetable, reads the items after that cursor, POSTs them and advances the
// cursor when the callback answers 2xx, so on several nodes exactly one
// node works a subscription at a time and a crash loses nothing: the lease
// runs out and the job is taken again (and the POST marked as a possible
// redelivery). Jobs are made due when a node's store listener announces new
// items, and by a sweep (at start, after a listener outage, and
// periodically) that compares every subscription's cursor with its topic's.

// Run delivers to callbacks and verifies hub.verify=async requests until
// ctx ends; POSTs in flight then finish (bounded by DeliveryTimeout) before
// Run returns. It returns at once (nil) on a Service without callbacks.
func (s *Service) Run(ctx context.Context) error {
	if !s.CallbacksEnabled() {
		return nil
	}
	var wg sync.WaitGroup
	for range s.opts.AsyncVerifiers {
		wg.Go(func() { s.verifyLoop(ctx) })
	}
	h := s.opts.Live
	if h == nil {
		// Standalone (tests, tools): a hub of its own.
		own, err := live.New(s.store, live.Options{Logger: s.log})
		if err != nil {
			return err
		}
		defer own.Close()
		h = own
	}
	wg.Go(func() { s.listenLoop(ctx, h) })
	wg.Go(func() { s.sweepLoop(ctx) })
	s.dispatch(ctx)
	wg.Wait()
	return nil
}

// kick wakes the dispatcher.
func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// dispatch claims due jobs while worker slots are free and runs them.
func (s *Service) dispatch(ctx context.Context) {
	slots := make(chan struct{}, s.opts.Concurrency)
	var workers sync.WaitGroup
	defer workers.Wait()
	// Workers finish what they started after ctx ends.
	wctx := context.WithoutCancel(ctx)
	poll := time.NewTimer(0)
	defer poll.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.pages.expire(time.Now())
			continue
		case <-s.wake:
		case <-poll.C:
		}
		for {
			free := s.opts.Concurrency - len(slots)
			if free <= 0 {
				s.saturated.Store(true)
				break
			}
			claimedAt := time.Now()
			claims, err := s.dlv.ClaimDeliveries(ctx, claimedAt, free, s.opts.JobLease)
			if err != nil {
				if ctx.Err() == nil {
					failures++
					if failures == 1 || failures%100 == 0 {
						s.log.LogAttrs(ctx, slog.LevelWarn, "claiming delivery jobs failed", slog.String("err", err.Error()), slog.Int("failures", failures))
					}
				}
				break
			}
			failures = 0
			for _, c := range claims {
				slots <- struct{}{}
				workers.Go(func() {
					defer func() {
						<-slots
						if s.saturated.CompareAndSwap(true, false) {
							s.kick()
						}
					}()
					s.work(wctx, c, claimedAt)
				})
			}
			if len(claims) < free {
				break
			}
		}
		poll.Reset(s.opts.PollInterval)
	}
}

// scheduler is the hub's consumer of the node hub: a notification of a
// topic with callback subscriptions makes their jobs due. It never blocks
// fan-out: topics wait in a set for scheduleLoop.
type scheduler struct {
	// subMu orders the changes of the topics subscribed on the hub
	// (syncTopics, listenTopic), so that a sync never unsubscribes a topic
	// that listenTopic has just subscribed.
	subMu  sync.Mutex
	mu     sync.Mutex
	due    map[string]struct{}
	wake   chan struct{}
	topics map[string]bool // subscribed on the hub; owned by syncTopics' callers under mu
	// pinned counts, per topic, the subscriptions being activated: their
	// topic is listened to before their delivery record is stored, so a
	// sync that reads the records in between must not drop it.
	pinned map[string]int
}

func (sc *scheduler) init() {
	sc.due = make(map[string]struct{})
	sc.wake = make(chan struct{}, 1)
	sc.topics = make(map[string]bool)
	sc.pinned = make(map[string]int)
}

// Notify implements live.Consumer.
func (sc *scheduler) Notify(n *live.Notification) { sc.mark(n.Topic) }

// Lost implements live.Consumer: announcements were lost, the topic's
// subscriptions are compared with it anyway.
func (sc *scheduler) Lost(topic string) { sc.mark(topic) }

func (sc *scheduler) mark(topic string) {
	sc.mu.Lock()
	sc.due[topic] = struct{}{}
	sc.mu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

func (sc *scheduler) take() []string {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	out := make([]string, 0, len(sc.due))
	for t := range sc.due {
		out = append(out, t)
	}
	clear(sc.due)
	return out
}

// listenTopic has the node hub announce topic's appends to this service
// (once Run runs). It returns when the hub has taken the topic, with the
// topic pinned: the periodic sync does not drop it, although no delivery
// record names it yet, until unpin is called (once the record is stored,
// or its storing failed).
func (s *Service) listenTopic(ctx context.Context, topic string) (unpin func()) {
	s.sched.mu.Lock()
	s.sched.pinned[topic]++
	known := s.sched.topics[topic]
	s.sched.mu.Unlock()
	unpin = func() {
		s.sched.mu.Lock()
		if s.sched.pinned[topic]--; s.sched.pinned[topic] <= 0 {
			delete(s.sched.pinned, topic)
		}
		s.sched.mu.Unlock()
	}
	h := s.liveHub.Load()
	if h == nil || known {
		return unpin
	}
	s.sched.subMu.Lock()
	defer s.sched.subMu.Unlock()
	s.sched.mu.Lock()
	known = s.sched.topics[topic]
	s.sched.mu.Unlock()
	if known {
		return unpin
	}
	if err := h.Subscribe(ctx, &s.sched, topic); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "listening to a topic failed; its deliveries wait for the next sweep", slog.String("topic", topic), slog.String("err", err.Error()))
		return unpin
	}
	s.sched.mu.Lock()
	s.sched.topics[topic] = true
	s.sched.mu.Unlock()
	return unpin
}

// syncTopics has the hub announce exactly the topics with callback
// subscriptions.
func (s *Service) syncTopics(ctx context.Context, h *live.Hub) error {
	s.sched.subMu.Lock()
	defer s.sched.subMu.Unlock()
	topics, err := s.dlv.DeliveryTopics(ctx)
	if err != nil {
		return err
	}
	want := make(map[string]bool, len(topics))
	var add, drop []string
	s.sched.mu.Lock()
	for _, t := range topics {
		want[t] = true
		if !s.sched.topics[t] {
			add = append(add, t)
		}
	}
	for t := range s.sched.topics {
		if !want[t] && s.sched.pinned[t] == 0 {
			drop = append(drop, t)
			delete(s.sched.topics, t)
		}
	}
	s.sched.mu.Unlock()
	if len(drop) > 0 {
		h.Unsubscribe(&s.sched, drop...)
	}
	if len(add) > 0 {
		if err := h.Subscribe(ctx, &s.sched, add...); err != nil {
			return err
		}
		s.sched.mu.Lock()
		for _, t := range add {
			s.sched.topics[t] = true
		}
		s.sched.mu.Unlock()
	}
	return nil
}

// listenLoop follows the topics with callback subscriptions on the node
// hub and turns their notifications into due delivery jobs.
func (s *Service) listenLoop(ctx context.Context, h *live.Hub) {
	s.liveHub.Store(h)
	defer func() {
		s.liveHub.Store(nil)
		s.sched.mu.Lock()
		topics := make([]string, 0, len(s.sched.topics))
		for t := range s.sched.topics {
			topics = append(topics, t)
		}
		clear(s.sched.topics)
		s.sched.mu.Unlock()
		h.Unsubscribe(&s.sched, topics...)
	}()
	refresh := time.NewTicker(s.opts.TopicRefresh)
	defer refresh.Stop()
	if err := s.syncTopics(ctx, h); err != nil && ctx.Err() == nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "listening to delivery topics failed", slog.String("err", err.Error()))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			if err := s.syncTopics(ctx, h); err != nil && ctx.Err() == nil {
				s.log.LogAttrs(ctx, slog.LevelWarn, "refreshing delivery topics failed", slog.String("err", err.Error()))
			}
		case <-s.sched.wake:
			for _, topic := range s.sched.take() {
				n, err := s.dlv.ScheduleDeliveries(ctx, topic, time.Now())
				if err != nil {
					if ctx.Err() == nil {
						s.log.LogAttrs(ctx, slog.LevelWarn, "scheduling deliveries failed; the sweep will", slog.String("topic", topic), slog.String("err", err.Error()))
					}
					continue
				}
				if n > 0 {
					s.kick()
				}
			}
		}
	}
}

func (s *Service) requestSweep() {
	select {
	case s.sweepReq <- struct{}{}:
	default:
	}
}

// sweepLoop sweeps at start, when asked, and every SweepInterval, and
// refreshes the queue gauges.
func (s *Service) sweepLoop(ctx context.Context) {
	if err := s.sweep(ctx, true); err != nil && ctx.Err() == nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "delivery sweep failed", slog.String("err", err.Error()))
	}
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	stats := time.NewTicker(5 * time.Second)
	defer stats.Stop()
	s.updateStats(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-stats.C:
			s.updateStats(ctx)
			continue
		case <-t.C:
		case <-s.sweepReq:
		}
		if err := s.sweep(ctx, false); err != nil && ctx.Err() == nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "delivery sweep failed", slog.String("err", err.Error()))
		}
	}
}

// gaugesLease is how long the node reporting the cluster-wide gauges
// holds that role without renewing it (every 5 s).
const gaugesLease = 15 * time.Second

// updateStats sets the gauges of the whole deployment (queue depth, leased
// jobs, subscriptions). With several nodes on one store, one node reports
// them and the others report 0 (store.Leases), so that summing them over
// the nodes counts them once.
func (s *Service) updateStats(ctx context.Context) {
	if l, ok := s.store.(store.Leases); ok {
		held, err := l.Lease(ctx, "delivery-gauges", s.holder, gaugesLease)
		if err != nil {
			return
		}
		if !held {
			s.m.queueDepth.Set(0)
			s.m.leased.Set(0)
			s.m.subscriptions.Set(0)
			return
		}
	}
	st, err := s.dlv.DeliveryStats(ctx, time.Now())
	if err != nil {
		return
	}
	s.m.queueDepth.Set(float64(st.Due))
	s.m.leased.Set(float64(st.Leased))
	s.m.subscriptions.Set(float64(st.Deliveries))
}

// sweep makes due the jobs of every subscription behind its topic or past
// its lease, and removes delivery records whose subscription is gone (a
// node stopped between the two writes of a subscribe or an unsubscribe).
// The first sweep of a node also removes callback subscriptions that lost
// their delivery record.
func (s *Service) sweep(ctx context.Context, first bool) error {
	topics, err := s.dlv.DeliveryTopics(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	scheduled := 0
	for _, topic := range topics {
		page, err := s.store.Read(ctx, topic, store.Query{From: store.Newest, Count: 0})
		if err != nil {
			return err
		}
		ds, err := s.dlv.TopicDeliveries(ctx, topic)
		if err != nil {
			return err
		}
		subs, err := s.callbackSubs(ctx, topic)
		if err != nil {
			return err
		}
		due := false
		for _, d := range ds {
			if !subs[subKey(d.Login, d.Callback)] && now.Sub(d.RenewedAt) > orphanGrace {
				if _, err := s.dlv.DeleteDelivery(ctx, d.DeliveryKey); err != nil {
					return err
				}
				s.m.removed.WithLabelValues(reasonOrphan).Inc()
				continue
			}
			if d.Progress.Delivered < page.Last || (!d.ExpiresAt.IsZero() && !now.Before(d.ExpiresAt)) {
				due = true
			}
		}
		if due {
			n, err := s.dlv.ScheduleDeliveries(ctx, topic, now)
			if err != nil {
				return err
			}
			scheduled += n
		}
	}
	if first {
		if err := s.removeOrphanSubscriptions(ctx); err != nil {
			return err
		}
	}
	if scheduled > 0 {
		s.kick()
	}
	return nil
}

// orphanGrace is how old a delivery record without a subscription must be
// before a sweep removes it: a subscribe on another node writes the record
// a moment before the subscription.
const orphanGrace = time.Minute

func subKey(login, callback string) string { return login + "\x00" + callback }

func (s *Service) callbackSubs(ctx context.Context, topic string) (map[string]bool, error) {
	subs, err := s.store.TopicSubscriptions(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(subs))
	for _, sub := range subs {
		if sub.Callback != "" {
			out[subKey(sub.Login, sub.Callback)] = true
		}
	}
	return out, nil
}

// removeOrphanSubscriptions removes callback subscriptions without a
// delivery record: an unsubscribe (or a removal after 410 or expiry)
// stopped between its two writes.
func (s *Service) removeOrphanSubscriptions(ctx context.Context) error {
	topics, err := s.store.TrackedTopics(ctx)
	if err != nil {
		return err
	}
	for _, topic := range topics {
		subs, err := s.store.TopicSubscriptions(ctx, topic)
		if err != nil {
			return err
		}
		for _, sub := range subs {
			if sub.Callback == "" {
				continue
			}
			k := store.DeliveryKey{Login: sub.Login, Topic: sub.Topic, Callback: sub.Callback}
			if _, err := s.dlv.Delivery(ctx, k); err == nil {
				continue
			} else if !isNotFound(err) {
				return err
			}
			if err := s.remove(ctx, k, reasonOrphan); err != nil {
				return err
			}
		}
	}
	return nil
}
