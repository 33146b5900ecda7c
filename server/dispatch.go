package server

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

const paramsKey = "feedgate.params"

// params reads the request's parameters once per request.
func params(c *gin.Context) (api.Params, error) {
	if v, ok := c.Get(paramsKey); ok {
		return v.(api.Params), nil
	}
	p, err := api.ReadParams(c.Request)
	if err != nil {
		return p, err
	}
	c.Set(paramsKey, p)
	return p, nil
}

func fail(c *gin.Context, p api.Params, err error) {
	api.WriteError(c.Writer, api.Negotiate(c.Request, p), err)
	c.Abort()
}

// landing answers a browser that opens / without hub parameters.
func (h *handlers) landing(c *gin.Context) {
	if h.cfg.Landing == nil || c.Request.Method != http.MethodGet || c.Request.URL.RawQuery != "" {
		return
	}
	if _, _, ok := auth.Credentials(c.Request, nil); ok {
		return
	}
	if strings.Contains(c.Request.Header.Get("Accept"), "text/html") && !isUpgrade(c.Request) {
		h.cfg.Landing(c.Writer, c.Request)
		c.Abort()
	}
}

func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// hub dispatches the hub endpoint on hub.mode.
func (h *handlers) hub(c *gin.Context) {
	p, err := params(c)
	if err != nil {
		fail(c, p, err)
		return
	}
	if m := c.Request.Header.Get("X-HTTP-Method-Override"); m != "" && !strings.EqualFold(m, "GET") && !strings.EqualFold(m, "POST") {
		fail(c, p, api.Errorf(http.StatusMethodNotAllowed, "X-HTTP-Method-Override: %s is not supported: the hub endpoint takes GET or POST", m))
		return
	}
	principal := principalOf(c)
	mode := strings.ToLower(p.Get("hub.mode"))
	if mode == "" && isUpgrade(c.Request) {
		mode = "retrieve"
	}
	c.Set(modeKey, mode)
	switch mode {
	case "retrieve":
		h.retrieve(c, p, principal)
	case "subscribe", "unsubscribe":
		h.subscribe(c, p, principal, mode == "subscribe")
	case "list":
		h.list(c, p, principal)
	case "publish":
		h.publish(c, p, principal)
	case "replay":
		h.replay(c, p, principal)
	case "":
		c.Set(modeKey, "none")
		fail(c, p, api.Invalid("hub.mode is required: subscribe, unsubscribe, list, retrieve, replay or publish"))
	default:
		c.Set(modeKey, "unknown")
		fail(c, p, api.Invalid("hub.mode %q is not known: use subscribe, unsubscribe, list, retrieve, replay or publish", truncate(mode)))
	}
}

func (h *handlers) websocket(c *gin.Context) {
	p, err := params(c)
	if err != nil {
		fail(c, p, err)
		return
	}
	c.Set(modeKey, "retrieve")
	if !isUpgrade(c.Request) {
		fail(c, p, api.Errorf(http.StatusBadRequest, "/ws takes WebSocket connections only (Upgrade: websocket); use / for plain HTTP"))
		return
	}
	h.retrieve(c, p, principalOf(c))
}

func (h *handlers) retrieve(c *gin.Context, p api.Params, principal *auth.Principal) {
	svc := h.cfg.Retrieve
	req, err := retrieve.Parse(c.Request, p, svc.Limits())
	if err != nil {
		fail(c, p, err)
		return
	}
	ctx := c.Request.Context()
	if req.ByCallback != "" {
		n, err := svc.RetrieveByCallback(ctx, principal, req.ByCallback, req.Count)
		if err != nil {
			fail(c, p, err)
			return
		}
		retrieve.Render(c.Writer, req, n, svc.HubURL())
		return
	}
	for _, t := range req.Topics {
		if err := svc.Authorize(ctx, principal, t); err != nil {
			fail(c, p, err)
			return
		}
	}
	live := req.Wait == retrieve.Stream || req.Format == retrieve.SSE || req.WebSocket
	switch {
	case live && h.cfg.Stream != nil:
		h.cfg.Stream.ServeStream(c.Writer, withPrincipal(c), req)
		return
	case req.Wait == retrieve.Poll && h.cfg.Poll != nil:
		h.cfg.Poll.ServePoll(c.Writer, withPrincipal(c), req)
		return
	case live || req.Wait == retrieve.Poll:
		fail(c, p, api.Invalid("wait=stream, wait=poll, SSE and WebSocket are not served by this node"))
		return
	}
	topic := req.Topics[0]
	q, err := svc.Query(ctx, topic, req)
	if err != nil {
		fail(c, p, err)
		return
	}
	if err := svc.Serve(ctx, c.Writer, req, topic, q); err != nil {
		fail(c, p, err)
	}
}

