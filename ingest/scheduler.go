package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/internal/ratelog"
	"github.com/feedgate/feedgate/internal/retry"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/tracing"
)

// Track makes the topic tracked: it is fetched right away (by whichever
// ingest node claims it first) and then kept fresh. Tracking a tracked topic
// changes nothing.
func (s *Service) Track(ctx context.Context, topic string) error {
	existed, err := s.jobs.Schedule(ctx, fetchJob(topic), time.Now(), store.IfAbsent)
	if err != nil {
		return errorf(err, "scheduling the first fetch of %s", topic)
	}
	if !existed {
		s.notify()
	}
	return nil
}

// Untrack stops keeping the topic fresh (call it when its last
// subscription goes): polling stops and its upstream hub subscriptions are
// unsubscribed (by an ingest node, shortly). The stored items stay.
func (s *Service) Untrack(ctx context.Context, topic string) error {
	if err := s.jobs.Remove(ctx, fetchJob(topic)); err != nil {
		return errorf(err, "unscheduling %s", topic)
	}
	if err := s.is.DeleteIngestState(ctx, topic); err != nil {
		return errorf(err, "forgetting the ingest state of %s", topic)
	}
	ups, err := s.is.TopicUpstreams(ctx, topic)
	if err != nil {
		return errorf(err, "listing the hub subscriptions of %s", topic)
	}
	for _, u := range ups {
		if err := s.retire(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

// retire ends an upstream subscription: one the hub may hold is
// unsubscribed by its job; one it does not hold is forgotten.
func (s *Service) retire(ctx context.Context, u store.Upstream) error {
	s.forgetCached(u.ID)
	switch u.State {
	case store.UpstreamActive, store.UpstreamSubscribing:
		err := s.is.UpdateUpstream(ctx, u.ID, func(x *store.Upstream) error {
			x.State = store.UpstreamUnsubscribing
			x.RequestedAt = time.Time{}
			return nil
		})
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return errorf(err, "marking the hub subscription %s of %s for unsubscription", u.Hub, u.Topic)
		}
		if _, err := s.jobs.Schedule(ctx, upstreamJob(u.ID), time.Now(), store.Earlier); err != nil {
			return errorf(err, "scheduling the unsubscription at %s", u.Hub)
		}
		s.notify()
	case store.UpstreamUnsubscribing:
	default:
		if err := s.is.DeleteUpstream(ctx, u.ID); err != nil {
			return errorf(err, "forgetting the hub subscription %s of %s", u.Hub, u.Topic)
		}
		if err := s.jobs.Remove(ctx, upstreamJob(u.ID)); err != nil {
			return errorf(err, "unscheduling the hub subscription %s", u.ID)
		}
	}
	return nil
}

// Ping asks for each tracked topic among topics to be fetched now (a
// publisher's ping); untracked topics are ignored.
func (s *Service) Ping(ctx context.Context, topics []string) error {
	now := time.Now()
	any := false
	for _, t := range topics {
		ok, err := s.jobs.Schedule(ctx, fetchJob(t), now, store.IfPresent)
		if err != nil {
			return errorf(err, "scheduling a fetch of %s", t)
		}
		any = any || ok
	}
	if any {
		s.notify()
	}
	return nil
}

// Run fetches due topics and maintains upstream subscriptions until ctx
// ends; it returns when every job it started has finished. It is called
// once per node, on nodes with the ingest role.
func (s *Service) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("ingest: Run is already running")
	}
	defer s.running.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.restore(ctx) })

	slots := make(chan struct{}, s.opts.Concurrency)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastErr time.Time
	for {
		free := cap(slots) - len(slots)
		claimedAll := false
		if free > 0 {
			claims, err := s.jobs.Claim(ctx, time.Now(), free, s.jobLease)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				if time.Since(lastErr) > time.Minute {
					lastErr = time.Now()
					s.log.LogAttrs(ctx, slog.LevelError, "claiming due jobs", attrErr(err))
				}
			default:
				for _, c := range claims {
					slots <- struct{}{}
					wg.Go(func() {
						defer func() {
							<-slots
							s.notify()
						}()
						s.runJob(ctx, c)
					})
				}
				claimedAll = len(claims) == free
			}
		}
		if claimedAll {
			// There may be more due jobs; look again at once.
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		timer.Reset(s.opts.PollInterval)
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// restore makes sure every tracked topic, and every active upstream
// subscription, has its job: after a restart, or when jobs were lost.
func (s *Service) restore(ctx context.Context) {
	topics, err := backoff.Retry(ctx, func() ([]string, error) { return s.st.TrackedTopics(ctx) },
		backoff.WithBackOff(retry.Exponential(time.Second, time.Minute, 2, 0.2)),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, _ time.Duration) {
			s.log.LogAttrs(ctx, slogWarn, "listing tracked topics", attrErr(err))
		}))
	if err != nil {
		return // ctx ended
	}
	now := time.Now()
	added := 0
	for _, t := range topics {
		if ctx.Err() != nil {
			return
		}
		existed, err := s.jobs.Schedule(ctx, fetchJob(t), now, store.IfAbsent)
		if err != nil {
			s.log.LogAttrs(ctx, slogWarn, "scheduling a tracked topic", attrTopic(t), attrErr(err))
			continue
		}
		if !existed {
			added++
		}
		ups, err := s.is.TopicUpstreams(ctx, t)
		if err != nil {
			continue
		}
		for _, u := range ups {
			if u.State == store.UpstreamActive {
				_, _ = s.jobs.Schedule(ctx, upstreamJob(u.ID), s.renewAt(u), store.IfAbsent)
			}
		}
	}
	if added > 0 {
		s.log.LogAttrs(ctx, slogInfo, "scheduled tracked topics", slog.Int("topics", added))
		s.notify()
	}
}

