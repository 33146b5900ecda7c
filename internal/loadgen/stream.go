package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is a live delivery form.
type Kind string

// The live delivery forms a stream run can use.
const (
	KindNDJSON Kind = "ndjson"
	KindSSE    Kind = "sse"
	KindWS     Kind = "ws"
	KindPoll   Kind = "poll"
)

// ParseKind checks a --kind value.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindNDJSON, KindSSE, KindWS, KindPoll:
		return k, nil
	}
	return "", fmt.Errorf("--kind %q: use ndjson, sse, ws or poll", s)
}

// StreamConfig is one live delivery run.
type StreamConfig struct {
	Target *Target
	// Also are more gateways (nodes on the same store): NDJSON and SSE
	// clients spread over Target and them in turn; items are published
	// through Target.
	Also    []*Target
	Auth    Auth
	Topic   string
	Kind    Kind
	Clients int
	// Items to publish once every client is connected (0: idle run).
	Items int
	// Rate in items per second; 0 publishes back-to-back.
	Rate float64
	// Batch is the number of entries per fat ping (default 1).
	Batch int
	// PublishConns is the number of concurrent publishers (default 1).
	PublishConns int
	Body         BodyFormat
	ItemBytes    int
	// Count is the count parameter of the clients' requests (the history
	// each one gets first).
	Count int
	// Hold keeps the connections open (idle) this long after they are all
	// connected, before publishing or, for idle runs, before the end.
	Hold time.Duration
	// Settle is the pause after the last connection before the memory
	// reading.
	Settle         time.Duration
	ConnectTimeout time.Duration
	// Drain is how long to wait for deliveries after the last publish.
	Drain time.Duration
	// ConnectConcurrency bounds connection attempts in flight.
	ConnectConcurrency int
	GatewayPID         int
	SourceIPs          int
	// WSPath is the WebSocket path ("" = the hub endpoint's path).
	WSPath string
	// PollTimeout is the timeout parameter of long-polls, in seconds.
	PollTimeout int
	// H2Streams is how many clients share one HTTP/2 connection when the
	// target is https (default DefaultH2Streams).
	H2Streams int
	// Progress, if set, receives progress lines.
	Progress io.Writer
}

// StreamResult is what a live delivery run measured.
type StreamResult struct {
	Kind            Kind          `json:"kind"`
	Clients         int           `json:"clients"`
	Connected       int           `json:"connected"`
	ConnectFailures Counts        `json:"connect_failures"`
	ConnectTime     time.Duration `json:"connect_time_ns"`
	// H2Conns is the HTTP/2 connections the clients shared (https runs;
	// 0: one HTTP/1.1 connection per client).
	H2Conns int `json:"h2_conns,omitempty"`

	Items         int     `json:"items"`
	Rate          float64 `json:"rate"`
	Published     int     `json:"published"`
	PublishErrors Counts  `json:"publish_errors"`
	PublishRTT    Summary `json:"publish_rtt"`

	Expected   int64  `json:"expected"`
	Received   int64  `json:"received"` // distinct (client, item) pairs
	Lost       int64  `json:"lost"`
	Duplicated int64  `json:"duplicated"`
	Dropped    int    `json:"dropped"`
	DropReason Counts `json:"drop_reasons"`
	Reconnects int    `json:"reconnects"` // poll: connections re-opened

	// Window runs from the first publish to the last delivery.
	Window        time.Duration `json:"window_ns"`
	DeliveriesSec float64       `json:"deliveries_per_second"`
	Latency       Summary       `json:"latency"`

	RSSBefore    int64   `json:"rss_before"`
	RSSConnected int64   `json:"rss_connected"`
	RSSEnd       int64   `json:"rss_end"`
	RSSPerConn   float64 `json:"rss_per_conn"` // (connected - before) / connected, bytes
	CPU          CPUUse  `json:"cpu"`
}

