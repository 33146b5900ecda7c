package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/admin"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/limit"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
	"github.com/feedgate/feedgate/tracing"
	"github.com/feedgate/feedgate/web"
)

// ServeCmd is `gateway serve`.
type ServeCmd struct {
	StoreConfig
	LogConfig
	TLSConfig
	JWTConfig

	Listen           string        `env:"FEEDGATE_LISTEN" default:":8080" help:"Address to listen on."`
	PublicURL        string        `name:"public-url" env:"FEEDGATE_PUBLIC_URL" help:"Public base URL of this gateway (callbacks, rel=hub links). Default: http://localhost:<port>."`
	Role             string        `env:"FEEDGATE_ROLE" default:"all" enum:"all,api,ingest" help:"What this node does: all, api (hub endpoint and streams, never fetches) or ingest (fetching, upstream WebSub callbacks and health only)."`
	AllowPrivate     bool          `name:"allow-private" env:"FEEDGATE_ALLOW_PRIVATE" help:"Allow fetching and calling back loopback, private and link-local addresses (tests, private networks)."`
	AllowedOrigins   []string      `name:"allowed-origins" env:"FEEDGATE_ALLOWED_ORIGINS" help:"Origins allowed by CORS and WebSocket (comma-separated; * for any). Empty: same origin only."`
	MaxCount         int           `name:"max-count" env:"FEEDGATE_MAX_COUNT" default:"50" help:"Largest count a retrieve may ask for."`
	MaxBody          int64         `name:"max-body" env:"FEEDGATE_MAX_BODY" default:"10485760" help:"Largest request body (fat pings), in bytes."`
	PollTimeout      time.Duration `name:"poll-timeout" env:"FEEDGATE_POLL_TIMEOUT" default:"30s" help:"Default wait=poll timeout."`
	MaxPollTimeout   time.Duration `name:"max-poll-timeout" env:"FEEDGATE_MAX_POLL_TIMEOUT" default:"120s" help:"Largest wait=poll timeout a client may ask for."`
	AuthCache        time.Duration `name:"auth-cache" env:"FEEDGATE_AUTH_CACHE" default:"2s" help:"How long a node caches a user's record to check tokens against, and which topics a user may read (0 to 3s; a removed or rotated token, or a subscription removed through another node, may work that long on this one)."`
	RetrieveCache    int           `name:"retrieve-cache" env:"FEEDGATE_RETRIEVE_CACHE" default:"10000" help:"Topics whose newest items a node keeps in memory for retrieve answers (0: off). Other nodes' appends show after the live notification delay, topic status is at most 1s old."`
	RetrieveCacheMiB int           `name:"retrieve-cache-mib" env:"FEEDGATE_RETRIEVE_CACHE_MIB" default:"128" help:"Approximate memory the retrieve cache may hold, in MiB."`

	FetchConcurrency int           `name:"fetch-concurrency" env:"FEEDGATE_FETCH_CONCURRENCY" default:"16" help:"Fetches and hub requests run at once by an ingest node."`
	MinPeriod        time.Duration `name:"min-period" env:"FEEDGATE_MIN_PERIOD" default:"1m" help:"Shortest polling period of a feed."`
	MaxPeriod        time.Duration `name:"max-period" env:"FEEDGATE_MAX_PERIOD" default:"1h" help:"Longest polling period (also the safety-net period of feeds with a hub)."`

	Keepalive       time.Duration `env:"FEEDGATE_KEEPALIVE" default:"20s" help:"Keep-alive interval of streams (blank NDJSON line, SSE comment, WebSocket ping)."`
	ClientQueue     int           `name:"client-queue" env:"FEEDGATE_CLIENT_QUEUE" default:"256" help:"Notifications that may wait for one stream client before it is disconnected (it resumes by cursor)."`
	WriteTimeout    time.Duration `name:"write-timeout" env:"FEEDGATE_WRITE_TIMEOUT" default:"10s" help:"Deadline of every write to a stream client."`
	MaxLifetime     time.Duration `name:"max-lifetime" env:"FEEDGATE_MAX_LIFETIME" default:"0s" help:"End streams after this long (minus up to 10% jitter), telling clients to reconnect; 0: never."`
	MaxConnsPerUser int           `name:"max-conns-per-user" env:"FEEDGATE_MAX_CONNS_PER_USER" default:"1000" help:"Streams, sockets and held long-polls one user may have open on a node (429 beyond); 0: no limit."`

	LeaseDefault        time.Duration `name:"lease-default" env:"FEEDGATE_LEASE_DEFAULT" default:"240h" help:"Lease of a callback subscription that asks for none (hub.lease_seconds)."`
	LeaseMax            time.Duration `name:"lease-max" env:"FEEDGATE_LEASE_MAX" default:"8760h" help:"Longest lease a callback subscription may get; longer requests are clamped."`
	DeliveryConcurrency int           `name:"delivery-concurrency" env:"FEEDGATE_DELIVERY_CONCURRENCY" default:"128" help:"Webhook POSTs one node has in flight."`
	DeliveryPerCallback int           `name:"delivery-per-callback" env:"FEEDGATE_DELIVERY_PER_CALLBACK" default:"4" help:"Webhook POSTs in flight to one callback URL."`
	DeliveryTimeout     time.Duration `name:"delivery-timeout" env:"FEEDGATE_DELIVERY_TIMEOUT" default:"15s" help:"Time limit of one webhook POST."`
	RetryAttempts       int           `name:"retry-attempts" env:"FEEDGATE_RETRY_ATTEMPTS" default:"16" help:"Failed attempts after which a webhook delivery is given up (the subscription goes on with later items)."`
	RetryMaxAge         time.Duration `name:"retry-max-age" env:"FEEDGATE_RETRY_MAX_AGE" default:"24h" help:"Age of a failing webhook delivery after which it is given up."`
	WebhookSignature    string        `name:"webhook-signature" env:"FEEDGATE_WEBHOOK_SIGNATURE" default:"sha256" enum:"sha1,sha256,sha384,sha512" help:"Hash of the X-Hub-Signature HMAC of webhook deliveries to subscribers with a hub.secret: sha1, sha256, sha384 or sha512."`

	NodeID        string        `name:"node-id" env:"FEEDGATE_NODE_ID" help:"This node's name in the admin API's node list. Default: <host name>:<listen port>."`
	NodeHeartbeat time.Duration `name:"node-heartbeat" env:"FEEDGATE_NODE_HEARTBEAT" default:"5s" help:"How often a node renews its record in the node list; a node that stops answering leaves the list after three."`

	AdminListen       string        `name:"admin-listen" env:"FEEDGATE_ADMIN_LISTEN" help:"Address of the admin listener (e.g. 127.0.0.1:9090): /metrics and /debug/pprof/, then neither on the public port. Empty: /metrics on the public port, no pprof."`
	RateLimit         float64       `name:"rate-limit" env:"FEEDGATE_RATE_LIMIT" default:"0" help:"Requests per second per user on each node (429 beyond); 0: no limit."`
	RateBurst         int           `name:"rate-burst" env:"FEEDGATE_RATE_BURST" default:"0" help:"Requests a user may make at once; 0: one second's worth of --rate-limit."`
	PingRateLimit     float64       `name:"ping-rate-limit" env:"FEEDGATE_PING_RATE_LIMIT" default:"1" help:"Publish pings (hub.mode=publish without a body) per second per topic on each node (429 beyond); 0: no limit."`
	PingBurst         int           `name:"ping-burst" env:"FEEDGATE_PING_BURST" default:"0" help:"Pings of one topic accepted at once; 0: one second's worth of --ping-rate-limit."`
	LoginFailureLimit int           `name:"login-failure-limit" env:"FEEDGATE_LOGIN_FAILURE_LIMIT" default:"30" help:"Failed logins per minute per address before its requests are answered 429; 0: no limit."`
	MaxUnauthConns    int           `name:"max-unauth-conns" env:"FEEDGATE_MAX_UNAUTH_CONNS" default:"64" help:"Connections one address may hold open without an authenticated request (beyond: answered 429 and closed); 0: no limit."`
	BodyTimeout       time.Duration `name:"body-timeout" env:"FEEDGATE_BODY_TIMEOUT" default:"30s" help:"Time to receive a request body after its headers (408 and the connection closed beyond)."`

	ShutdownTimeout time.Duration `name:"shutdown-timeout" env:"FEEDGATE_SHUTDOWN_TIMEOUT" default:"10s" help:"How long SIGTERM waits for in-flight requests."`
}

