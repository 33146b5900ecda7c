package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/feedgate/feedgate/store"
)

// Hub request modes (WebSub §5.1).
const (
	modeSubscribe   = "subscribe"
	modeUnsubscribe = "unsubscribe"
	modeDenied      = "denied"
)

// secretBytes is the size of the random hub.secret (hex-free base64: 43
// characters, well under the 200 bytes WebSub allows).
const secretBytes = 32

// reconcileUpstreams keeps the topic's hub subscriptions in step with the
// hubs its feed advertises: it subscribes at new hubs (and retries failed or
// stale requests after a while) and retires subscriptions at hubs no longer
// advertised or made for another self URL. It reports whether an active
// subscription delivers the topic's updates, and whether it did any
// maintenance.
func (s *Service) reconcileUpstreams(ctx context.Context, ist *store.IngestState) (hubbed, maintained bool) {
	ups, err := s.is.TopicUpstreams(ctx, ist.Topic)
	if err != nil {
		s.log.LogAttrs(ctx, slogWarn, "listing hub subscriptions", attrTopic(ist.Topic), attrErr(err))
		return false, false
	}
	if len(ups) == 0 && (len(ist.Hubs) == 0 || s.opts.PublicURL == "") {
		// Without a public URL no hub could reach the callback: poll.
		return false, false
	}
	self := ist.Self
	if self == "" {
		self = ist.Topic
	}
	now := time.Now()
	current := make(map[string]store.Upstream)
	for _, u := range ups {
		if u.State == store.UpstreamUnsubscribing {
			continue
		}
		if !slices.Contains(ist.Hubs, u.Hub) || u.HubTopic != self {
			maintained = true
			if err := s.retire(ctx, u); err != nil {
				s.log.LogAttrs(ctx, slogWarn, "retiring a hub subscription", attrTopic(ist.Topic), attrErr(err))
			}
			continue
		}
		current[u.Hub] = u
	}
	for _, hub := range ist.Hubs {
		if s.opts.PublicURL == "" {
			break
		}
		u, ok := current[hub]
		if ok {
			age := now.Sub(u.RequestedAt)
			switch u.State {
			case store.UpstreamActive:
				if u.ExpiresAt.IsZero() || now.Before(u.ExpiresAt) {
					hubbed = true
					continue
				}
				// Expired without renewal (the node was down): subscribe again.
			case store.UpstreamSubscribing:
				if age < s.opts.PendingTimeout {
					continue
				}
			case store.UpstreamFailed, store.UpstreamDenied:
				if age < s.opts.Resubscribe {
					continue
				}
			}
		} else {
			u = store.Upstream{
				ID:       randomToken(24),
				Topic:    ist.Topic,
				HubTopic: self,
				Hub:      hub,
				Secret:   randomToken(secretBytes),
				State:    store.UpstreamSubscribing,
			}
		}
		maintained = true
		if err := s.subscribe(ctx, u); err != nil {
			s.log.LogAttrs(ctx, slogInfo, "subscribing at a hub", attrTopic(ist.Topic), slog.String("hub", hub), attrErr(err))
		}
	}
	return hubbed, maintained
}

// subscribe sends a subscription request for u (new, retried or renewed).
// The record is stored first: a hub may verify before it answers.
func (s *Service) subscribe(ctx context.Context, u store.Upstream) error {
	now := time.Now()
	var err error
	if u.RequestedAt.IsZero() {
		u.State, u.RequestedAt = store.UpstreamSubscribing, now
		err = s.is.PutUpstream(ctx, u)
	} else {
		err = s.is.UpdateUpstream(ctx, u.ID, func(x *store.Upstream) error {
			if x.State != store.UpstreamActive {
				x.State = store.UpstreamSubscribing
			}
			x.RequestedAt = now
			u = *x
			return nil
		})
	}
	if err != nil {
		return errorf(err, "storing the subscription request")
	}
	s.forgetCached(u.ID)
	endpoint, err := s.hubRequest(ctx, u, modeSubscribe)
	uerr := s.is.UpdateUpstream(ctx, u.ID, func(x *store.Upstream) error {
		if endpoint != "" {
			x.Endpoint = endpoint
		}
		if err != nil {
			x.Reason = err.Error()
			if x.State == store.UpstreamSubscribing {
				x.State = store.UpstreamFailed
			}
		} else {
			x.Reason = ""
		}
		return nil
	})
	if uerr != nil && !errors.Is(uerr, store.ErrNotFound) {
		s.log.LogAttrs(ctx, slogWarn, "recording a hub's answer", attrTopic(u.Topic), attrErr(uerr))
	}
	if err == nil {
		// Renew, or retry when the hub never verifies.
		if _, serr := s.jobs.Schedule(ctx, upstreamJob(u.ID), time.Now().Add(s.opts.PendingTimeout), store.Earlier); serr != nil {
			s.log.LogAttrs(ctx, slogWarn, "scheduling a hub subscription", attrTopic(u.Topic), attrErr(serr))
		}
	}
	return err
}

