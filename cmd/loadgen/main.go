// Command loadgen is feedgate's load generator. It talks only to loopback
// addresses and every run stops by itself.
//
//	loadgen seed      subscribe a user to a topic and fat-ping items into it
//	loadgen retrieve  hub.mode=retrieve throughput (optionally against raw Redis)
//	loadgen redis-raw go-redis XREVRANGE throughput, the ceiling for retrieve on Redis
//	loadgen stream    live delivery: N NDJSON/SSE/WebSocket/long-poll clients, M items
//	loadgen storm     SSE clients resuming by Last-Event-ID across a gateway restart
//
// Run `loadgen <command> -h` for the flags; BENCHMARKS.md has the runs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/feedgate/feedgate/internal/loadgen"
)

const usage = `loadgen: feedgate's load generator (loopback only; every run stops by itself)

Commands:
  seed       subscribe --login to --topic and fat-ping --items new items into it
  retrieve   hammer hub.mode=retrieve with --conns keep-alive connections;
             --compare-redis also runs redis-raw and prints the ratio
  redis-raw  go-redis XREVRANGE <topic's items key> + - COUNT n with --conns connections
  stream     open --clients live clients (--kind ndjson|sse|ws|poll), publish --items
             by fat ping and report deliveries/s, latency, lost, duplicated, drops
             and the gateway's memory per connection; with an https --url (and
             --ca) SSE and NDJSON clients share HTTP/2 connections over TLS,
             --h2-streams per connection
  storm      a reconnect storm: --clients SSE clients, --before items, the gateway
             restarted by --restart-cmd, --during items; every client resumes by
             Last-Event-ID; reports the time to the last client caught up
  appends    acknowledged fat-ping appends per second: --conns publishers over
             --topics topics through one or more gateways (--url A,B); with
             --redis-addrs, Redis commands, bytes and CPU per append

  free-port  print a free TCP port on 127.0.0.1 (for scripts)

Run 'loadgen <command> -h' for its flags.
`

// exitUnclean is the exit status of a stream run that lost, duplicated or
// dropped something.
const exitUnclean = 3

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	code := 0
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "seed":
		err = seed(ctx, args)
	case "retrieve":
		err = retrieve(ctx, args)
	case "redis-raw":
		err = redisRaw(ctx, args)
	case "stream":
		code, err = stream(ctx, args)
	case "storm":
		code, err = storm(ctx, args)
	case "appends":
		err = appends(ctx, args)
	case "free-port":
		err = freePort()
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "loadgen: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// gatewayFlags are the flags every command talking to the gateway has.
type gatewayFlags struct {
	url, login, token, topic, ca string
}

func (g *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.url, "url", "http://127.0.0.1:8080", "gateway base URL (loopback only)")
	fs.StringVar(&g.login, "login", "bench", "login of the user")
	fs.StringVar(&g.token, "token", os.Getenv("LOADGEN_TOKEN"), "the user's token (default $LOADGEN_TOKEN); the user needs rights subscribe, retrieve and publish")
	fs.StringVar(&g.topic, "topic", "http://127.0.0.1:9/loadgen/feed", "topic URL (only a name: loadgen never fetches it)")
	fs.StringVar(&g.ca, "ca", "", "for an https --url: PEM file of the certificate the gateway serves (or its CA), the one trusted")
}

func (g *gatewayFlags) target() (*loadgen.Target, loadgen.Auth, error) {
	t, err := loadgen.ParseTarget(g.url)
	if err != nil {
		return nil, loadgen.Auth{}, err
	}
	if g.token == "" {
		return nil, loadgen.Auth{}, errors.New("--token is required (or $LOADGEN_TOKEN): create one with `gateway user add bench --rights subscribe,unsubscribe,list,retrieve,publish`")
	}
	if t.HTTPS {
		if g.ca == "" {
			return nil, loadgen.Auth{}, errors.New("an https --url needs --ca: the certificate the gateway serves (or its CA)")
		}
		if t.TLS, err = loadgen.TrustCA(g.ca); err != nil {
			return nil, loadgen.Auth{}, err
		}
	}
	return t, loadgen.Auth{Login: g.login, Token: g.token}, nil
}

