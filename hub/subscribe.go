// Package hub owns the downstream side of WebSub: hub.mode=subscribe,
// unsubscribe and list, for retrieve-only subscriptions and for subscribers
// with a callback.
package hub

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
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

// Service handles subscriptions.
type Service struct {
	store   store.Store
	tracker Tracker
}

// New returns a Service.
func New(st store.Store, tracker Tracker) *Service {
	return &Service{store: st, tracker: tracker}
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

// ErrCallbacksUnsupported answers subscriptions with a callback until
// webhook delivery exists: the gateway never pretends to deliver.
var ErrCallbacksUnsupported = api.Invalid("hub.callback is not supported yet: subscribe without a callback and read with hub.mode=retrieve, wait=stream or wait=poll")

// Subscribe records a subscription of the principal and starts tracking its
// topic.
func (s *Service) Subscribe(ctx context.Context, p *auth.Principal, req SubscribeRequest) error {
	if err := auth.Require(p, store.RightSubscribe); err != nil {
		return err
	}
	if err := auth.RequireTopic(p, req.Topic); err != nil {
		return err
	}
	if req.Callback != "" {
		return ErrCallbacksUnsupported
	}
	if err := s.tracker.CheckURL(ctx, req.Topic); err != nil {
		if _, ok := api.AsError(err); ok {
			return err
		}
		return api.Invalid("hub.topic refused: %v", err)
	}
	sub := store.Subscription{
		Login:     p.Login,
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
// stops its tracking.
func (s *Service) Unsubscribe(ctx context.Context, p *auth.Principal, req SubscribeRequest) error {
	if err := auth.Require(p, store.RightUnsubscribe); err != nil {
		return err
	}
	if err := auth.RequireTopic(p, req.Topic); err != nil {
		return err
	}
	if req.Callback != "" {
		return ErrCallbacksUnsupported
	}
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
