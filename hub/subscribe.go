// Package hub owns the downstream side of WebSub: hub.mode=subscribe,
// unsubscribe and list, for retrieve-only subscriptions and for subscribers
// with a callback.
package hub

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/internal/ratelog"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/store"
)

// Tracker keeps subscribed topics fresh (package ingest).
type Tracker interface {
	// CheckURL refuses topics the gateway must not fetch (private addresses).
	CheckURL(ctx context.Context, raw string) error
	// Track starts keeping topic fresh; Untrack stops.
	Track(ctx context.Context, topic string) error
	Untrack(ctx context.Context, topic string) error
}

// Service handles subscriptions and, for subscribers with a callback,
// verification of intent and delivery (see Run).
type Service struct {
	store   store.Store
	tracker Tracker
	dlv     store.DeliveryStore
	opts    Options
	fetcher *fetch.Fetcher
	log     *slog.Logger
	m       *metrics
	// failLog keeps a failing callback from flooding the log.
	failLog *ratelog.Limiter

	// wake tells the dispatcher that jobs were scheduled on this node or a
	// worker slot freed while jobs were left.
	wake      chan struct{}
	saturated atomic.Bool
	verifyQ   chan verification
	replayQ   chan replayJob
	sweepReq  chan struct{}

	liveHub atomic.Pointer[live.Hub] // set while Run runs
	sched   scheduler
	cbMu    sync.Mutex
	cbBusy  map[string]int
	pages   pageCache
	// holder names this node when it takes store leases.
	holder string
}

// New returns a Service. Without Options.PublicHubURL and Fetcher and a
// store that implements store.DeliveryStore, subscriptions with a
// callback are refused.
func New(st store.Store, tracker Tracker, o Options) *Service {
	o = o.withDefaults()
	s := &Service{
		store:    st,
		tracker:  tracker,
		dlv:      o.Deliveries,
		opts:     o,
		fetcher:  o.Fetcher,
		log:      o.Logger.With("component", "hub"),
		m:        newMetrics(o.Registerer),
		failLog:  ratelog.New(ratelog.Options{}),
		wake:     make(chan struct{}, 1),
		verifyQ:  make(chan verification, o.AsyncQueue),
		replayQ:  make(chan replayJob, o.AsyncQueue),
		sweepReq: make(chan struct{}, 1),
		cbBusy:   make(map[string]int),
		holder:   rand.Text(),
	}
	if s.dlv == nil {
		s.dlv, _ = st.(store.DeliveryStore)
	}
	s.pages.init()
	s.sched.init()
	return s
}

// CallbacksEnabled reports whether subscriptions with a callback are
// served.
func (s *Service) CallbacksEnabled() bool {
	return s.dlv != nil && s.fetcher != nil && s.opts.PublicHubURL != ""
}

// MaxSecret bounds hub.secret (WebSub: less than 200 bytes).
const MaxSecret = 199

// SubscribeRequest is a parsed subscribe or unsubscribe.
type SubscribeRequest struct {
	Topic        string
	Callback     string
	Secret       string
	Async        bool
	LeaseSeconds int
	Format       string
	Retrieve     bool
}

// ParseSubscribe reads and validates (un)subscribe parameters.
func ParseSubscribe(p api.Params) (SubscribeRequest, error) {
	req := SubscribeRequest{
		Topic:    p.Get("hub.topic"),
		Callback: p.Get("hub.callback"),
		Secret:   p.Get("hub.secret"),
		Format:   strings.ToLower(p.Get("format")),
	}
	if err := api.CheckURL("hub.topic", req.Topic); err != nil {
		return req, err
	}
	if req.Callback != "" {
		if err := api.CheckURL("hub.callback", req.Callback); err != nil {
			return req, err
		}
	}
	if len(req.Secret) > MaxSecret {
		return req, api.Invalid("hub.secret must be shorter than 200 bytes")
	}
	switch req.Format {
	case "":
		req.Format = "atom"
	case "atom", "json":
	default:
		return req, api.Invalid("format must be atom or json")
	}
	switch strings.ToLower(p.Get("hub.verify")) {
	case "", "sync":
	case "async":
		req.Async = true
	default:
		return req, api.Invalid("hub.verify must be sync or async")
	}
	if ls := p.Get("hub.lease_seconds"); ls != "" {
		n, err := strconv.Atoi(ls)
		if err != nil || n < 0 {
			return req, api.Invalid("hub.lease_seconds must be a whole number of seconds")
		}
		req.LeaseSeconds = n
	}
	switch strings.ToLower(p.Get("retrieve")) {
	case "", "false", "0":
	case "true", "1":
		req.Retrieve = true
	default:
		return req, api.Invalid("retrieve must be true or false")
	}
	return req, nil
}

