package ingest

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/store"
)

// Callback serves /callback/{id} (the id is the request's path value "id"): GET is a hub's verification of intent,
// POST a hub's content distribution.
func (s *Service) Callback(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.CallbackGET(w, r)
	case http.MethodPost:
		s.CallbackPOST(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		text(w, http.StatusMethodNotAllowed, "a WebSub callback takes GET (verification) and POST (content)\n")
	}
}

// CallbackGET answers a hub's verification of intent (WebSub §5.3): it
// echoes hub.challenge with 200 for a subscription or unsubscription that
// feedgate asked for, of that topic, and answers 404 otherwise. A denial
// (hub.mode=denied) is recorded and the topic goes back to polling.
func (s *Service) CallbackGET(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	q := r.URL.Query()
	mode, topic, challenge := q.Get("hub.mode"), q.Get("hub.topic"), q.Get("hub.challenge")
	u, err := s.is.Upstream(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		text(w, http.StatusNotFound, "no subscription has this callback\n")
		return
	case err != nil:
		text(w, http.StatusServiceUnavailable, "the store is unavailable; verify again later\n")
		return
	case topic != u.HubTopic:
		text(w, http.StatusNotFound, "this callback is for another topic\n")
		return
	}
	now := time.Now()
	switch mode {
	case modeSubscribe:
		lease, err := strconv.Atoi(q.Get("hub.lease_seconds"))
		if err != nil || lease <= 0 {
			lease = s.opts.LeaseSeconds
		}
		if challenge == "" {
			text(w, http.StatusNotFound, "hub.challenge is missing\n")
			return
		}
		var verified store.Upstream
		err = s.is.UpdateUpstream(ctx, id, func(x *store.Upstream) error {
			if x.State != store.UpstreamSubscribing && x.State != store.UpstreamActive {
				return errNotPending
			}
			x.State = store.UpstreamActive
			x.LeaseSeconds = lease
			x.VerifiedAt = now
			x.ExpiresAt = now.Add(time.Duration(lease) * time.Second)
			x.Reason = ""
			verified = *x
			return nil
		})
		if s.verifyFailed(w, r, err) {
			return
		}
		s.forgetCached(id)
		if _, err := s.jobs.Schedule(ctx, upstreamJob(id), s.renewAt(verified), store.Earlier); err != nil {
			s.log.LogAttrs(ctx, slogWarn, "scheduling the renewal of a hub subscription", attrTopic(u.Topic), attrErr(err))
		}
		s.log.LogAttrs(ctx, slogInfo, "hub subscription verified", attrTopic(u.Topic), slog.String("hub", u.Hub), slog.Int("lease", lease))
		s.echo(w, r, challenge)
	case modeUnsubscribe:
		if u.State != store.UpstreamUnsubscribing || challenge == "" {
			text(w, http.StatusNotFound, "no unsubscription of this topic is pending\n")
			return
		}
		if err := s.is.DeleteUpstream(ctx, id); err != nil {
			text(w, http.StatusServiceUnavailable, "the store is unavailable; verify again later\n")
			return
		}
		s.forgetCached(id)
		_ = s.jobs.Remove(ctx, upstreamJob(id))
		s.echo(w, r, challenge)
	case modeDenied:
		reason := q.Get("hub.reason")
		err := s.is.UpdateUpstream(ctx, id, func(x *store.Upstream) error {
			x.State = store.UpstreamDenied
			x.Reason = "denied by the hub"
			if reason != "" {
				x.Reason += ": " + reason
			}
			return nil
		})
		if s.verifyFailed(w, r, err) {
			return
		}
		s.forgetCached(id)
		s.log.LogAttrs(ctx, slogInfo, "hub denied a subscription", attrTopic(u.Topic), slog.String("hub", u.Hub), slog.String("reason", reason))
		// Poll again at once: the hub will not push.
		if _, err := s.jobs.Schedule(ctx, fetchJob(u.Topic), now, store.IfPresent); err == nil {
			s.notify()
		}
		text(w, http.StatusOK, "denial recorded\n")
	default:
		text(w, http.StatusNotFound, "hub.mode must be subscribe, unsubscribe or denied\n")
	}
}

var errNotPending = errors.New("no request pending")

func (s *Service) verifyFailed(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errNotPending), errors.Is(err, store.ErrNotFound):
		text(w, http.StatusNotFound, "no subscription of this topic is pending\n")
	default:
		text(w, http.StatusServiceUnavailable, "the store is unavailable; verify again later\n")
	}
	return true
}

func (s *Service) echo(w http.ResponseWriter, r *http.Request, challenge string) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, challenge)
}

