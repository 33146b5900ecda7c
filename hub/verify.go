package hub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/store"
)

const (
	modeSubscribe   = "subscribe"
	modeUnsubscribe = "unsubscribe"
)

// verification is one verification of intent to make, and what to do once
// the subscriber confirms it.
type verification struct {
	mode  string
	login string
	req   SubscribeRequest
	lease time.Duration
}

// newChallenge returns an unguessable hub.challenge (192 random bits).
func newChallenge() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// verificationURL adds the hub's parameters to the callback, keeping the
// callback's own query string as it is.
func verificationURL(callback string, q url.Values) (string, error) {
	u, err := url.Parse(callback)
	if err != nil {
		return "", fmt.Errorf("hub.callback %q is not a valid URL: %w", callback, err)
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		u.RawQuery += "&" + q.Encode()
	} else {
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// verify asks the subscriber to confirm the request: a GET to the callback
// with hub.mode, hub.topic, hub.challenge (and hub.lease_seconds for a
// subscription) that must answer 2xx with the challenge as its body. The
// error says what went wrong, for the 422 answer.
func (s *Service) verify(ctx context.Context, v verification) (err error) {
	defer func() {
		result := "ok"
		if err != nil {
			result = "failed"
		}
		s.m.verifications.WithLabelValues(v.mode, result).Inc()
	}()
	challenge := newChallenge()
	q := url.Values{
		"hub.mode":      {v.mode},
		"hub.topic":     {v.req.Topic},
		"hub.challenge": {challenge},
	}
	if v.mode == modeSubscribe {
		q.Set("hub.lease_seconds", strconv.Itoa(int(v.lease/time.Second)))
	}
	target, err := verificationURL(v.req.Callback, q)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.VerifyTimeout)
	defer cancel()
	resp, err := s.fetcher.Get(ctx, target, fetch.Conditional{})
	if err != nil {
		var refused *fetch.RefusedError
		if errors.As(err, &refused) {
			return fmt.Errorf("hub.callback refused: %v", refused)
		}
		return fmt.Errorf("verification of intent failed: the GET to the callback failed (%v); the callback must be reachable and answer within %s", err, s.opts.VerifyTimeout)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("verification of intent failed: the callback answered %s to hub.mode=%s; it must answer 2xx with the hub.challenge as its body", resp.Status, v.mode)
	}
	if got := strings.TrimSpace(string(resp.Body)); got != challenge {
		return fmt.Errorf("verification of intent failed: the callback answered %s with a body that is not the hub.challenge (%s); it must echo hub.challenge exactly", resp.Status, describeBody(got))
	}
	return nil
}

func describeBody(b string) string {
	if b == "" {
		return "an empty body"
	}
	if len(b) > 40 || !utf8.ValidString(b) {
		return fmt.Sprintf("%d bytes", len(b))
	}
	return strconv.Quote(b)
}

// enqueue hands a hub.verify=async request to the verifiers of Run.
func (s *Service) enqueue(v verification) error {
	select {
	case s.verifyQ <- v:
		return nil
	default:
		return api.Errorf(http.StatusServiceUnavailable, "too many subscription requests are waiting for verification; retry in a minute or use hub.verify=sync")
	}
}

// verifyLoop verifies queued asynchronous requests, and sends queued
// asynchronous replays, until ctx ends.
func (s *Service) verifyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-s.verifyQ:
			s.verifyAsync(ctx, v)
		case j := <-s.replayQ:
			s.replayAsync(ctx, j)
		}
	}
}

func (s *Service) verifyAsync(ctx context.Context, v verification) {
	attrs := []slog.Attr{slog.String("mode", v.mode), slog.String("topic", v.req.Topic), slog.String("callback", v.req.Callback), slog.String("login", v.login)}
	if err := s.verify(ctx, v); err != nil {
		s.log.LogAttrs(ctx, slog.LevelInfo, "asynchronous verification failed", append(attrs, slog.String("err", err.Error()))...)
		return
	}
	var err error
	if v.mode == modeSubscribe {
		err = s.activate(ctx, v)
	} else {
		err = s.remove(ctx, store.DeliveryKey{Login: v.login, Topic: v.req.Topic, Callback: v.req.Callback}, reasonUnsubscribed)
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "verified request could not be stored", append(attrs, slog.String("err", err.Error()))...)
		return
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "asynchronous verification confirmed", attrs...)
}