// OK reports whether the run met the invariants: everyone connected,
// nothing lost, duplicated or dropped.
func (r StreamResult) OK() bool {
	return r.Connected == r.Clients && r.Lost == 0 && r.Duplicated == 0 && r.Dropped == 0 &&
		r.Published == r.Items && r.PublishErrors.Total() == 0
}

func (r StreamResult) String() string {
	s := fmt.Sprintf("%s: %d/%d clients connected in %s", r.Kind, r.Connected, r.Clients, r.ConnectTime.Round(time.Millisecond))
	if r.H2Conns > 0 {
		s += fmt.Sprintf(", over TLS and HTTP/2 on %d connections", r.H2Conns)
	}
	if len(r.ConnectFailures) > 0 {
		s += fmt.Sprintf(" (failures: %s)", r.ConnectFailures)
	}
	if r.Items > 0 {
		rate := "back-to-back"
		if r.Rate > 0 {
			rate = fmt.Sprintf("%g/s", r.Rate)
		}
		s += fmt.Sprintf("\n  published %d/%d items %s (fat ping round trip %s)", r.Published, r.Items, rate, r.PublishRTT)
		if len(r.PublishErrors) > 0 {
			s += fmt.Sprintf("\n  publish errors: %s", r.PublishErrors)
		}
		s += fmt.Sprintf("\n  deliveries %d of %d expected in %s: %.0f deliveries/s", r.Received+r.Duplicated, r.Expected, r.Window.Round(time.Millisecond), r.DeliveriesSec)
		s += fmt.Sprintf("\n  lost %d, duplicated %d, dropped connections %d", r.Lost, r.Duplicated, r.Dropped)
		if len(r.DropReason) > 0 {
			s += fmt.Sprintf(" (%s)", r.DropReason)
		}
		if r.Reconnects > 0 {
			s += fmt.Sprintf(", poll reconnects %d", r.Reconnects)
		}
		s += fmt.Sprintf("\n  publish→client latency %s", r.Latency)
	} else {
		s += fmt.Sprintf("\n  idle; dropped connections %d", r.Dropped)
		if len(r.DropReason) > 0 {
			s += fmt.Sprintf(" (%s)", r.DropReason)
		}
	}
	if r.RSSBefore > 0 {
		s += fmt.Sprintf("\n  gateway RSS: before %s, connected %s, end %s; %.1f KiB per connection",
			mib(r.RSSBefore), mib(r.RSSConnected), mib(r.RSSEnd), r.RSSPerConn/1024)
	}
	if c := r.CPU.String(); c != "" {
		s += "\n  cpu during delivery: " + c
		if d := r.Received + r.Duplicated; d > 0 && r.CPU.Server > 0 {
			s += fmt.Sprintf("\n  %s CPU per delivery %.2f µs, %.2f write syscalls per delivery",
				r.CPU.Name, float64(r.CPU.Server.Nanoseconds())/1e3/float64(d), float64(r.CPU.ServerWrites)/float64(d))
		}
	}
	return s
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// client is one connection's state; only its own goroutine touches it
// until the run ends.
type client struct {
	node     int      // index of the gateway it talks to (Target, then Also)
	seen     []uint64 // bitset of item seqs received
	lat      Latencies
	distinct int64
	dups     int64
	lastRecv int64 // Unix ns of the last delivery
	dropped  error
	reconn   int
	ready    bool
}

// streamRun is the shared state of a run.
type streamRun struct {
	cfg    StreamConfig
	marker Marker
	dialer *Dialer
	// nodes are the dialers of cfg.Also, for clients whose node > 0.
	nodes []*Dialer
	h2    *h2Pool // https targets: the shared HTTP/2 connections

	clients []client
	sem     chan struct{}

	mu        sync.Mutex
	phaseOver bool
	failures  Counts
	readyN    atomic.Int64

	expected atomic.Int64 // total distinct deliveries that end the run
	got      atomic.Int64
	allDone  chan struct{}
	doneOnce sync.Once

	connCtx context.Context // ends with the connect phase
	runCtx  context.Context // ends with the run
}

// connected marks c ready unless the connect phase is over.
func (r *streamRun) connected(c *client) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phaseOver {
		return false
	}
	c.ready = true
	r.readyN.Add(1)
	return true
}