func (c *ServeCmd) publicURL() (string, error) {
	if c.PublicURL != "" {
		return strings.TrimRight(c.PublicURL, "/"), nil
	}
	_, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q is not host:port: %w", c.Listen, err)
	}
	if c.TLSConfig.enabled() {
		host := "localhost"
		if d := splitList(c.ACMEDomain); len(d) > 0 {
			host = d[0]
		}
		if port == "443" {
			return "https://" + host, nil
		}
		return "https://" + host + ":" + port, nil
	}
	return "http://localhost:" + port, nil
}

// Run serves until ctx ends (SIGINT/SIGTERM), then shuts down gracefully.
func (c *ServeCmd) Run(ctx context.Context) error {
	log := c.logger()
	slog.SetDefault(log)
	redis.SetLogger(redisLog{log})
	stopTracing, err := tracing.Setup(ctx, version, log)
	if err != nil {
		return fmt.Errorf("tracing (OTEL_EXPORTER_OTLP_*): %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("flushing traces at shutdown", slog.Any("err", err))
		}
	}()
	public, err := c.publicURL()
	if err != nil {
		return err
	}
	changes := new(store.ChangeHook)
	st, err := c.open(ctx, changes)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("closing the store", slog.Any("err", err))
		}
	}()
	is, ok := st.(store.IngestStore)
	if !ok {
		return errors.New("the store does not keep ingest state")
	}
	if err := seedDemoUser(ctx, st, os.Stderr); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())

	ing, err := ingest.New(st, is, ingest.Options{
		PublicURL:    public,
		Version:      version,
		AllowPrivate: c.AllowPrivate,
		Concurrency:  c.FetchConcurrency,
		MinPeriod:    c.MinPeriod,
		MaxPeriod:    c.MaxPeriod,
		Registerer:   reg,
		Logger:       log,
	})
	if err != nil {
		return err
	}
	jwtOpts, jwks, err := c.JWTConfig.options(ctx, c.AllowPrivate)
	if err != nil {
		return err
	}
	authn, err := auth.New(st, auth.Options{CacheTTL: c.AuthCache, JWT: jwtOpts})
	if err != nil {
		return fmt.Errorf("--auth-cache or --jwt-*: %w", err)
	}
	if c.RetrieveCache < 0 || c.RetrieveCacheMiB < 1 {
		return fmt.Errorf("--retrieve-cache must be 0 (off) or more and --retrieve-cache-mib at least 1 (got %d and %d)", c.RetrieveCache, c.RetrieveCacheMiB)
	}
	// The node hub: the node's one live subscription to the store, for
	// streams, long-polls, the retrieve cache and webhook scheduling.
	liveHub, err := live.New(st, live.Options{
		HubURL:          public + "/",
		MaxConnsPerUser: c.MaxConnsPerUser,
		// Live connections end within auth.RevocationDelay of their
		// credential's removal, rotation or expiry, on every node.
		Revalidate:      authn.Revalidate,
		RevalidateEvery: authn.RevalidateEvery(),
		Logger:          log,
		Registry:        reg,
	})
	if err != nil {
		return err
	}
	defer liveHub.Close()
	rsOpts := retrieve.Options{
		HubURL: public + "/",
		Limits: retrieve.Limits{MaxCount: c.MaxCount, DefaultTimeout: c.PollTimeout, MaxTimeout: c.MaxPollTimeout},
		// Who may read a topic is kept as long as a user's record.
		AccessTTL: c.AuthCache,
		Changes:   changes,
	}
	if c.RetrieveCache > 0 && c.Role != string(server.RoleIngest) {
		rsOpts.Cache = retrieve.NewCache(liveHub, st, retrieve.CacheOptions{
			Topics:     c.RetrieveCache,
			Bytes:      c.RetrieveCacheMiB << 20,
			Count:      c.MaxCount,
			Changes:    changes,
			Registerer: reg,
		})
		defer rsOpts.Cache.Close()
	}
	rs := retrieve.New(st, rsOpts)
	origins := splitList(c.AllowedOrigins)
	streams, err := stream.New(liveHub, rs, stream.Options{
		Keepalive:      c.Keepalive,
		ClientQueue:    c.ClientQueue,
		WriteTimeout:   c.WriteTimeout,
		MaxLifetime:    c.MaxLifetime,
		AllowedOrigins: origins,
		Logger:         log,
		Registry:       reg,
	})
	if err != nil {
		return err
	}
	defer streams.Close()
	retry := hub.DefaultRetry
	retry.MaxAttempts, retry.MaxAge = c.RetryAttempts, c.RetryMaxAge
	hubSvc := hub.New(st, ing, hub.Options{
		Live:            liveHub,
		PublicHubURL:    public + "/hub",
		Fetcher:         ing.Fetcher(),
		LeaseDefault:    c.LeaseDefault,
		LeaseMax:        c.LeaseMax,
		Concurrency:     c.DeliveryConcurrency,
		PerCallback:     c.DeliveryPerCallback,
		DeliveryTimeout: c.DeliveryTimeout,
		Retry:           retry,
		Signature:       c.WebhookSignature,
		Registerer:      reg,
		Logger:          log,
	})
	handler := server.New(server.Config{
		Role:           server.Role(c.Role),
		Store:          st,
		Auth:           authn,
		Retrieve:       rs,
		Hub:            hubSvc,
		Publish:        ing,
		Callback:       ing,
		Stream:         streams,
		Poll:           poll.New(liveHub, rs),
		Live:           liveHub,
		Assets:         web.Handler,
		Landing:        web.Landing,
		AllowedOrigins: origins,
		MaxBody:        c.MaxBody,
		MetricsOnAdmin: c.AdminListen != "",
		Limits: server.Limits{
			BodyTimeout:   c.BodyTimeout,
			RequestRate:   c.RateLimit,
			RequestBurst:  c.RateBurst,
			PingRate:      c.PingRateLimit,
			PingBurst:     c.PingBurst,
			LoginFailures: c.LoginFailureLimit,
		},
		Registry:  reg,
		Logger:    log,
		AccessLog: c.accessLogger(log),
	})

	tlsCfg, err := c.tlsConfig(c.DataDir)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	conns := limit.NewConns(c.MaxUnauthConns)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext:       conns.ConnContext,
		ConnState:         conns.ConnState,
	}
	if tlsCfg == nil {
		// Each answer in one write (see server.Corked).
		ln = server.Corked(ln)
		srv.ConnState = server.CorkState(conns.ConnState)
	}
	var adminSrv *http.Server
	var aln net.Listener
	if c.AdminListen != "" {
		if aln, err = net.Listen("tcp", c.AdminListen); err != nil {
			ln.Close()
			return fmt.Errorf("--admin-listen: %w", err)
		}
	}
	var adminAddr net.Addr
	if aln != nil {
		adminAddr = aln.Addr()
	}
	adminAPI := c.adminAPI(st, is, authn, hubSvc, liveHub, public, ln.Addr(), adminAddr)
	if aln != nil {
		adminSrv = &http.Server{
			Handler:           adminHandler(reg, adminAPI),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		go func() {
			if err := adminSrv.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener stopped", slog.Any("err", err))
			}
		}()
		defer adminSrv.Close()
		log.Info("admin listener serving /metrics and /debug/pprof/", slog.String("listen", aln.Addr().String()))
	}

	runCtx, stopRun := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopRun()
	if c.Role != string(server.RoleAPI) {
		wg.Go(func() {
			if err := ing.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("ingest stopped", slog.Any("err", err))
			}
		})
	}
	if c.Role != string(server.RoleIngest) {
		// Webhook deliveries and hub.verify=async verifications run where
		// the hub endpoint is served.
		wg.Go(func() {
			if err := hubSvc.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("webhook delivery stopped", slog.Any("err", err))
			}
		})
	}
	if jwks != nil {
		wg.Go(func() { jwks.Run(runCtx) })
	}
	// The node list: every node keeps its record in the store.
	wg.Go(func() { adminAPI.RunHeartbeat(runCtx, log) })
	if !c.usesRedis() {
		sock := filepath.Join(c.DataDir, admin.SocketName)
		wg.Go(func() {
			if err := admin.Serve(runCtx, sock, admin.Direct{Store: st, Subscriptions: hubSvc, Forget: authn.Forget}); err != nil {
				log.Warn("admin socket unavailable: `gateway user` commands cannot reach this process", slog.Any("err", err))
			}
		})
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- serveOn(srv, ln, tlsCfg) }()
	log.Info("feedgate serving", slog.String("listen", ln.Addr().String()), slog.String("public_url", public),
		slog.String("store", c.describe()), slog.String("role", c.Role), slog.String("version", version),
		slog.String("tracing", tracing.Mode()), slog.Bool("tls", tlsCfg != nil))

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	// Streams are told to reconnect first: they would hold Shutdown open.
	if err := liveHub.Shutdown(sctx); err != nil {
		log.Warn("streams cut at shutdown", slog.Any("err", err))
	}
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests cut at shutdown", slog.Any("err", err))
		srv.Close()
	}
	stopRun()
	wg.Wait()
	log.Info("stopped")
	return nil
}

// seedDemoUser creates `demo` with every right on a store without users and
// prints its token once to the terminal (w, stderr): never through the
// logger, whose output may be shipped elsewhere.
func seedDemoUser(ctx context.Context, st store.Store, w io.Writer) error {
	users, err := st.ListUsers(ctx)
	if err != nil || len(users) > 0 {
		return err
	}
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "demo", Rights: store.AllRights})
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil
		}
		return err
	}
	fmt.Fprintf(w, "created user demo with every right; its token is shown only now:\n  login: demo\n  token: %s\n", token)
	return nil
}