// runJob runs one claimed job and releases it with its next time.
func (s *Service) runJob(ctx context.Context, c store.Claim) {
	var next time.Time
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.LogAttrs(ctx, slog.LevelError, "job failed", slog.String("job", c.Job),
					slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
				next = time.Now().Add(s.opts.MaxBackoff)
			}
		}()
		switch {
		case strings.HasPrefix(c.Job, fetchJobPrefix):
			next = s.fetchTopic(ctx, strings.TrimPrefix(c.Job, fetchJobPrefix))
		case strings.HasPrefix(c.Job, upstreamJobPrefix):
			next = s.maintainUpstream(ctx, strings.TrimPrefix(c.Job, upstreamJobPrefix))
		default:
			s.log.LogAttrs(ctx, slogWarn, "dropping an unknown job", slog.String("job", c.Job))
		}
	}()
	if ctx.Err() != nil {
		// Shutting down: hand the job back so another node takes it now.
		next = time.Now()
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.jobs.Release(rctx, c, next, false); err != nil && !errors.Is(err, store.ErrLeaseLost) {
		s.log.LogAttrs(ctx, slogWarn, "releasing a job", slog.String("job", c.Job), attrErr(err))
	}
}

// fetchOutcome is what one fetch of a topic came to.
type fetchOutcome struct {
	code       int
	message    string
	ok         bool // fetched (and parsed), or not modified
	changed    bool // new items were stored
	doc        *feed.Document
	retryAfter time.Duration
}