// ErrCallbacksUnsupported answers subscriptions with a callback on a
// gateway not set up to deliver to callbacks: it never pretends to deliver.
var ErrCallbacksUnsupported = api.Invalid("hub.callback is not supported by this gateway: subscribe without a callback and read with hub.mode=retrieve, wait=stream or wait=poll")

// Subscribe records a subscription of the principal and starts tracking its
// topic. With a callback, intent is verified first: synchronously (an error
// says why it failed), or with req.Async in the background after Subscribe
// returns (the caller answers 202).
func (s *Service) Subscribe(ctx context.Context, p *auth.Principal, req SubscribeRequest) error {
	return s.SubscribeMany(ctx, p, req, []string{req.Topic})
}

// SubscribeMany subscribes the principal to every topic (req.Topic is
// ignored) with the rest of req, or to none: every topic is checked, and
// with a synchronous callback every verification of intent passes, before
// the first subscription is stored.
func (s *Service) SubscribeMany(ctx context.Context, p *auth.Principal, req SubscribeRequest, topics []string) error {
	if err := auth.Require(p, store.RightSubscribe); err != nil {
		return err
	}
	if len(topics) == 0 {
		return api.Invalid("hub.topic is required")
	}
	if req.Callback != "" && !s.CallbacksEnabled() {
		return ErrCallbacksUnsupported
	}
	several := len(topics) > 1
	for _, topic := range topics {
		if err := api.CheckURL("hub.topic", topic); err != nil {
			return err
		}
		if err := auth.RequireTopic(p, topic); err != nil {
			return err
		}
		if err := s.tracker.CheckURL(ctx, topic); err != nil {
			if e, ok := api.AsError(err); ok {
				return e
			}
			if several {
				return api.Invalid("hub.topic %s refused: %v; nothing was subscribed", topic, err)
			}
			return api.Invalid("hub.topic refused: %v", err)
		}
	}
	if req.Callback != "" {
		if err := s.checkCallback(ctx, req.Callback); err != nil {
			return err
		}
	}
	vs := make([]verification, len(topics))
	for i, topic := range topics {
		r := req
		r.Topic = topic
		vs[i] = verification{mode: modeSubscribe, login: p.Login, req: r, lease: s.lease(req.LeaseSeconds)}
		if req.Callback != "" && !req.Async {
			if err := s.verify(ctx, vs[i]); err != nil {
				if several {
					return api.Invalid("%v (for hub.topic %s); nothing was subscribed", err, topic)
				}
				return api.Invalid("%v", err)
			}
		}
	}
	for _, v := range vs {
		var err error
		switch {
		case req.Callback == "":
			err = s.subscribeRetrieveOnly(ctx, p.Login, v.req)
		case req.Async:
			err = s.enqueue(v)
		default:
			err = s.activate(ctx, v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) subscribeRetrieveOnly(ctx context.Context, login string, req SubscribeRequest) error {
	sub := store.Subscription{
		Login:     login,
		Topic:     req.Topic,
		Format:    req.Format,
		CreatedAt: time.Now().UTC(),
	}
	if _, err := s.store.PutSubscription(ctx, sub); err != nil {
		return err
	}
	return s.tracker.Track(ctx, req.Topic)
}

// Unsubscribe removes the principal's subscription; the last one of a topic
// stops its tracking. With a callback, intent is verified first, as for
// Subscribe; deliveries stop once it is confirmed.
func (s *Service) Unsubscribe(ctx context.Context, p *auth.Principal, req SubscribeRequest) error {
	if err := auth.Require(p, store.RightUnsubscribe); err != nil {
		return err
	}
	if err := auth.RequireTopic(p, req.Topic); err != nil {
		return err
	}
	if req.Callback == "" {
		remaining, err := s.store.DeleteSubscription(ctx, p.Login, req.Topic, "")
		if errors.Is(err, store.ErrNotFound) {
			return api.Errorf(http.StatusNotFound, "you have no subscription to %s without a callback", req.Topic)
		}
		if err != nil {
			return err
		}
		if remaining == 0 {
			return s.tracker.Untrack(ctx, req.Topic)
		}
		return nil
	}
	if !s.CallbacksEnabled() {
		return ErrCallbacksUnsupported
	}
	k := store.DeliveryKey{Login: p.Login, Topic: req.Topic, Callback: req.Callback}
	if _, err := s.dlv.Delivery(ctx, k); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return api.Errorf(http.StatusNotFound, "you have no subscription to %s with the callback %s", req.Topic, req.Callback)
		}
		return err
	}
	v := verification{mode: modeUnsubscribe, login: p.Login, req: req}
	if req.Async {
		return s.enqueue(v)
	}
	if err := s.verify(ctx, v); err != nil {
		return api.Invalid("%v", err)
	}
	return s.remove(ctx, k, reasonUnsubscribed)
}

// lease clamps a requested hub.lease_seconds (0: none asked) to the bounds.
func (s *Service) lease(seconds int) time.Duration {
	if seconds <= 0 {
		return s.opts.LeaseDefault
	}
	const maxSeconds = int64(1<<62) / int64(time.Second)
	d := time.Duration(min(int64(seconds), maxSeconds)) * time.Second
	return min(max(d, s.opts.LeaseMin), s.opts.LeaseMax)
}

// checkCallback refuses callbacks the fetcher would not connect to.
func (s *Service) checkCallback(ctx context.Context, callback string) error {
	if err := s.fetcher.CheckURL(ctx, callback); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return api.Invalid("hub.callback refused: %v", err)
	}
	return nil
}