func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: loadgen %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected arguments %q (flags only)", fs.Name(), fs.Args())
	}
	return nil
}

// writeJSON writes v to path ("" = nothing, "-" = stdout).
func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func seed(ctx context.Context, args []string) error {
	var g gatewayFlags
	fs := newFlags("seed", "seed --url URL --token T [--topic URL] [--items 50]")
	g.register(fs)
	items := fs.Int("items", 50, "items to fat-ping (in pings of at most 50 entries)")
	body := fs.String("body", "atom", "fat ping document: atom or json (JSON Feed)")
	size := fs.Int("item-bytes", 200, "text content of each item, in bytes")
	if err := parse(fs, args); err != nil {
		return err
	}
	t, auth, err := g.target()
	if err != nil {
		return err
	}
	bf, err := bodyFormat(*body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	hub := loadgen.NewHub(t, auth, 1)
	defer hub.Close()
	stored, err := hub.Seed(ctx, g.topic, *items, bf, *size)
	if err != nil {
		return err
	}
	a, err := hub.Retrieve(ctx, g.topic, 1)
	if err != nil {
		return err
	}
	fmt.Printf("subscribed %s to %s and stored %d of %d items; newest cursor %s\n", g.login, g.topic, stored, *items, a.Status.Cursor)
	return nil
}

func bodyFormat(s string) (loadgen.BodyFormat, error) {
	switch f := loadgen.BodyFormat(s); f {
	case loadgen.BodyAtom, loadgen.BodyJSON:
		return f, nil
	}
	return "", fmt.Errorf("--body %q: use atom or json", s)
}

// redisFlags are the raw Redis run's flags.
type redisFlags struct {
	url, key string
	pid      int
	pipeline bool
}

func (r *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.url, "redis-url", "", "Redis URL of the gateway's store (loopback only)")
	fs.StringVar(&r.key, "key", "", "stream key to read (default: the gateway's items key of --topic)")
	fs.IntVar(&r.pid, "redis-pid", 0, "pid of redis-server, to report its CPU use (0: not reported)")
	fs.BoolVar(&r.pipeline, "redis-pipeline", false, "pipeline each XREVRANGE with MGET of the topic's seq and meta keys, as the gateway's read does")
}

