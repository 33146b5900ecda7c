// Package server owns the gin engine: routes, the hub.mode dispatch of the
// hub endpoint, CORS, health, readiness and metrics.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gin-contrib/cors"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/limit"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// Publisher takes publish pings and fat pings (package ingest).
type Publisher interface {
	// Ping fetches the tracked topics among topics now.
	Ping(ctx context.Context, topics []string) error
	// StoreFeed parses a feed document pushed for topic and stores its new
	// entries.
	StoreFeed(ctx context.Context, topic string, body []byte, contentType string) ([]feed.Item, error)
}

// Streams serves the long-lived forms of retrieve: wait=stream, SSE and
// WebSocket (package stream). The principal is in the request's context
// (auth.FromContext).
type Streams interface {
	ServeStream(w http.ResponseWriter, r *http.Request, req retrieve.Request)
}

// Polls answers wait=poll (package poll).
type Polls interface {
	ServePoll(w http.ResponseWriter, r *http.Request, req retrieve.Request)
}

// Live is the node hub (package live).
type Live interface {
	// Healthy reports whether live fan-out works.
	Healthy() bool
}

// Callbacks answers the upstream hubs' requests to /callback/{id} (the id
// is the request's path value "id").
type Callbacks interface {
	Callback(w http.ResponseWriter, r *http.Request)
}

// Role selects what a node serves.
type Role string

// The roles of `gateway serve --role`.
const (
	RoleAll    Role = "all"
	RoleAPI    Role = "api"
	RoleIngest Role = "ingest"
)

// Config wires a server.
type Config struct {
	Role     Role
	Store    store.Store
	Auth     *auth.Authenticator
	Retrieve *retrieve.Service
	Hub      *hub.Service
	Publish  Publisher
	Stream   Streams   // nil: wait=stream, SSE and WebSocket answer 422
	Poll     Polls     // nil: wait=poll answers 422
	Live     Live      // nil: readiness does not check live fan-out
	Callback Callbacks // nil: /callback/:id is not served
	// Assets, when set, serves the paths no route of the server takes
	// (the browser side, package web); it hands what it does not know to
	// the handler it is given, the server's 404.
	Assets func(next http.Handler) http.Handler
	// Landing answers a browser at / (nil: hub clients only).
	Landing http.HandlerFunc
	// AllowedOrigins for CORS ("*" allows any); empty disables CORS.
	AllowedOrigins []string
	// MaxBody bounds request bodies (fat pings), default 10 MiB.
	MaxBody int64
	// Limits are the request limits (rates, body read deadline).
	Limits Limits
	// MetricsOnAdmin leaves /metrics off this handler: it is served by
	// the admin listener (NewAdmin).
	MetricsOnAdmin bool
	Registry       *prometheus.Registry
	Logger         *slog.Logger
	// AccessLog, when set, logs every request (see accesslog.go).
	AccessLog *slog.Logger
}

// DefaultMaxBody bounds request bodies unless configured.
const DefaultMaxBody = 10 << 20

// New returns the HTTP handler of a gateway node.
func New(cfg Config) http.Handler {
	e, cfg := engine(cfg)
	return guardBody(e, cfg.Limits.BodyTimeout)
}

// engine returns the gin engine of New (its routes are listed by the
// description test) and the config with its defaults filled in.
func engine(cfg Config) (*gin.Engine, Config) {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	cfg.Limits = cfg.Limits.withDefaults()
	h := &handlers{cfg: cfg, limiters: newLimiters(cfg.Limits)}
	e.Use(reuseKeys, h.recover(), newHTTPMetrics(cfg.Registry).middleware(), traceRequests())
	if cfg.AccessLog != nil {
		e.Use(accessLog(cfg.AccessLog))
	}
	var notFound http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, api.Negotiate(r, api.Params{Values: r.URL.Query()}),
			api.Errorf(http.StatusNotFound, "no such path %s: the hub endpoint is / (or /hub)", r.URL.Path))
	})
	if cfg.Assets != nil {
		notFound = cfg.Assets(notFound)
	}
	e.NoRoute(gin.WrapH(notFound))
	e.NoMethod(func(c *gin.Context) {
		api.WriteError(c.Writer, api.Want{}, api.Errorf(http.StatusMethodNotAllowed, "method %s is not allowed here: use GET or POST", c.Request.Method))
	})

	e.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", h.ready)
	e.GET("/openapi.yaml", gin.WrapF(api.ServeOpenAPI))
	if !cfg.MetricsOnAdmin {
		e.GET("/metrics", gin.WrapH(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry})))
	}

	if cfg.Callback != nil && cfg.Role != RoleAPI {
		callback := func(c *gin.Context) {
			c.Request.SetPathValue("id", c.Param("id"))
			cfg.Callback.Callback(c.Writer, c.Request)
		}
		e.GET("/callback/:id", callback)
		e.POST("/callback/:id", callback)
	}
	if cfg.Role == RoleIngest {
		return e, cfg
	}

	chain := []gin.HandlerFunc{h.limitBody}
	if len(cfg.AllowedOrigins) > 0 {
		chain = append(chain, corsMiddleware(cfg.AllowedOrigins))
	}
	endpoint := append(append([]gin.HandlerFunc{}, chain...), h.landing, h.authenticate, h.hub)
	for _, path := range []string{"/", "/hub"} {
		e.GET(path, endpoint...)
		e.POST(path, endpoint...)
		e.OPTIONS(path, chain...)
	}
	ws := append(append([]gin.HandlerFunc{}, chain...), h.authenticate, h.websocket)
	e.GET("/ws", ws...)
	return e, cfg
}