func (r *streamRun) fail(reason string) {
	r.mu.Lock()
	r.failures[reason]++
	r.mu.Unlock()
}

// deliver records the run's items found in msg, received at now.
func (r *streamRun) deliver(c *client, msg []byte, now int64) {
	r.marker.Scan(msg, func(seq int, pub int64) {
		if seq < 0 || seq >= r.cfg.Items {
			return
		}
		w, bit := seq/64, uint64(1)<<(seq%64)
		if c.seen[w]&bit != 0 {
			c.dups++
			return
		}
		c.seen[w] |= bit
		c.distinct++
		c.lastRecv = now
		if c.lat == nil {
			c.lat = make(Latencies, 0, r.cfg.Items)
		}
		c.lat = append(c.lat, time.Duration(now-pub))
		if r.got.Add(1) == r.expected.Load() {
			r.doneOnce.Do(func() { close(r.allDone) })
		}
	})
}

func (r *streamRun) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
	}
}

// RunStream opens the clients, waits until all are connected and have
// their first answer, publishes the items and counts what every client got.
func RunStream(ctx context.Context, cfg StreamConfig) (StreamResult, error) {
	res := StreamResult{Kind: cfg.Kind, Clients: cfg.Clients, Items: cfg.Items, Rate: cfg.Rate}
	if err := cfg.defaults(); err != nil {
		return res, err
	}
	if _, err := RaiseNoFile(cfg.Clients + 128); err != nil {
		return res, err
	}
	hub := NewHub(cfg.Target, cfg.Auth, cfg.PublishConns)
	defer hub.Close()
	if err := prepareTopic(ctx, hub, cfg); err != nil {
		return res, err
	}
	d, err := newDialer(cfg.Target, cfg.SourceIPs, cfg.Clients)
	if err != nil {
		return res, err
	}

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	connCtx, cancelConn := context.WithCancel(runCtx)
	defer cancelConn()
	var h2 *h2Pool
	if cfg.Target.HTTPS {
		h2 = newH2Pool(cfg.Target, d, cfg.H2Streams)
		defer h2.close()
	}
	r := &streamRun{
		cfg: cfg, marker: NewMarker(NewRunID()), dialer: d, h2: h2,
		clients:  make([]client, cfg.Clients),
		sem:      make(chan struct{}, cfg.ConnectConcurrency),
		failures: Counts{}, allDone: make(chan struct{}),
		connCtx: connCtx, runCtx: runCtx,
	}
	words := (cfg.Items + 63) / 64
	bits := make([]uint64, words*cfg.Clients)
	for i := range r.clients {
		r.clients[i].seen = bits[i*words : (i+1)*words : (i+1)*words]
	}
	if len(cfg.Also) > 0 && (cfg.Kind == KindNDJSON || cfg.Kind == KindSSE) && h2 == nil {
		for _, t := range cfg.Also {
			nd, err := newDialer(t, cfg.SourceIPs, cfg.Clients)
			if err != nil {
				return res, err
			}
			r.nodes = append(r.nodes, nd)
		}
		for i := range r.clients {
			r.clients[i].node = i % (1 + len(cfg.Also))
		}
	}

	if cfg.GatewayPID > 0 {
		if res.RSSBefore, err = RSS(cfg.GatewayPID); err != nil {
			return res, err
		}
	}

	// Connect.
	start := time.Now()
	var wg sync.WaitGroup
	for i := range r.clients {
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			r.runClient(c)
		}(&r.clients[i])
	}
	r.waitConnected(ctx, start)
	r.mu.Lock()
	r.phaseOver = true
	res.ConnectFailures = r.failures
	r.mu.Unlock()
	cancelConn()
	res.ConnectTime = time.Since(start)
	res.Connected = int(r.readyN.Load())
	if h2 != nil {
		res.H2Conns = h2.Conns()
	}
	if missing := cfg.Clients - res.Connected - res.ConnectFailures.Total(); missing > 0 {
		res.ConnectFailures["not connected within --connect-timeout"] += missing
	}
	r.progress("%d/%d clients connected in %s", res.Connected, cfg.Clients, res.ConnectTime.Round(time.Millisecond))

	sleepCtx(ctx, cfg.Settle)
	if cfg.GatewayPID > 0 {
		res.RSSConnected, _ = RSS(cfg.GatewayPID)
		if res.Connected > 0 {
			res.RSSPerConn = float64(res.RSSConnected-res.RSSBefore) / float64(res.Connected)
		}
		r.progress("gateway RSS %s before, %s with %d connections (%.1f KiB each)",
			mib(res.RSSBefore), mib(res.RSSConnected), res.Connected, res.RSSPerConn/1024)
	}
	if cfg.Hold > 0 {
		r.progress("holding %d idle connections for %s", res.Connected, cfg.Hold)
		sleepCtx(ctx, cfg.Hold)
	}

	// Publish and wait for the deliveries.
	var meter *CPUMeter
	var firstPub time.Time
	if cfg.Items > 0 && res.Connected > 0 {
		r.expected.Store(int64(res.Connected) * int64(cfg.Items))
		meter = StartCPU(cfg.GatewayPID, "gateway")
		pr := publish(ctx, hub, cfg, r.marker, r.progress)
		firstPub = pr.first
		res.Published, res.PublishErrors, res.PublishRTT = pr.published, pr.errs, pr.rtt.Summarize()
		r.progress("published %d items in %s; waiting up to %s for deliveries", pr.published, time.Since(pr.first).Round(time.Millisecond), cfg.Drain)
		t := time.NewTimer(cfg.Drain)
		tick := time.NewTicker(2 * time.Second)
	wait:
		for {
			select {
			case <-r.allDone:
				break wait
			case <-t.C:
				break wait
			case <-ctx.Done():
				break wait
			case <-tick.C:
				r.progress("  %d of %d deliveries", r.got.Load(), r.expected.Load())
			}
		}
		t.Stop()
		tick.Stop()
	}
	if cfg.GatewayPID > 0 {
		res.RSSEnd, _ = RSS(cfg.GatewayPID)
	}
	if meter != nil {
		res.CPU = meter.Stop()
	}
	cancelRun()
	wg.Wait()

	// Tally.
	var lat Latencies
	var last int64
	for i := range r.clients {
		c := &r.clients[i]
		if !c.ready {
			continue
		}
		res.Received += c.distinct
		res.Duplicated += c.dups
		res.Reconnects += c.reconn
		lat = append(lat, c.lat...)
		last = max(last, c.lastRecv)
		if c.dropped != nil {
			res.Dropped++
			if res.DropReason == nil {
				res.DropReason = Counts{}
			}
			res.DropReason[errKind(c.dropped)]++
		}
	}
	if cfg.Items > 0 {
		res.Expected = int64(res.Connected) * int64(cfg.Items)
		res.Lost = res.Expected - res.Received
		if last > 0 && !firstPub.IsZero() {
			res.Window = time.Duration(last - firstPub.UnixNano())
			if res.Window > 0 {
				res.DeliveriesSec = float64(res.Received+res.Duplicated) / res.Window.Seconds()
			}
		}
		res.Latency = lat.Summarize()
	}
	return res, ctx.Err()
}

