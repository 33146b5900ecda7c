package ingest

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/feedgate/feedgate/store"
)

// Callback serves /callback/:id: GET is a hub's verification of intent,
// POST a hub's content distribution.
func (s *Service) Callback(c *gin.Context) {
	switch c.Request.Method {
	case http.MethodGet, http.MethodHead:
		s.CallbackGET(c)
	case http.MethodPost:
		s.CallbackPOST(c)
	default:
		c.Header("Allow", "GET, POST")
		c.String(http.StatusMethodNotAllowed, "a WebSub callback takes GET (verification) and POST (content)\n")
	}
}

// CallbackGET answers a hub's verification of intent (WebSub §5.3): it
// echoes hub.challenge with 200 for a subscription or unsubscription that
// feedgate asked for, of that topic, and answers 404 otherwise. A denial
// (hub.mode=denied) is recorded and the topic goes back to polling.
func (s *Service) CallbackGET(c *gin.Context) {
	ctx := c.Request.Context()
	id := c.Param("id")
	q := c.Request.URL.Query()
	mode, topic, challenge := q.Get("hub.mode"), q.Get("hub.topic"), q.Get("hub.challenge")
	u, err := s.is.Upstream(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.String(http.StatusNotFound, "no subscription has this callback\n")
		return
	case err != nil:
		c.String(http.StatusServiceUnavailable, "the store is unavailable; verify again later\n")
		return
	case topic != u.HubTopic:
		c.String(http.StatusNotFound, "this callback is for another topic\n")
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
			c.String(http.StatusNotFound, "hub.challenge is missing\n")
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
		if s.verifyFailed(c, err) {
			return
		}
		s.forgetCached(id)
		if err := s.is.ScheduleJob(ctx, upstreamJob(id), s.renewAt(verified)); err != nil {
			s.log.LogAttrs(ctx, slogWarn, "scheduling the renewal of a hub subscription", attrTopic(u.Topic), attrErr(err))
		}
		s.log.LogAttrs(ctx, slogInfo, "hub subscription verified", attrTopic(u.Topic), slog.String("hub", u.Hub), slog.Int("lease", lease))
		s.echo(c, challenge)
	case modeUnsubscribe:
		if u.State != store.UpstreamUnsubscribing || challenge == "" {
			c.String(http.StatusNotFound, "no unsubscription of this topic is pending\n")
			return
		}
		if err := s.is.DeleteUpstream(ctx, id); err != nil {
			c.String(http.StatusServiceUnavailable, "the store is unavailable; verify again later\n")
			return
		}
		s.forgetCached(id)
		_ = s.is.RemoveJob(ctx, upstreamJob(id))
		s.echo(c, challenge)
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
		if s.verifyFailed(c, err) {
			return
		}
		s.forgetCached(id)
		s.log.LogAttrs(ctx, slogInfo, "hub denied a subscription", attrTopic(u.Topic), slog.String("hub", u.Hub), slog.String("reason", reason))
		// Poll again at once: the hub will not push.
		if _, err := s.is.ExpediteJob(ctx, fetchJob(u.Topic), now); err == nil {
			s.notify()
		}
		c.String(http.StatusOK, "denial recorded\n")
	default:
		c.String(http.StatusNotFound, "hub.mode must be subscribe, unsubscribe or denied\n")
	}
}

var errNotPending = errors.New("no request pending")

func (s *Service) verifyFailed(c *gin.Context, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, errNotPending), errors.Is(err, store.ErrNotFound):
		c.String(http.StatusNotFound, "no subscription of this topic is pending\n")
	default:
		c.String(http.StatusServiceUnavailable, "the store is unavailable; verify again later\n")
	}
	return true
}

func (s *Service) echo(c *gin.Context, challenge string) {
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(challenge))
}

// CallbackPOST takes a hub's content distribution (WebSub §7, §8). When the
// subscription has a secret, a valid X-Hub-Signature is required: content
// without one is discarded with 403, content with a wrong one is discarded
// with 200 (so that a forger learns nothing). Valid content is parsed and
// stored before the answer; a body that does not parse is discarded with
// 200 and the topic's status says why.
func (s *Service) CallbackPOST(c *gin.Context) {
	ctx := c.Request.Context()
	id := c.Param("id")
	u, err := s.cachedUpstream(c, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.m.callbacks.WithLabelValues("unknown").Inc()
		c.String(http.StatusGone, "no subscription has this callback; stop delivering\n")
		return
	case err != nil:
		s.m.callbacks.WithLabelValues("error").Inc()
		c.String(http.StatusServiceUnavailable, "the store is unavailable; deliver again later\n")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, s.fetcher.opts.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.m.callbacks.WithLabelValues("too_large").Inc()
			c.String(http.StatusRequestEntityTooLarge, "the content is larger than %s\n", sizeString(s.fetcher.opts.MaxBody))
			return
		}
		s.m.callbacks.WithLabelValues("error").Inc()
		c.String(http.StatusBadRequest, "reading the content failed\n")
		return
	}
	if u.Secret != "" {
		sig := c.GetHeader("X-Hub-Signature")
		if sig == "" {
			s.m.callbacks.WithLabelValues("missing_signature").Inc()
			s.log.LogAttrs(ctx, slogInfo, "discarding unsigned content", attrTopic(u.Topic), slog.String("hub", u.Hub))
			c.String(http.StatusForbidden, "X-Hub-Signature is required: the subscription was made with a secret\n")
			return
		}
		if !ValidSignature(u.Secret, sig, body) {
			s.m.callbacks.WithLabelValues("bad_signature").Inc()
			s.log.LogAttrs(ctx, slogInfo, "discarding content with a wrong signature", attrTopic(u.Topic), slog.String("hub", u.Hub))
			c.Status(http.StatusOK)
			return
		}
	}
	_, err = s.storeDocument(ctx, u.Topic, body, c.GetHeader("Content-Type"), sourcePush)
	switch {
	case errors.Is(err, ErrUnparseable):
		s.m.callbacks.WithLabelValues("unparseable").Inc()
		c.Status(http.StatusOK)
	case err != nil:
		s.m.callbacks.WithLabelValues("error").Inc()
		s.log.LogAttrs(ctx, slogWarn, "storing pushed content", attrTopic(u.Topic), attrErr(err))
		c.String(http.StatusServiceUnavailable, "storing failed; deliver again later\n")
	default:
		s.m.callbacks.WithLabelValues("stored").Inc()
		c.Status(http.StatusOK)
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

func (s *Service) cachedUpstream(c *gin.Context, id string) (store.Upstream, error) {
	now := time.Now()
	s.upMu.Lock()
	e, ok := s.upstreams[id]
	s.upMu.Unlock()
	if ok && now.Sub(e.read) < upstreamCacheTTL {
		return e.u, nil
	}
	u, err := s.is.Upstream(c.Request.Context(), id)
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