// fetchTopic fetches a due topic, stores what is new, keeps its hub
// subscriptions in step with what it advertises, and returns when to fetch
// it next.
//
// The topic's status is written before the parsed entries are appended, so
// that the store announces them with the status of this fetch: it says
// when the next fetch will be as if the entries were new (the period is
// halved when a fetch finds something). Only when the append stores nothing
// (no notification then), or the hub subscriptions change what polling is
// for, is the status written again.
func (s *Service) fetchTopic(ctx context.Context, topic string) time.Time {
	ist, err := s.is.IngestState(ctx, topic)
	if err != nil {
		s.log.LogAttrs(ctx, slogWarn, "reading ingest state", attrTopic(topic), attrErr(err))
		return time.Now().Add(s.opts.MinPeriod)
	}
	ist.Topic = topic
	before := ist
	fctx, span := tracing.Start(ctx, "ingest.fetch", tracing.Topic(topic))
	defer span.End()
	out := s.fetchInto(fctx, &ist, 0)
	span.SetAttributes(attribute.Int("http.response.status_code", out.code))
	if !out.ok {
		span.SetStatus(codes.Error, out.message)
	}
	if ctx.Err() != nil {
		return time.Now()
	}
	now := time.Now()
	ist.LastFetch = now

	if _, tracked, err := s.jobs.Due(ctx, fetchJob(topic)); err == nil && !tracked {
		// Untracked while it was being fetched: store nothing, leave no
		// state behind.
		return time.Time{}
	}
	spread := s.spread()
	hubbed := false
	written := time.Duration(-1) // the delay the status says, once written
	if out.doc != nil {
		hubbed = s.hubbed(ctx, topic, now)
		out.changed = len(out.doc.Items) > 0 // until the append says otherwise
		_, written = s.planNext(ist, out, hubbed, spread)
		s.writeStatus(ctx, topic, out, now, written, false)
		stored, err := s.appendDocument(fctx, topic, out.doc, sourcePoll)
		out.changed = len(stored) > 0
		if err != nil {
			s.m.fetches.WithLabelValues("error").Inc()
			s.m.fetchErrors.WithLabelValues("store").Inc()
			out.ok, out.doc = false, nil
			out.message = fmt.Sprintf("%d %s but storing failed: %v", out.code, http.StatusText(out.code), err)
			// Fetch the whole document again next time.
			ist.ETag, ist.LastModified = before.ETag, before.LastModified
		} else {
			s.m.fetches.WithLabelValues("ok").Inc()
		}
	}
	if out.changed {
		ist.LastChange = now
	}
	maintained := false
	if out.ok {
		hubbed, maintained = s.reconcileUpstreams(ctx, &ist)
	}
	failedBefore := ist.Failures
	final, delay := s.planNext(ist, out, hubbed, spread)
	s.logFetch(ctx, topic, out, final.Failures, failedBefore, now, now.Add(delay))
	if err := s.is.UpdateIngestState(ctx, topic, func(st *store.IngestState) error {
		*st = final
		return nil
	}); err != nil {
		s.log.LogAttrs(ctx, slogWarn, "saving ingest state", attrTopic(topic), attrErr(err))
	}
	if delay != written || !out.ok || maintained {
		s.writeStatus(ctx, topic, out, now, delay, maintained)
	}
	return now.Add(delay)
}

// hubbed reports whether an upstream hub pushes the topic's updates: an
// active, unexpired subscription at a hub (polling is then a safety net).
func (s *Service) hubbed(ctx context.Context, topic string, now time.Time) bool {
	ups, err := s.is.TopicUpstreams(ctx, topic)
	if err != nil {
		return false
	}
	for _, u := range ups {
		if u.State == store.UpstreamActive && (u.ExpiresAt.IsZero() || now.Before(u.ExpiresAt)) {
			return true
		}
	}
	return false
}

// planNext returns the ingest state after a fetch (period, failures) and
// the time until the next fetch: the adapted period (MaxPeriod for a topic
// a hub pushes), or the back-off after a failure, at least what the server
// asked with Retry-After, spread by the jitter factor and rounded to whole
// seconds so that the status's period and nextFetch say the same.
func (s *Service) planNext(ist store.IngestState, out fetchOutcome, hubbed bool, spread float64) (store.IngestState, time.Duration) {
	now := ist.LastFetch
	var delay time.Duration
	if out.ok {
		ist.Failures = 0
		ist.Period = s.adaptPeriod(ist.Period, out, now)
		delay = ist.Period
		if hubbed {
			delay = s.opts.MaxPeriod
		}
	} else {
		ist.Failures++
		delay = s.backoff(ist.Failures)
		if ist.Period == 0 {
			ist.Period = s.opts.InitialPeriod
		}
	}
	if out.retryAfter > 0 {
		delay = max(delay, min(out.retryAfter, maxRetryAfter))
	}
	delay = time.Duration(float64(delay) * spread).Round(time.Second)
	return ist, max(delay, time.Second)
}