func (h *handlers) subscribe(c *gin.Context, p api.Params, principal *auth.Principal, subscribe bool) {
	req, err := hub.ParseSubscribe(p)
	if err != nil {
		fail(c, p, err)
		return
	}
	ctx := c.Request.Context()
	// Several hub.topic: all are subscribed, or none (never a silent drop).
	topics := p.List("hub.topic")
	if len(topics) > 1 && (!subscribe || req.Retrieve) {
		fail(c, p, api.Invalid("%s takes one hub.topic (got %d): send one request per topic", map[bool]string{true: "retrieve=true", false: "hub.mode=unsubscribe"}[subscribe], len(topics)))
		return
	}
	if !subscribe {
		if err := h.cfg.Hub.Unsubscribe(ctx, principal, req); err != nil {
			fail(c, p, err)
			return
		}
		if req.Async && req.Callback != "" {
			c.Status(http.StatusAccepted)
			return
		}
		c.Status(http.StatusNoContent)
		return
	}
	if err := h.cfg.Hub.SubscribeMany(ctx, principal, req, topics); err != nil {
		fail(c, p, err)
		return
	}
	if req.Async && req.Callback != "" {
		c.Status(http.StatusAccepted)
		return
	}
	if !req.Retrieve {
		c.Status(http.StatusNoContent)
		return
	}
	rreq, err := retrieve.Parse(c.Request, p, h.cfg.Retrieve.Limits())
	if err != nil {
		fail(c, p, err)
		return
	}
	n, err := h.cfg.Retrieve.Retrieve(ctx, req.Topic, store.Query{From: store.Newest, Count: rreq.Count})
	if err != nil {
		fail(c, p, err)
		return
	}
	retrieve.Render(c.Writer, rreq, n, h.cfg.Retrieve.HubURL())
}

func (h *handlers) replay(c *gin.Context, p api.Params, principal *auth.Principal) {
	req, err := hub.ParseReplay(p)
	if err != nil {
		fail(c, p, err)
		return
	}
	if err := h.cfg.Hub.Replay(c.Request.Context(), principal, req); err != nil {
		fail(c, p, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handlers) list(c *gin.Context, p api.Params, principal *auth.Principal) {
	req, err := hub.ParseList(p)
	if err != nil {
		fail(c, p, err)
		return
	}
	out, err := h.cfg.Hub.List(c.Request.Context(), principal, req)
	if err != nil {
		fail(c, p, err)
		return
	}
	if cb := p.Get("callback"); cb != "" && api.ValidCallback(cb) {
		body, _ := jsonMarshal(out)
		api.WriteJSONP(c.Writer, cb, body)
		return
	}
	c.JSON(http.StatusOK, out)
}

// feedTypes are the media types a fat ping may carry.
var feedTypes = map[string]bool{
	"application/atom+xml":  true,
	"application/rss+xml":   true,
	"application/rdf+xml":   true,
	"application/xml":       true,
	"text/xml":              true,
	"application/feed+json": true,
	"application/json":      true,
}

func (h *handlers) publish(c *gin.Context, p api.Params, principal *auth.Principal) {
	if err := auth.Require(principal, store.RightPublish); err != nil {
		fail(c, p, err)
		return
	}
	ctx := c.Request.Context()
	if ct := c.Request.Header.Get("Content-Type"); c.Request.Method == http.MethodPost && !api.IsFormBody(c.Request) && ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if !feedTypes[mt] {
			fail(c, p, api.Errorf(http.StatusUnsupportedMediaType, "a fat ping's Content-Type must be application/atom+xml, application/rss+xml, application/xml, text/xml or application/feed+json (got %q)", truncate(ct)))
			return
		}
		h.fatPing(c, p, principal)
		return
	}
	topics := append(p.URLs("hub.url"), p.List("hub.topic")...)
	if len(topics) == 0 {
		fail(c, p, api.Invalid("hub.url is required: give the URL of each updated feed (repeat it, use hub.url[] or separate with commas)"))
		return
	}
	if len(topics) > 100 {
		fail(c, p, api.Invalid("at most 100 URLs per publish ping (got %d)", len(topics)))
		return
	}
	for _, t := range topics {
		if err := api.CheckURL("hub.url", t); err != nil {
			fail(c, p, err)
			return
		}
		if err := auth.RequireTopic(principal, t); err != nil {
			fail(c, p, err)
			return
		}
	}
	topics = slices.Compact(slices.Sorted(slices.Values(topics)))
	if ok, wait := h.pings.AllowAll(topics); !ok {
		fail(c, p, tooMany(wait, "too many pings for this topic; the gateway fetches it at most --ping-rate-limit times per second"))
		return
	}
	if err := h.cfg.Publish.Ping(ctx, topics); err != nil {
		fail(c, p, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *handlers) fatPing(c *gin.Context, p api.Params, principal *auth.Principal) {
	topic := p.Get("hub.topic")
	if topic == "" {
		topic = p.Get("hub.url")
	}
	if err := api.CheckURL("hub.topic", topic); err != nil {
		fail(c, p, err)
		return
	}
	if err := auth.RequireTopic(principal, topic); err != nil {
		fail(c, p, err)
		return
	}
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if e, ok := api.AsError(err); ok {
			fail(c, p, e) // 408: the body did not arrive in time
			return
		}
		if errors.As(err, &tooBig) {
			fail(c, p, api.Errorf(http.StatusRequestEntityTooLarge, "the feed is larger than %d bytes; send only the new entries", tooBig.Limit))
			return
		}
		fail(c, p, api.Errorf(http.StatusBadRequest, "the request body could not be read: %v", err))
		return
	}
	if len(body) == 0 {
		fail(c, p, api.Invalid("the fat ping has an empty body: POST the feed document itself"))
		return
	}
	items, err := h.cfg.Publish.StoreFeed(c.Request.Context(), topic, body, c.Request.Header.Get("Content-Type"))
	if errors.Is(err, feed.ErrNotFeed) {
		err = api.Invalid("%v; POST an RSS, Atom or JSON Feed document", err)
	}
	if err != nil {
		fail(c, p, err)
		return
	}
	out := publishAnswer{Topic: topic, Stored: len(items)}
	if len(items) > 0 {
		out.Cursor = items[len(items)-1].Cursor.String()
	}
	c.JSON(http.StatusOK, out)
}

type publishAnswer struct {
	Topic  string `json:"topic"`
	Stored int    `json:"stored"`
	Cursor string `json:"cursor,omitempty"`
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
