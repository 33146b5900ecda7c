package hub

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// Bounds of hub.mode=replay's count (Superfeedr's).
const (
	DefaultReplayCount = 1
	MaxReplayCount     = 50
)

// ReplayRequest is a parsed hub.mode=replay: send the newest Count items of
// Topic again to the Callback of an existing subscription.
type ReplayRequest struct {
	Topic    string
	Callback string
	Count    int
	// Async answers first and sends after.
	Async bool
}

// ParseReplay reads and validates replay parameters.
func ParseReplay(p api.Params) (ReplayRequest, error) {
	req := ReplayRequest{Topic: p.Get("hub.topic"), Callback: p.Get("hub.callback"), Count: DefaultReplayCount}
	if err := api.CheckURL("hub.topic", req.Topic); err != nil {
		return req, err
	}
	if req.Callback == "" {
		return req, api.Invalid("hub.callback is required: the callback of the subscription to replay to (hub.mode=list shows yours)")
	}
	if err := api.CheckURL("hub.callback", req.Callback); err != nil {
		return req, err
	}
	if p.Has("count") {
		n, err := strconv.Atoi(p.Get("count"))
		if err != nil || n < 1 || n > MaxReplayCount {
			return req, api.Invalid("count must be an integer from 1 to %d", MaxReplayCount)
		}
		req.Count = n
	}
	switch strings.ToLower(p.Get("async")) {
	case "", "false", "0":
	case "true", "1":
		req.Async = true
	default:
		return req, api.Invalid("async must be true or false")
	}
	return req, nil
}

// replayJob is a hub.mode=replay&async=true waiting for Run.
type replayJob struct {
	d     store.Delivery
	count int
}

// Replay POSTs the newest items of the topic to the callback of the
// principal's subscription, signed and formatted as its deliveries are, with
// Feedgate-Replay: true. It neither advances nor retries the subscription's
// deliveries: a replay is a debugging aid. Without req.Async it returns once
// the callback answered (an *api.Error 422 says why a POST failed); with it,
// the POST is made after Replay returns.
func (s *Service) Replay(ctx context.Context, p *auth.Principal, req ReplayRequest) error {
	if err := auth.Require(p, store.RightRetrieve); err != nil {
		return err
	}
	if err := auth.RequireTopic(p, req.Topic); err != nil {
		return err
	}
	if !s.CallbacksEnabled() {
		return ErrCallbacksUnsupported
	}
	k := store.DeliveryKey{Login: p.Login, Topic: req.Topic, Callback: req.Callback}
	d, err := s.dlv.Delivery(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, "you have no subscription to %s with the callback %s; replay sends to the callback of an existing subscription (hub.mode=list shows yours)", req.Topic, req.Callback)
	}
	if err != nil {
		return err
	}
	if req.Async {
		select {
		case s.replayQ <- replayJob{d: d, count: req.Count}:
			return nil
		default:
			return api.Errorf(http.StatusServiceUnavailable, "too many replays are waiting to be sent; retry in a minute or drop async=true")
		}
	}
	return s.replay(ctx, d, req.Count)
}

// replay makes the POST of a replay.
func (s *Service) replay(ctx context.Context, d store.Delivery, count int) error {
	page, err := s.store.Read(ctx, d.Topic, store.Query{From: store.Newest, Count: count})
	if err != nil {
		return err
	}
	if len(page.Items) == 0 {
		return api.Invalid("%s has no items yet: nothing to replay", d.Topic)
	}
	b := &batch{page: page, n: retrieve.Notification(d.Topic, page)}
	f := formatIndex(d.Format)
	body := b.body(f, s.opts.PublicHubURL)
	h := s.postHeader(d.DeliveryKey, d.Secret, body, page.Items[0].Cursor)
	h.Set(HeaderReplay, "true")
	pctx, cancel := context.WithTimeout(ctx, s.opts.DeliveryTimeout)
	defer cancel()
	resp, err := s.fetcher.Post(pctx, d.Callback, contentTypes[f], body, h)
	o := classify(resp, err, time.Now())
	s.m.replays.WithLabelValues(replayResult(o)).Inc()
	switch {
	case o.ok:
		return nil
	case o.gone:
		if err := s.remove(ctx, d.DeliveryKey, reasonGone); err != nil {
			return err
		}
		return api.Invalid("the replay POST to %s was answered 410 Gone: the subscription was removed, as for any delivery", d.Callback)
	}
	return api.Invalid("the replay POST to %s failed (%s); the subscription's own deliveries are not affected", d.Callback, o.err)
}

func replayResult(o outcome) string {
	if o.ok {
		return "ok"
	}
	return o.reason
}

// replayAsync sends a queued replay, logging a failure.
func (s *Service) replayAsync(ctx context.Context, j replayJob) {
	if err := s.replay(ctx, j.d, j.count); err != nil && ctx.Err() == nil {
		s.log.LogAttrs(ctx, slog.LevelInfo, "asynchronous replay failed", slog.String("topic", j.d.Topic),
			slog.String("callback", j.d.Callback), slog.String("err", err.Error()))
	}
}