// CallbackPOST takes a hub's content distribution (WebSub §7, §8). When the
// subscription has a secret, a valid X-Hub-Signature is required: content
// without one is discarded with 403, content with a wrong one is discarded
// with 200 (so that a forger learns nothing). Valid content is parsed and
// stored before the answer; a body that does not parse is discarded with
// 200 and the topic's status says why.
func (s *Service) CallbackPOST(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	u, err := s.cachedUpstream(w, r, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.m.callbacks.WithLabelValues("unknown").Inc()
		text(w, http.StatusGone, "no subscription has this callback; stop delivering\n")
		return
	case err != nil:
		s.m.callbacks.WithLabelValues("error").Inc()
		text(w, http.StatusServiceUnavailable, "the store is unavailable; deliver again later\n")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.fetcher.Options().MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.m.callbacks.WithLabelValues("too_large").Inc()
			text(w, http.StatusRequestEntityTooLarge, "the content is larger than %s\n", fetch.SizeString(s.fetcher.Options().MaxBody))
			return
		}
		s.m.callbacks.WithLabelValues("error").Inc()
		text(w, http.StatusBadRequest, "reading the content failed\n")
		return
	}
	if u.Secret != "" {
		sig := r.Header.Get("X-Hub-Signature")
		if sig == "" {
			s.m.callbacks.WithLabelValues("missing_signature").Inc()
			s.log.LogAttrs(ctx, slogInfo, "discarding unsigned content", attrTopic(u.Topic), slog.String("hub", u.Hub))
			text(w, http.StatusForbidden, "X-Hub-Signature is required: the subscription was made with a secret\n")
			return
		}
		if !ValidSignature(u.Secret, sig, body) {
			s.m.callbacks.WithLabelValues("bad_signature").Inc()
			s.log.LogAttrs(ctx, slogInfo, "discarding content with a wrong signature", attrTopic(u.Topic), slog.String("hub", u.Hub))
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	_, err = s.storeDocument(ctx, u.Topic, body, r.Header.Get("Content-Type"), sourcePush)
	switch {
	case errors.Is(err, feed.ErrNotFeed):
		s.m.callbacks.WithLabelValues("unparseable").Inc()
		w.WriteHeader(http.StatusOK)
	case err != nil:
		s.m.callbacks.WithLabelValues("error").Inc()
		s.log.LogAttrs(ctx, slogWarn, "storing pushed content", attrTopic(u.Topic), attrErr(err))
		text(w, http.StatusServiceUnavailable, "storing failed; deliver again later\n")
	default:
		s.m.callbacks.WithLabelValues("stored").Inc()
		w.WriteHeader(http.StatusOK)
	}
}

// ValidSignature checks an X-Hub-Signature value ("sha256=<hex>", also
// sha1, sha384, sha512) against the HMAC of body under secret, in constant
// time.
func ValidSignature(secret, header string, body []byte) bool {
	method, sig, ok := strings.Cut(strings.TrimSpace(header), "=")
	if !ok {
		return false
	}
	var h func() hash.Hash
	switch strings.ToLower(method) {
	case "sha1":
		h = sha1.New
	case "sha256":
		h = sha256.New
	case "sha384":
		h = sha512.New384
	case "sha512":
		h = sha512.New
	default:
		return false
	}
	want, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return false
	}
	mac := hmac.New(h, []byte(secret))
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), want)
}

// Sign returns the X-Hub-Signature value of body under secret with the
// method (sha1, sha256, sha384, sha512): what a hub sends.
func Sign(method, secret string, body []byte) string {
	var h func() hash.Hash
	switch method {
	case "sha1":
		h = sha1.New
	case "sha384":
		h = sha512.New384
	case "sha512":
		h = sha512.New
	default:
		method, h = "sha256", sha256.New
	}
	mac := hmac.New(h, []byte(secret))
	mac.Write(body)
	return method + "=" + hex.EncodeToString(mac.Sum(nil))
}

// cachedUpstream is an upstream subscription as read at a time.
type cachedUpstream struct {
	u    store.Upstream
	read time.Time
}

// upstreamCacheTTL bounds how stale the content path's view of a
// subscription may be. A subscription's id, topic and secret never change,
// so staleness only delays noticing a removal.
const upstreamCacheTTL = 10 * time.Second

func (s *Service) cachedUpstream(w http.ResponseWriter, r *http.Request, id string) (store.Upstream, error) {
	now := time.Now()
	s.upMu.Lock()
	e, ok := s.upstreams[id]
	s.upMu.Unlock()
	if ok && now.Sub(e.read) < upstreamCacheTTL {
		return e.u, nil
	}
	u, err := s.is.Upstream(r.Context(), id)
	if err != nil {
		return u, err
	}
	s.upMu.Lock()
	if len(s.upstreams) >= 100_000 {
		clear(s.upstreams)
	}
	s.upstreams[id] = cachedUpstream{u: u, read: now}
	s.upMu.Unlock()
	return u, nil
}

func (s *Service) forgetCached(id string) {
	s.upMu.Lock()
	delete(s.upstreams, id)
	s.upMu.Unlock()
}

// text answers a plain-text message.
func text(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, format, args...)
}