func retrieve(ctx context.Context, args []string) error {
	var g gatewayFlags
	var rf redisFlags
	fs := newFlags("retrieve", "retrieve --url URL --token T [--topic URL] [--conns 50 --duration 10s] [--compare-redis --redis-url URL]")
	g.register(fs)
	rf.register(fs)
	conns := fs.Int("conns", 50, "concurrent keep-alive connections, one request in flight each")
	dur := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before it")
	format := fs.String("format", "json", "format parameter: json or atom")
	count := fs.Int("count", 10, "count parameter")
	client := fs.String("client", "raw", "raw (lean HTTP/1.1 client, low CPU) or nethttp (net/http Transport)")
	pid := fs.Int("gateway-pid", 0, "gateway pid, to report its CPU use (0: not reported)")
	sources := fs.Int("source-ips", 1, "spread connections over this many source addresses 127.0.0.2...")
	compare := fs.Bool("compare-redis", false, "also run redis-raw with the same --conns and --duration and print the ratio")
	rounds := fs.Int("rounds", 1, "repeat the measure (alternating with redis-raw) and print medians")
	jsonOut := fs.String("json", "", "also write the results as JSON to this file (- for stdout)")
	if err := parse(fs, args); err != nil {
		return err
	}
	t, auth, err := g.target()
	if err != nil {
		return err
	}
	if err := t.PlainHTTP("retrieve"); err != nil {
		return err
	}
	if *compare && rf.url == "" {
		return errors.New("--compare-redis needs --redis-url")
	}
	if *rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(2**rounds)*(*warmup+*dur)+time.Minute)
	defer cancel()
	// Rounds alternate the gateway and raw Redis, so that other work on a
	// shared machine weighs on both alike; the summary takes medians.
	var gw, raw []loadgen.RetrieveResult
	for i := range *rounds {
		if *rounds > 1 {
			fmt.Printf("--- round %d of %d\n", i+1, *rounds)
		}
		res, err := loadgen.RunRetrieve(ctx, loadgen.RetrieveConfig{
			Target: t, Auth: auth, Topic: g.topic, Conns: *conns, Warmup: *warmup, Duration: *dur,
			Format: *format, Count: *count, Client: *client, GatewayPID: *pid, SourceIPs: *sources,
		})
		if err != nil {
			return err
		}
		fmt.Println(res)
		gw = append(gw, res)
		if !*compare {
			continue
		}
		rr, err := loadgen.RunRedisRaw(ctx, loadgen.RedisConfig{
			URL: rf.url, Key: rf.key, Topic: g.topic, Conns: *conns, Count: int64(*count),
			Warmup: *warmup, Duration: *dur, RedisPID: rf.pid, Pipeline: rf.pipeline,
		})
		if err != nil {
			return err
		}
		fmt.Println(rr)
		raw = append(raw, rr)
		if rr.PerSecond > 0 {
			fmt.Printf("ratio retrieve / raw Redis: %.0f / %.0f = %.2f\n", res.PerSecond, rr.PerSecond, res.PerSecond/rr.PerSecond)
		}
	}
	out := map[string]any{"retrieve": gw}
	mg := medianRate(gw)
	if *rounds > 1 {
		fmt.Printf("=== median of %d rounds: retrieve %.0f req/s", *rounds, mg)
	}
	if *compare {
		mr := medianRate(raw)
		out["redis_raw"] = raw
		if mr > 0 {
			out["ratio"] = mg / mr
			if *rounds > 1 {
				fmt.Printf(", raw Redis %.0f req/s, ratio %.2f", mr, mg/mr)
			}
		}
		// Each round's ratio compares two measures taken back to back,
		// which a machine whose speed drifts between rounds moves less.
		var ratios []float64
		for i := range raw {
			if raw[i].PerSecond > 0 {
				ratios = append(ratios, gw[i].PerSecond/raw[i].PerSecond)
			}
		}
		if len(ratios) > 0 {
			out["round_ratios"] = slices.Clone(ratios)
			m := median(ratios)
			out["median_round_ratio"] = m
			if *rounds > 1 {
				fmt.Printf("; median of the rounds' ratios %.2f", m)
			}
		}
	}
	if *rounds > 1 {
		fmt.Println()
	}
	return writeJSON(*jsonOut, out)
}

func redisRaw(ctx context.Context, args []string) error {
	var rf redisFlags
	fs := newFlags("redis-raw", "redis-raw --redis-url URL (--topic URL | --key K) [--conns 50 --duration 10s]")
	rf.register(fs)
	topic := fs.String("topic", "http://127.0.0.1:9/loadgen/feed", "topic whose items key to read (unless --key)")
	conns := fs.Int("conns", 50, "concurrent requests (pool of as many connections)")
	dur := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before it")
	count := fs.Int64("count", 10, "COUNT of XREVRANGE")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file (- for stdout)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if rf.url == "" {
		return errors.New("--redis-url is required")
	}
	ctx, cancel := context.WithTimeout(ctx, *warmup+*dur+time.Minute)
	defer cancel()
	res, err := loadgen.RunRedisRaw(ctx, loadgen.RedisConfig{
		URL: rf.url, Key: rf.key, Topic: *topic, Conns: *conns, Count: *count,
		Warmup: *warmup, Duration: *dur, RedisPID: rf.pid, Pipeline: rf.pipeline,
	})
	if err != nil {
		return err
	}
	fmt.Println(res)
	return writeJSON(*jsonOut, res)
}