func (cfg *StreamConfig) defaults() error {
	if cfg.Clients < 1 {
		return fmt.Errorf("--clients must be at least 1")
	}
	if cfg.Items < 0 || cfg.Rate < 0 {
		return fmt.Errorf("--items and --rate must not be negative")
	}
	if cfg.Batch < 1 {
		cfg.Batch = 1
	}
	if cfg.PublishConns < 1 {
		cfg.PublishConns = 1
	}
	if cfg.ConnectConcurrency < 1 {
		cfg.ConnectConcurrency = 200
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 60 * time.Second
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	if cfg.Count < 1 {
		cfg.Count = 1
	}
	if cfg.PollTimeout < 1 {
		cfg.PollTimeout = 30
	}
	if cfg.Body == "" {
		cfg.Body = BodyAtom
	}
	if cfg.Target != nil && cfg.Target.HTTPS {
		if cfg.Kind != KindSSE && cfg.Kind != KindNDJSON {
			return fmt.Errorf("--kind %s over https is not supported: SSE and NDJSON streams run over TLS and HTTP/2", cfg.Kind)
		}
		if cfg.Target.TLS == nil {
			return fmt.Errorf("an https --url needs --ca (the certificate the gateway serves, or its CA)")
		}
	}
	if cfg.Items == 0 && cfg.Hold <= 0 {
		return fmt.Errorf("an idle run (--items 0) needs --hold, e.g. --hold 20s")
	}
	return nil
}

// prepareTopic subscribes the user to the topic and, when the topic holds
// no items, publishes one so that first answers (and long-polls) come at
// once.
func prepareTopic(ctx context.Context, hub *Hub, cfg StreamConfig) error {
	if err := hub.Subscribe(ctx, cfg.Topic); err != nil {
		return err
	}
	a, err := hub.Retrieve(ctx, cfg.Topic, 1)
	if err != nil {
		return err
	}
	if len(a.Items) == 0 {
		if _, err := hub.Seed(ctx, cfg.Topic, 1, cfg.Body, cfg.ItemBytes); err != nil {
			return err
		}
	}
	return nil
}

func (r *streamRun) waitConnected(ctx context.Context, start time.Time) {
	deadline := time.NewTimer(r.cfg.ConnectTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastReport := start
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case now := <-tick.C:
			n := r.readyN.Load()
			r.mu.Lock()
			failed := r.failures.Total()
			r.mu.Unlock()
			if int(n)+failed >= r.cfg.Clients {
				return
			}
			if now.Sub(lastReport) >= 2*time.Second {
				lastReport = now
				r.progress("  %d/%d connected, %d failed", n, r.cfg.Clients, failed)
			}
		}
	}
}