// writeStatus records a fetch in the topic's status: its outcome, the feed's
// metadata when it parsed, and the next fetch, delay after now (period is
// that delay in seconds: nextFetch = lastFetch + period).
func (s *Service) writeStatus(ctx context.Context, topic string, out fetchOutcome, now time.Time, delay time.Duration, maintained bool) {
	period := int(delay / time.Second)
	if err := s.st.UpdateTopic(ctx, topic, func(ts *store.TopicState) error {
		ts.Topic = topic
		if out.doc != nil {
			applyMeta(ts, out.doc, now)
		}
		ts.Status.Feed = topic
		ts.Status.Code = out.code
		ts.Status.HTTP = out.message
		ts.Status.Period = period
		ts.Status.LastFetch = now.Unix()
		ts.Status.NextFetch = now.Unix() + int64(period)
		if maintained {
			ts.Status.LastMaintenanceAt = now.Unix()
		}
		return nil
	}); err != nil {
		s.log.LogAttrs(ctx, slogWarn, "updating the status", attrTopic(topic), attrErr(err))
	}
}

// fetchInto fetches the topic's current URL into ist (validators, hubs,
// permanent redirects) and stores what parses. depth guards the one
// follow-up fetch of a feed an HTML page names.
func (s *Service) fetchInto(ctx context.Context, ist *store.IngestState, depth int) fetchOutcome {
	target := ist.FetchURL
	if target == "" {
		target = ist.Topic
	}
	resp, err := s.fetcher.Get(ctx, target, fetch.Conditional{ETag: ist.ETag, LastModified: ist.LastModified})
	if err != nil {
		if ctx.Err() != nil {
			return fetchOutcome{}
		}
		reason := "network"
		var refused *fetch.RefusedError
		var tooLarge *fetch.BodyTooLargeError
		switch {
		case errors.As(err, &refused):
			reason = "refused"
		case errors.As(err, &tooLarge):
			reason = "too_large"
		}
		s.m.fetches.WithLabelValues("error").Inc()
		s.m.fetchErrors.WithLabelValues(reason).Inc()
		return fetchOutcome{message: "fetch failed: " + err.Error()}
	}
	s.m.fetchDuration.Observe(resp.Duration.Seconds())
	out := fetchOutcome{code: resp.StatusCode}
	if ra, ok := resp.RetryAfter(time.Now()); ok && resp.StatusCode >= 300 {
		out.retryAfter = ra
	}
	if (resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified) && resp.PermanentURL != "" {
		// Moved for good: fetch the new URL from now on.
		ist.FetchURL = resp.PermanentURL
		if ist.FetchURL == ist.Topic {
			ist.FetchURL = ""
		}
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		s.m.fetches.WithLabelValues("not_modified").Inc()
		out.ok = true
		out.message = resp.Status
		return out
	case resp.StatusCode/100 != 2:
		s.m.fetches.WithLabelValues("error").Inc()
		s.m.fetchErrors.WithLabelValues("http").Inc()
		out.message = resp.Status + answerSnippet(resp.Body)
		if out.retryAfter > 0 {
			out.message += fmt.Sprintf(" (retry after %s)", out.retryAfter.Round(time.Second))
		}
		return out
	}

	d := Discover(resp)
	switch {
	case len(d.Hubs) > 0:
		ist.Hubs, ist.HubsFrom = d.Hubs, target
		ist.Self = d.Self
		if ist.Self == "" {
			ist.Self = resp.URL
		}
	case ist.HubsFrom == target:
		// The document that advertised hubs no longer does.
		ist.Hubs, ist.HubsFrom, ist.Self = nil, "", ""
	}

	if d.HTML {
		if len(d.Feeds) > 0 && depth == 0 {
			// An HTML page naming its feed: poll the feed from now on.
			ist.FetchURL, ist.ETag, ist.LastModified = d.Feeds[0], "", ""
			return s.fetchInto(ctx, ist, depth+1)
		}
		s.m.fetches.WithLabelValues("error").Inc()
		s.m.fetchErrors.WithLabelValues("parse").Inc()
		out.message = resp.Status + ": an HTML page that names no feed"
		if len(ist.Hubs) > 0 {
			// Its hub pushes the updates; nothing to poll.
			out.ok = true
			out.message = resp.Status + ": an HTML page; updates come from its hub"
		}
		return out
	}

	doc, err := feed.ParseWithBase(resp.Body, resp.Header.Get("Content-Type"), ist.Topic)
	if err != nil {
		s.m.fetches.WithLabelValues("error").Inc()
		s.m.fetchErrors.WithLabelValues("parse").Inc()
		out.message = resp.Status + " but " + err.Error()
		// Fetch the whole document again next time.
		ist.ETag, ist.LastModified = "", ""
		return out
	}
	// fetchTopic stores the entries (and counts the fetch).
	ist.ETag = resp.Header.Get("ETag")
	ist.LastModified = resp.Header.Get("Last-Modified")
	out.ok = true
	out.doc = doc
	out.message = resp.Status + ": " + parsedSummary(len(doc.Items))
	return out
}