// hubRequest posts a (un)subscription request to the hub. It returns the
// hub's new endpoint when it moved permanently (308).
func (s *Service) hubRequest(ctx context.Context, u store.Upstream, mode string) (endpoint string, err error) {
	form := url.Values{
		"hub.mode":     {mode},
		"hub.topic":    {u.HubTopic},
		"hub.callback": {s.CallbackURL(u.ID)},
	}
	if mode == modeSubscribe {
		form.Set("hub.lease_seconds", strconv.Itoa(s.opts.LeaseSeconds))
		if u.Secret != "" {
			form.Set("hub.secret", u.Secret)
		}
	}
	target := u.Endpoint
	if target == "" {
		target = u.Hub
	}
	resp, err := s.fetcher.PostForm(ctx, target, form)
	if err != nil {
		s.m.hubRequests.WithLabelValues(mode, "error").Inc()
		return "", fmt.Errorf("%s request to the hub %s failed: %w", mode, target, err)
	}
	endpoint = resp.PermanentURL
	if resp.StatusCode/100 != 2 {
		s.m.hubRequests.WithLabelValues(mode, "refused").Inc()
		return endpoint, fmt.Errorf("the hub %s answered the %s request with %s%s", target, mode, resp.Status, answerSnippet(resp.Body))
	}
	s.m.hubRequests.WithLabelValues(mode, "accepted").Inc()
	return endpoint, nil
}

// renewAt is when an active subscription is renewed: a fifth of its lease
// (at most a day) before it ends.
func (s *Service) renewAt(u store.Upstream) time.Time {
	lease := time.Duration(u.LeaseSeconds) * time.Second
	if lease <= 0 {
		lease = time.Duration(s.opts.LeaseSeconds) * time.Second
	}
	end := u.ExpiresAt
	if end.IsZero() {
		end = u.VerifiedAt.Add(lease)
	}
	return end.Add(-min(lease/5, 24*time.Hour))
}

// maintainUpstream runs the job of an upstream subscription: renewal before
// its lease ends, unsubscription when its topic is no longer tracked. It
// returns when to run again (zero: never).
func (s *Service) maintainUpstream(ctx context.Context, id string) time.Time {
	u, err := s.is.Upstream(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}
	}
	now := time.Now()
	if err != nil {
		s.log.LogAttrs(ctx, slogWarn, "reading a hub subscription", slog.String("id", id), attrErr(err))
		return now.Add(s.opts.MinPeriod)
	}
	tracked := true
	if u.State != store.UpstreamUnsubscribing {
		_, tracked, err = s.jobs.Due(ctx, fetchJob(u.Topic))
		if err != nil {
			return now.Add(s.opts.MinPeriod)
		}
	}
	if !tracked {
		if err := s.retire(ctx, u); err != nil {
			s.log.LogAttrs(ctx, slogWarn, "retiring a hub subscription", attrTopic(u.Topic), attrErr(err))
			return now.Add(s.opts.MinPeriod)
		}
		return now
	}
	switch u.State {
	case store.UpstreamUnsubscribing:
		if !u.RequestedAt.IsZero() {
			if now.Sub(u.RequestedAt) < s.opts.PendingTimeout {
				return u.RequestedAt.Add(s.opts.PendingTimeout)
			}
			// The hub never confirmed; forget the subscription (its
			// deliveries will be answered 410 Gone).
			if err := s.is.DeleteUpstream(ctx, id); err != nil {
				return now.Add(s.opts.MinPeriod)
			}
			s.forgetCached(id)
			return time.Time{}
		}
		err := s.is.UpdateUpstream(ctx, id, func(x *store.Upstream) error {
			x.RequestedAt = now
			return nil
		})
		if err != nil {
			return now.Add(s.opts.MinPeriod)
		}
		_, err = s.hubRequest(ctx, u, modeUnsubscribe)
		if err != nil {
			s.log.LogAttrs(ctx, slogInfo, "unsubscribing at a hub", attrTopic(u.Topic), slog.String("hub", u.Hub), attrErr(err))
			// The hub refused or is unreachable: nothing more to wait for.
			if derr := s.is.DeleteUpstream(ctx, id); derr == nil {
				s.forgetCached(id)
				return time.Time{}
			}
		}
		return now.Add(s.opts.PendingTimeout)
	case store.UpstreamActive:
		if at := s.renewAt(u); now.Before(at) && !u.VerifiedAt.IsZero() {
			return at
		}
		if err := s.subscribe(ctx, u); err != nil {
			s.log.LogAttrs(ctx, slogInfo, "renewing a hub subscription", attrTopic(u.Topic), slog.String("hub", u.Hub), attrErr(err))
			return now.Add(s.backoff(1))
		}
		s.touchMaintenance(ctx, u.Topic, now)
		return now.Add(s.opts.PendingTimeout)
	default:
		// Pending, failed and denied requests are retried by the topic's
		// fetches (reconcileUpstreams).
		return time.Time{}
	}
}

// touchMaintenance records subscription upkeep in the topic's status.
func (s *Service) touchMaintenance(ctx context.Context, topic string, now time.Time) {
	_ = s.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error {
		ts.Topic = topic
		ts.Status.LastMaintenanceAt = now.Unix()
		return nil
	})
}