// runClient runs one client until the run ends.
func (r *streamRun) runClient(c *client) {
	select {
	case r.sem <- struct{}{}:
	case <-r.connCtx.Done():
		return
	}
	var once sync.Once
	release := func() { once.Do(func() { <-r.sem }) }
	defer release()
	var err error
	switch r.cfg.Kind {
	case KindNDJSON, KindSSE:
		if r.h2 != nil {
			err = r.h2StreamClient(c, release)
			break
		}
		err = r.streamClient(c, release)
	case KindWS:
		err = r.wsClient(c, release)
	case KindPoll:
		err = r.pollClient(c, release)
	}
	if err == nil {
		return
	}
	if !c.ready {
		if r.connCtx.Err() == nil {
			r.fail(errKind(err))
		}
		return
	}
	if r.runCtx.Err() == nil {
		c.dropped = err
	}
}

// query is the retrieve query every client kind starts from.
func (r *streamRun) query() url.Values {
	return url.Values{
		"hub.mode":  {"retrieve"},
		"hub.topic": {r.cfg.Topic},
		"count":     {strconv.Itoa(r.cfg.Count)},
	}
}

// debugf prints when LOADGEN_DEBUG is set (for a client's first failures).
func debugf(format string, args ...any) {
	if os.Getenv("LOADGEN_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}