func stream(ctx context.Context, args []string) (int, error) {
	var g gatewayFlags
	fs := newFlags("stream", "stream --kind ndjson|sse|ws|poll --clients N --items M [--rate R] --url URL --token T [--gateway-pid PID]")
	g.register(fs)
	kind := fs.String("kind", "ndjson", "client kind: ndjson (wait=stream), sse, ws (WebSocket) or poll (wait=poll)")
	clients := fs.Int("clients", 100, "concurrent clients")
	items := fs.Int("items", 10, "items to publish once all clients are connected (0: idle run, needs --hold)")
	rate := fs.Float64("rate", 0, "items per second (0: back-to-back)")
	batch := fs.Int("batch", 1, "entries per fat ping")
	publishers := fs.Int("publishers", 1, "concurrent fat ping connections")
	hold := fs.Duration("hold", 0, "keep the connections idle this long after they are all connected (before publishing)")
	settle := fs.Duration("settle", 2*time.Second, "pause after the last connection before reading the gateway's memory")
	connTimeout := fs.Duration("connect-timeout", 120*time.Second, "time allowed to open all clients")
	drain := fs.Duration("drain", 10*time.Second, "time allowed for deliveries after the last publish")
	connConc := fs.Int("connect-concurrency", 100, "connection attempts in flight")
	pid := fs.Int("gateway-pid", 0, "gateway pid: its RSS (/proc/PID/status) and CPU are reported (0: not reported)")
	sources := fs.Int("source-ips", 0, "spread connections over this many source addresses 127.0.0.2... (0: one per 2000 clients)")
	wsPath := fs.String("ws-path", "", "WebSocket path (default: the hub endpoint, as in --url)")
	pollTimeout := fs.Int("poll-timeout", 30, "timeout parameter of long-polls, seconds")
	count := fs.Int("count", 1, "count parameter of the clients' requests (items in each first answer)")
	h2Streams := fs.Int("h2-streams", loadgen.DefaultH2Streams, "with an https --url: clients sharing one HTTP/2 connection (ndjson and sse only)")
	body := fs.String("body", "atom", "fat ping document: atom or json (JSON Feed)")
	size := fs.Int("item-bytes", 200, "text content of each item, in bytes")
	timeout := fs.Duration("timeout", 0, "hard limit of the whole run (default: computed from the other flags)")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file (- for stdout)")
	also := fs.String("also-url", "", "more gateways on the same store (URL,...): ndjson and sse clients spread over --url and them")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	t, auth, err := g.target()
	if err != nil {
		return 0, err
	}
	var alsoTargets []*loadgen.Target
	for _, u := range strings.FieldsFunc(*also, func(r rune) bool { return r == ',' }) {
		at, err := loadgen.ParseTarget(strings.TrimSpace(u))
		if err != nil {
			return 0, err
		}
		alsoTargets = append(alsoTargets, at)
	}
	k, err := loadgen.ParseKind(*kind)
	if err != nil {
		return 0, err
	}
	bf, err := bodyFormat(*body)
	if err != nil {
		return 0, err
	}
	if *timeout <= 0 {
		publishing := time.Duration(*items) * 50 * time.Millisecond // back-to-back: generous
		if *rate > 0 {
			publishing = time.Duration(float64(*items) / *rate * float64(time.Second))
		}
		*timeout = *connTimeout + *settle + *hold + publishing + *drain + time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var progress io.Writer = os.Stderr
	res, err := loadgen.RunStream(ctx, loadgen.StreamConfig{
		Target: t, Also: alsoTargets, Auth: auth, Topic: g.topic, Kind: k, Clients: *clients, Items: *items, Rate: *rate,
		Batch: *batch, PublishConns: *publishers, Body: bf, ItemBytes: *size, Count: *count,
		Hold: *hold, Settle: *settle, ConnectTimeout: *connTimeout, Drain: *drain,
		ConnectConcurrency: *connConc, GatewayPID: *pid, SourceIPs: *sources,
		WSPath: *wsPath, PollTimeout: *pollTimeout, H2Streams: *h2Streams, Progress: progress,
	})
	if res.Connected > 0 || err == nil {
		fmt.Println(res)
	}
	if err != nil {
		return 0, err
	}
	if err := writeJSON(*jsonOut, res); err != nil {
		return 0, err
	}
	if !res.OK() {
		return exitUnclean, nil
	}
	return 0, nil
}

func storm(ctx context.Context, args []string) (int, error) {
	var g gatewayFlags
	fs := newFlags("storm", "storm --clients N --before B --during D --restart-cmd CMD --url URL --token T")
	g.register(fs)
	clients := fs.Int("clients", 1000, "SSE clients")
	before := fs.Int("before", 5, "items published while every client is connected")
	during := fs.Int("during", 5, "items published as soon as the new gateway listens")
	restart := fs.String("restart-cmd", "", "shell command that stops the gateway (SIGTERM), starts a new one and prints its pid when /healthz answers")
	connTimeout := fs.Duration("connect-timeout", 120*time.Second, "time allowed to open all clients")
	connConc := fs.Int("connect-concurrency", 100, "connection attempts in flight")
	catchUp := fs.Duration("catch-up", 60*time.Second, "time allowed, from the new process listening, for every client to have every item")
	sources := fs.Int("source-ips", 0, "spread connections over this many source addresses 127.0.0.2... (0: one per 2000 clients)")
	body := fs.String("body", "atom", "fat ping document: atom or json (JSON Feed)")
	size := fs.Int("item-bytes", 200, "text content of each item, in bytes")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file (- for stdout)")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	t, auth, err := g.target()
	if err != nil {
		return 0, err
	}
	if err := t.PlainHTTP("storm"); err != nil {
		return 0, err
	}
	bf, err := bodyFormat(*body)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, *connTimeout+*catchUp+2*time.Minute)
	defer cancel()
	res, err := loadgen.RunStorm(ctx, loadgen.StormConfig{
		Target: t, Auth: auth, Topic: g.topic, Clients: *clients, Before: *before, During: *during,
		RestartCmd: *restart, Body: bf, ItemBytes: *size, ConnectConcurrency: *connConc,
		ConnectTimeout: *connTimeout, CatchUp: *catchUp, SourceIPs: *sources, Progress: os.Stderr,
	})
	fmt.Println(res)
	if err != nil {
		return 0, err
	}
	if err := writeJSON(*jsonOut, res); err != nil {
		return 0, err
	}
	if !res.OK() {
		return exitUnclean, nil
	}
	return 0, nil
}

