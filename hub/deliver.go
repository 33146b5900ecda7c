package hub

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/internal/ratelog"
	"github.com/feedgate/feedgate/internal/retry"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/tracing"
)

// Headers of a delivery besides WebSub's Link and X-Hub-Signature.
const (
	// HeaderTopic and HeaderCallback name the subscription a POST is for,
	// as Superfeedr sends them (a subscriber may read the topic from it).
	HeaderTopic    = "X-PubSubHubbub-Topic"
	HeaderCallback = "X-PubSubHubbub-Callback"
	// HeaderRetried is present on a POST of items that an earlier POST
	// failed to deliver (or whose answer was lost), with the number of
	// those earlier attempts; Superfeedr's name for it.
	HeaderRetried = "X-Superfeedr-Retried"
	// HeaderReplay is "true" on a POST made by hub.mode=replay.
	HeaderReplay = "Feedgate-Replay"
	// HeaderCursor carries the cursor of the newest item of the POST: a
	// subscriber that records it can drop a redelivered POST (every item's
	// own cursor is in the body too).
	HeaderCursor = "Feedgate-Cursor"
	// HeaderGap is "true" when items were trimmed from the topic before
	// they could be delivered (the callback was unreachable for longer than
	// the retention lasts); the body then starts at the oldest item held.
	HeaderGap = "Feedgate-Gap"
	// HeaderRedelivery is "true" when the callback may already have
	// received these items: the node that sent them stopped before it
	// recorded the answer.
	HeaderRedelivery = "Feedgate-Redelivery"
)

// deferDelay is how long a job waits when its callback already has
// PerCallback POSTs in flight on this node.
const deferDelay = 500 * time.Millisecond

// linkEscaper keeps URLs from breaking out of a Link header's <...>.
var linkEscaper = strings.NewReplacer("<", "%3C", ">", "%3E", "\r", "", "\n", "")

// Signature methods of X-Hub-Signature (Options.Signature).
const (
	SignSHA1   = "sha1"
	SignSHA256 = "sha256"
	SignSHA384 = "sha384"
	SignSHA512 = "sha512"
)

// SignatureMethods lists the methods Options.Signature accepts.
var SignatureMethods = []string{SignSHA1, SignSHA256, SignSHA384, SignSHA512}

func signatureHash(method string) func() hash.Hash {
	switch method {
	case SignSHA1:
		return sha1.New
	case SignSHA256:
		return sha256.New
	case SignSHA384:
		return sha512.New384
	case SignSHA512:
		return sha512.New
	}
	return nil
}

// Sign returns the X-Hub-Signature value of body for secret with the
// method (one of SignatureMethods; anything else signs with sha256).
func Sign(method, secret string, body []byte) string {
	h := signatureHash(method)
	if h == nil {
		method, h = SignSHA256, sha256.New
	}
	mac := hmac.New(h, []byte(secret))
	mac.Write(body)
	return method + "=" + hex.EncodeToString(mac.Sum(nil))
}

// postHeader returns the headers of a POST of body to a subscription:
// WebSub's Link headers and signature, Superfeedr's X-PubSubHubbub-Topic
// and X-PubSubHubbub-Callback, and the cursor of the newest item.
func (s *Service) postHeader(k store.DeliveryKey, secret string, body []byte, newest feed.Cursor) http.Header {
	h := make(http.Header, 8)
	h["Link"] = []string{
		"<" + linkEscaper.Replace(k.Topic) + `>; rel="self"`,
		"<" + linkEscaper.Replace(s.opts.PublicHubURL) + `>; rel="hub"`,
	}
	h.Set(HeaderTopic, headerValue(k.Topic))
	h.Set(HeaderCallback, headerValue(k.Callback))
	if secret != "" {
		h.Set("X-Hub-Signature", Sign(s.opts.Signature, secret, body))
	}
	h.Set(HeaderCursor, newest.String())
	return h
}

// headerValue keeps a URL from breaking the header it is sent in.
func headerValue(u string) string { return headerEscaper.Replace(u) }

var headerEscaper = strings.NewReplacer("\r", "", "\n", "")

// acquireCallback takes a slot of the callback's per-node concurrency.
func (s *Service) acquireCallback(cb string) bool {
	s.cbMu.Lock()
	defer s.cbMu.Unlock()
	if s.cbBusy[cb] >= s.opts.PerCallback {
		return false
	}
	s.cbBusy[cb]++
	return true
}