// activate stores a verified subscription with a callback (or renews it:
// same login, topic and callback; the secret, format and lease are
// replaced, delivery progress is kept).
func (s *Service) activate(ctx context.Context, v verification) error {
	req := v.req
	now := time.Now().UTC()
	// Listen before reading where the topic stands: an item appended in
	// between is then announced and delivered, not skipped.
	defer s.listenTopic(ctx, req.Topic)()
	page, err := s.store.Read(ctx, req.Topic, store.Query{From: store.Newest, Count: 0})
	if err != nil {
		return err
	}
	d := store.Delivery{
		DeliveryKey:  store.DeliveryKey{Login: v.login, Topic: req.Topic, Callback: req.Callback},
		Secret:       req.Secret,
		Format:       req.Format,
		LeaseSeconds: int(v.lease / time.Second),
		CreatedAt:    now,
		RenewedAt:    now,
		ExpiresAt:    now.Add(v.lease),
		Progress:     store.DeliveryProgress{Delivered: page.Last},
	}
	// Due at once: the first run delivers whatever was appended since the
	// read above and then waits for new items or the lease's end.
	stored, _, err := s.dlv.PutDelivery(ctx, d, now)
	if err != nil {
		return err
	}
	sub := store.Subscription{
		Login:        v.login,
		Topic:        req.Topic,
		Callback:     req.Callback,
		Format:       req.Format,
		LeaseSeconds: d.LeaseSeconds,
		CreatedAt:    stored.CreatedAt,
		ExpiresAt:    d.ExpiresAt,
	}
	if _, err := s.store.PutSubscription(ctx, sub); err != nil {
		return err
	}
	s.kick()
	return s.tracker.Track(ctx, req.Topic)
}

// Reasons a callback subscription is removed.
const (
	reasonUnsubscribed = "unsubscribed"
	reasonGone         = "gone"
	reasonExpired      = "expired"
	reasonOrphan       = "orphan"
)

// remove deletes a callback subscription: its delivery record first (that
// stops deliveries), then the subscription; the topic's last subscription
// stops its tracking.
func (s *Service) remove(ctx context.Context, k store.DeliveryKey, reason string) error {
	if _, err := s.dlv.DeleteDelivery(ctx, k); err != nil {
		return err
	}
	remaining, err := s.store.DeleteSubscription(ctx, k.Login, k.Topic, k.Callback)
	if errors.Is(err, store.ErrNotFound) {
		// Removed meanwhile (a concurrent unsubscribe, or a sweep on
		// another node).
		return nil
	}
	if err != nil {
		return err
	}
	s.m.removed.WithLabelValues(reason).Inc()
	s.log.LogAttrs(ctx, slog.LevelInfo, "callback subscription removed",
		slog.String("reason", reason), slog.String("topic", k.Topic), slog.String("callback", k.Callback), slog.String("login", k.Login))
	if remaining == 0 {
		return s.tracker.Untrack(ctx, k.Topic)
	}
	return nil
}

// reasonUserRemoved: the subscriber's user was removed.
const reasonUserRemoved = "user_removed"

// RemoveUser removes every subscription of login (when the user is
// removed): a callback subscription loses its delivery record first, which
// stops its deliveries; a topic left without subscriptions is untracked. It
// returns how many subscriptions were removed.
func (s *Service) RemoveUser(ctx context.Context, login string) (int, error) {
	if login == "" {
		return 0, errors.New("hub: RemoveUser needs a login")
	}
	removed := 0
	for {
		subs, _, err := s.store.ListSubscriptions(ctx, login, 0, 500)
		if err != nil || len(subs) == 0 {
			return removed, err
		}
		before := removed
		for _, sub := range subs {
			if sub.Callback != "" && s.dlv != nil {
				if err := s.remove(ctx, store.DeliveryKey{Login: login, Topic: sub.Topic, Callback: sub.Callback}, reasonUserRemoved); err != nil {
					return removed, err
				}
				removed++
				continue
			}
			remaining, err := s.store.DeleteSubscription(ctx, login, sub.Topic, sub.Callback)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return removed, err
			}
			removed++
			if remaining == 0 {
				if err := s.tracker.Untrack(ctx, sub.Topic); err != nil {
					return removed, err
				}
			}
		}
		if removed == before {
			// Listed but already gone: nothing more to do.
			return removed, nil
		}
	}
}