func corsMiddleware(origins []string) gin.HandlerFunc {
	cc := cors.Config{
		AllowMethods:  []string{"GET", "POST", "OPTIONS"},
		AllowHeaders:  []string{"Authorization", "Content-Type", "Accept", "Last-Event-ID", "X-HTTP-Method-Override", "X-Requested-With"},
		ExposeHeaders: []string{"Feedgate-Gap", "WWW-Authenticate", "Retry-After"},
		MaxAge:        12 * time.Hour,
	}
	if slices.Contains(origins, "*") {
		// Any origin: answered "*", never with credentials, so a page
		// cannot ride on a browser's stored credentials; scripts still send
		// their own Authorization header or authorization=/access_token=.
		cc.AllowAllOrigins = true
	} else {
		// Listed origins are reflected and may send credentials.
		cc.AllowOrigins = origins
		cc.AllowCredentials = true
		// Called for an origin the list does not hold, just before the
		// middleware refuses it with 403: the refusal says why and what to do.
		cc.AllowOriginWithContextFunc = func(c *gin.Context, origin string) bool {
			api.WriteError(c.Writer, api.Want{}, api.Errorf(http.StatusForbidden,
				"pages from %s may not call this gateway: its operator lists the allowed origins in --allowed-origins", origin))
			return false
		}
	}
	return cors.New(cc)
}

// keysPool holds the maps of gin's per-request keys (the parameters, the
// principal, the hub mode): each request takes one and gives it back
// cleared, instead of allocating one (a third of what a cached retrieve
// allocated in go test -bench RetrieveCached ./server).
var keysPool = sync.Pool{New: func() any { return make(map[any]any, 4) }}

// reuseKeys is the outermost middleware: nothing reads the keys after it.
func reuseKeys(c *gin.Context) {
	keys := keysPool.Get().(map[any]any)
	c.Keys = keys
	c.Next()
	c.Keys = nil
	clear(keys)
	keysPool.Put(keys)
}

type handlers struct {
	cfg Config
	limiters
}

func (h *handlers) recover() gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, err any) {
		h.cfg.Logger.Error("panic while answering a request", slog.Any("panic", err), slog.String("path", c.Request.URL.Path))
		if !c.Writer.Written() {
			api.WriteError(c.Writer, api.Want{}, api.Errorf(http.StatusInternalServerError, "internal error; the request was not completed, retry later"))
		}
		c.Abort()
	})
}

// authenticate checks the request's credentials and puts the principal in
// its context; failures are rendered as the client asked (JSON, JSONP,
// text).
func (h *handlers) authenticate(c *gin.Context) {
	addr := clientAddr(c.Request)
	if blocked, wait := h.logins.Blocked(addr); blocked {
		fail(c, api.Params{Values: c.Request.URL.Query()}, tooMany(wait, "too many failed logins from your address"))
		return
	}
	params, err := params(c)
	if err != nil {
		fail(c, params, err)
		return
	}
	p, err := h.cfg.Auth.Authenticate(c.Request.Context(), c.Request, params.Values)
	if err != nil {
		if errors.Is(err, auth.ErrWrongCredentials) {
			h.logins.Take(addr)
		}
		fail(c, params, err)
		return
	}
	limit.Authenticated(c.Request.Context())
	if ok, wait := h.users.Allow(p.Login); !ok {
		fail(c, params, tooMany(wait, fmt.Sprintf("too many requests for user %s (over --rate-limit)", p.Login)))
		return
	}
	c.Set(principalKey, p)
}

const principalKey = "feedgate.principal"

// principalOf is the request's authenticated principal (nil before
// authenticate). It is kept in the gin context, and put in the request's
// context (auth.WithPrincipal) only for the transports that read it there
// (withPrincipal): a plain request does not copy its *http.Request for it.
func principalOf(c *gin.Context) *auth.Principal {
	v, _ := c.Get(principalKey)
	p, _ := v.(*auth.Principal)
	return p
}

// withPrincipal is the request with its principal in its context, for the
// transports (streams, long-polls).
func withPrincipal(c *gin.Context) *http.Request {
	return c.Request.WithContext(auth.WithPrincipal(c.Request.Context(), principalOf(c)))
}

func (h *handlers) limitBody(c *gin.Context) {
	if c.Request.Body != nil && c.Request.Body != http.NoBody {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, h.cfg.MaxBody)
	}
}

func (h *handlers) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := h.cfg.Store.Ping(ctx); err != nil {
		c.String(http.StatusServiceUnavailable, "store unreachable: %v\n", err)
		return
	}
	if h.cfg.Live != nil && h.cfg.Role != RoleIngest && !h.cfg.Live.Healthy() {
		c.String(http.StatusServiceUnavailable, "live fan-out is down; reconnecting\n")
		return
	}
	c.String(http.StatusOK, "ready\n")
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