func (s *Service) releaseCallback(cb string) {
	s.cbMu.Lock()
	defer s.cbMu.Unlock()
	if s.cbBusy[cb]--; s.cbBusy[cb] <= 0 {
		delete(s.cbBusy, cb)
	}
}

// idleNext is when a subscription with nothing to deliver needs attention:
// at the end of its lease (zero: only when items arrive).
func idleNext(d store.Delivery) time.Time { return d.ExpiresAt }

// backoff is the delay before retry number attempts (1 = first retry).
func (r RetryPolicy) backoff(attempts int) time.Duration {
	return retry.Nth(retry.Exponential(r.First, r.Max, r.Multiplier, r.Jitter), attempts)
}

// outcome is how one POST went.
type outcome struct {
	ok     bool
	gone   bool
	reason string // metrics label of a failure
	err    string // what the subscription's health shows
	retry  time.Duration
}

func classify(resp *fetch.Response, err error, now time.Time) outcome {
	if err != nil {
		var refused *fetch.RefusedError
		reason := "network"
		switch {
		case errors.As(err, &refused):
			reason = "refused"
		case isTimeout(err):
			reason = "timeout"
		}
		return outcome{reason: reason, err: err.Error()}
	}
	switch c := resp.StatusCode; {
	case c >= 200 && c <= 299:
		return outcome{ok: true}
	case c == http.StatusGone:
		return outcome{gone: true, reason: "gone", err: "the callback answered " + resp.Status}
	default:
		o := outcome{reason: "http_5xx", err: "the callback answered " + resp.Status}
		if c < 500 {
			o.reason = "http_4xx"
		}
		if c == http.StatusTooManyRequests || c == http.StatusServiceUnavailable {
			if d, ok := resp.RetryAfter(now); ok {
				o.retry = d
			}
		}
		return o
	}
}