// freePort prints a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	return nil
}

// medianRate is the median of the runs' request rates.
func medianRate(rs []loadgen.RetrieveResult) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = r.PerSecond
	}
	return median(v)
}

// median is the median of v (0 when empty); v is sorted in place.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func appends(ctx context.Context, args []string) error {
	var g gatewayFlags
	fs := newFlags("appends", "appends --url URL[,URL...] --token T [--conns 50 --topics 1000 --duration 10s] [--redis-addrs HOST:PORT,...]")
	g.register(fs)
	conns := fs.Int("conns", 50, "publishers, one fat ping (one new item) in flight each")
	topics := fs.Int("topics", 1000, "topics the items go to, in turn (spread over Redis Cluster slots)")
	dur := fs.Duration("duration", 10*time.Second, "measured time")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before it")
	size := fs.Int("item-bytes", 200, "text content of each item, in bytes")
	listeners := fs.Int("listeners", 0, "idle NDJSON streams opened on the topics first, spread over the gateways")
	redisAddrs := fs.String("redis-addrs", "", "Redis servers (every master) to report commands, bytes and CPU per append from")
	redisPIDs := fs.String("redis-pids", "", "their pids, for their CPU time")
	gwPIDs := fs.String("gateway-pids", "", "the gateways' pids, for their CPU time")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file (- for stdout)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var targets []*loadgen.Target
	var auth loadgen.Auth
	for _, u := range strings.Split(g.url, ",") {
		one := g
		one.url = strings.TrimSpace(u)
		t, a, err := one.target()
		if err != nil {
			return err
		}
		if err := t.PlainHTTP("appends"); err != nil {
			return err
		}
		targets, auth = append(targets, t), a
	}
	pids := func(s string) ([]int, error) {
		var out []int
		for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' }) {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("%q is not a pid", f)
			}
			out = append(out, n)
		}
		return out, nil
	}
	rp, err := pids(*redisPIDs)
	if err != nil {
		return err
	}
	gp, err := pids(*gwPIDs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *warmup+*dur+5*time.Minute)
	defer cancel()
	res, err := loadgen.RunAppends(ctx, loadgen.AppendsConfig{
		Targets: targets, Auth: auth, Conns: *conns, Topics: *topics, Duration: *dur, Warmup: *warmup,
		ItemBytes: *size, Listeners: *listeners, RedisAddrs: strings.FieldsFunc(*redisAddrs, func(r rune) bool { return r == ',' }),
		RedisPIDs: rp, GatewayPIDs: gp,
	})
	if err != nil {
		return err
	}
	fmt.Print(res)
	return writeJSON(*jsonOut, res)
}