// answerSnippet returns the start of an error answer's body, for the
// status message.
func answerSnippet(body []byte) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(body[:min(len(body), 200)]), "")), " ")
	if s == "" || strings.HasPrefix(s, "<") {
		return ""
	}
	return ": " + s
}

// adaptPeriod returns the next polling period: estimated from the entries'
// dates on the first fetch, then halved when a fetch found new items and
// grown by half when it did not, within [MinPeriod, MaxPeriod].
func (s *Service) adaptPeriod(period time.Duration, out fetchOutcome, now time.Time) time.Duration {
	switch {
	case period == 0 && out.doc != nil:
		if est, ok := estimatePeriod(out.doc.Items, now); ok {
			period = est
		} else {
			period = s.opts.InitialPeriod
		}
	case period == 0:
		period = s.opts.InitialPeriod
	case out.changed:
		period /= 2
	default:
		period += period / 2
	}
	return clampDuration(period, s.opts.MinPeriod, s.opts.MaxPeriod)
}

// estimatePeriod guesses a polling period from the entries' dates: half the
// mean interval between the newest entries, or half the time since the
// newest one when the feed has gone quiet.
func estimatePeriod(items []feed.Item, now time.Time) (time.Duration, bool) {
	var dates []int64
	for _, it := range items {
		if d := max(it.Published, it.Updated); d > 0 && d <= now.Unix()+3600 {
			dates = append(dates, d)
		}
	}
	if len(dates) < 2 {
		return 0, false
	}
	slices.Sort(dates)
	dates = dates[max(0, len(dates)-10):]
	newest := dates[len(dates)-1]
	interval := (newest - dates[0]) / int64(len(dates)-1)
	quiet := now.Unix() - newest
	secs := max(interval, quiet) / 2
	if secs <= 0 {
		return 0, false
	}
	return time.Duration(min(secs, int64(1<<62)/int64(time.Second))) * time.Second, true
}

// backoff is the delay after the n-th failure in a row: MinPeriod doubling
// up to MaxBackoff (spread by the caller).
func (s *Service) backoff(n int) time.Duration {
	return retry.Nth(retry.Exponential(s.opts.MinPeriod, s.opts.MaxBackoff, 2, 0), n)
}

// spread returns a random factor of 1 ± the configured jitter fraction,
// which keeps topics polled at the same period from being fetched together.
func (s *Service) spread() float64 {
	if s.opts.Jitter <= 0 {
		return 1
	}
	return 1 + s.opts.Jitter*(2*rand.Float64()-1)
}

// logFetch tells of a failed fetch (a warning the first time, then one line
// a minute per topic while it goes on) and of the recovery.
func (s *Service) logFetch(ctx context.Context, topic string, out fetchOutcome, failures, failedBefore int, now, next time.Time) {
	if out.ok {
		if failedBefore > 0 {
			s.log.LogAttrs(ctx, slogInfo, "fetch recovered", attrTopic(topic), slog.Int("status", out.code), slog.Int("failed_fetches", failedBefore))
			s.failLog.Forget(topic)
		}
		return
	}
	first := failures == 1
	ok, held := s.failLog.Allow(topic, now, first)
	if !ok {
		return
	}
	level := slogInfo
	if first {
		level = slogWarn
	}
	s.log.LogAttrs(ctx, level, "fetch failed", attrTopic(topic), slog.Int("status", out.code), slog.String("err", out.message),
		slog.Int("failures", failures), slog.Time("next_attempt", next), ratelog.Suppressed(held))
}