// work makes one delivery for a claimed job: the items after the
// subscription's cursor, POSTed to its callback, and the outcome recorded
// with the release of the claim. claimedAt is when the claim was asked
// for: the items read include everything appended before it.
func (s *Service) work(ctx context.Context, c store.DeliveryClaim, claimedAt time.Time) {
	d := c.Delivery
	p := d.Progress
	now := time.Now()
	attrs := func(extra ...slog.Attr) []slog.Attr {
		return append([]slog.Attr{slog.String("topic", d.Topic), slog.String("callback", d.Callback)}, extra...)
	}
	release := func(next time.Time) {
		if err := s.dlv.ReleaseDelivery(ctx, c, p, next); err != nil {
			level := slog.LevelWarn
			if errors.Is(err, store.ErrLeaseLost) {
				// Unsubscribed meanwhile, or the lease ran out: another
				// claim owns the job now.
				level = slog.LevelInfo
			}
			s.log.LogAttrs(ctx, level, "delivery outcome not recorded", attrs(slog.String("err", err.Error()))...)
			return
		}
		if !next.IsZero() && !next.After(time.Now()) {
			s.kick()
		}
	}
	if !d.ExpiresAt.IsZero() && !now.Before(d.ExpiresAt) {
		if err := s.remove(ctx, d.DeliveryKey, reasonExpired); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "expired subscription not removed", attrs(slog.String("err", err.Error()))...)
			release(now.Add(s.opts.Retry.First))
		}
		return
	}
	if !s.acquireCallback(d.Callback) {
		release(now.Add(deferDelay + rand.N(deferDelay)))
		return
	}
	defer s.releaseCallback(d.Callback)

	b, err := s.pages.get(ctx, s.store, d.Topic, p.Delivered, s.opts.MaxBatch, claimedAt)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "delivery: reading the topic failed", attrs(slog.String("err", err.Error()))...)
		release(now.Add(s.opts.Retry.First))
		return
	}
	items := b.page.Items
	if len(items) == 0 {
		release(idleNext(d))
		return
	}
	newest, oldest := items[0].Cursor, items[len(items)-1].Cursor

	f := formatIndex(d.Format)
	body := b.body(f, s.opts.PublicHubURL)
	h := s.postHeader(d.DeliveryKey, d.Secret, body, newest)
	if b.page.Gap {
		h.Set(HeaderGap, "true")
	}
	if retried := p.Attempts + btoi(c.Retaken); retried > 0 {
		h.Set(HeaderRetried, strconv.Itoa(retried))
	}
	if c.Retaken {
		h.Set(HeaderRedelivery, "true")
		p.Redeliveries++
		s.m.redelivered.Inc()
	}
	if !p.FailingSince.IsZero() {
		s.m.retryAge.Observe(now.Sub(p.FailingSince).Seconds())
	}

	s.m.attempts.Inc()
	s.m.inFlight.Inc()
	tctx, span := tracing.StartDelivery(ctx, d.Topic, oldest, newest, d.Callback)
	tracing.Inject(tctx, h)
	pctx, cancel := context.WithTimeout(tctx, s.opts.DeliveryTimeout)
	start := time.Now()
	resp, err := s.fetcher.Post(pctx, d.Callback, contentTypes[f], body, h)
	cancel()
	if resp != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	}
	tracing.Fail(span, err)
	span.End()
	s.m.inFlight.Dec()
	s.m.duration.Observe(time.Since(start).Seconds())
	now = time.Now()
	p.LastAttempt = now
	o := classify(resp, err, now)

	if o.gone {
		s.m.failed.WithLabelValues(o.reason).Inc()
		if err := s.remove(ctx, d.DeliveryKey, reasonGone); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "subscription answering 410 not removed", attrs(slog.String("err", err.Error()))...)
			release(now.Add(s.opts.Retry.First))
		}
		return
	}
	advance := func() time.Time {
		if b.page.Gap {
			lost := int64(oldest) - int64(p.Delivered) - 1
			if lost > 0 {
				p.Gaps++
				p.Trimmed += lost
				p.LastGapAt = now
				s.m.dropped.WithLabelValues("trimmed").Add(float64(lost))
			}
		}
		p.Delivered = newest
		p.Attempts, p.FailingSince = 0, time.Time{}
		if b.page.Last > newest {
			return now // more items wait
		}
		return idleNext(d)
	}
	failKey := d.Topic + " " + d.Callback
	if o.ok {
		if p.Attempts > 0 {
			s.log.LogAttrs(ctx, slog.LevelInfo, "delivery recovered", attrs(slog.Int("failed_attempts", p.Attempts))...)
			s.failLog.Forget(failKey)
		}
		p.LastSuccess = now
		p.Succeeded++
		p.Items += int64(len(items))
		s.m.succeeded.Inc()
		s.m.items.Add(float64(len(items)))
		release(advance())
		return
	}

	s.m.failed.WithLabelValues(o.reason).Inc()
	p.Failed++
	p.Attempts++
	if p.FailingSince.IsZero() {
		p.FailingSince = now
	}
	p.LastError, p.LastErrorAt = o.err, now
	r := s.opts.Retry
	if p.Attempts >= r.MaxAttempts || now.Sub(p.FailingSince) >= r.MaxAge {
		p.LastError = fmt.Sprintf("%s; gave up on %d items after %d attempts", o.err, len(items), p.Attempts)
		p.Dropped += int64(len(items))
		s.m.dropped.WithLabelValues("retries_exhausted").Add(float64(len(items)))
		s.log.LogAttrs(ctx, slog.LevelWarn, "delivery given up", attrs(slog.String("err", p.LastError), slog.String("reason", o.reason))...)
		s.failLog.Forget(failKey)
		release(advance())
		return
	}
	delay := max(r.backoff(p.Attempts), min(o.retry, r.Max))
	next := now.Add(delay)
	if !d.ExpiresAt.IsZero() && next.After(d.ExpiresAt) {
		next = d.ExpiresAt
	}
	// The first failure is a warning; while it goes on, one line a minute
	// per subscription says how it goes.
	first := p.Attempts == 1
	if ok, held := s.failLog.Allow(failKey, now, first); ok {
		level := slog.LevelInfo
		if first {
			level = slog.LevelWarn
		}
		s.log.LogAttrs(ctx, level, "delivery failed, will retry", attrs(
			slog.String("err", o.err), slog.String("reason", o.reason), slog.Int("attempt", p.Attempts),
			slog.Time("next_attempt", next), slog.String("retry_in", delay.Round(time.Millisecond).String()), ratelog.Suppressed(held))...)
	}
	release(next)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isTimeout reports whether err is a time limit running out: the POST's
// deadline, or a network time-out (connecting, waiting for the answer).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
