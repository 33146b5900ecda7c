package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StormConfig is a reconnect storm: SSE clients that, like EventSource,
// reconnect after the gateway ends their stream and resume with the id of
// the last event they got (Last-Event-ID), across a restart of the
// gateway.
type StormConfig struct {
	Target  *Target
	Auth    Auth
	Topic   string
	Clients int
	// Before is the number of items published while every client is
	// connected, During the number published as soon as the new gateway
	// process listens (while the clients are away or reconnecting).
	Before, During int
	// RestartCmd is run with sh -c: it stops the gateway (SIGTERM), starts
	// a new one and prints the new process's pid as the last line of its
	// output once it answers /healthz.
	RestartCmd         string
	Body               BodyFormat
	ItemBytes          int
	ConnectConcurrency int
	ConnectTimeout     time.Duration
	// CatchUp bounds the wait for every client to have every item, from
	// the moment the new process listens.
	CatchUp    time.Duration
	GatewayPID int
	SourceIPs  int
	Progress   io.Writer
}

// StormResult is what a reconnect storm measured.
type StormResult struct {
	Clients         int           `json:"clients"`
	Connected       int           `json:"connected"`
	ConnectFailures Counts        `json:"connect_failures"`
	ConnectTime     time.Duration `json:"connect_time_ns"`
	Items           int           `json:"items"`
	Expected        int64         `json:"expected"`
	Received        int64         `json:"received"`
	Lost            int64         `json:"lost"`
	Duplicated      int64         `json:"duplicated"`
	// Restart is how long the restart command took (stop, then start
	// until /healthz answers).
	Restart time.Duration `json:"restart_ns"`
	NewPID  int           `json:"new_pid"`
	// CaughtUp is the time from the new process listening to the last
	// client having every item; PerClient the distribution of that time
	// over the clients.
	CaughtUp  time.Duration `json:"caught_up_ns"`
	PerClient Summary       `json:"per_client"`
	// Reconnects counts connection attempts after the first, Refused
	// those that failed (the gateway was away or refused them).
	Reconnects int64  `json:"reconnects"`
	Refused    Counts `json:"refused"`
	// RSSPeak is the new process's peak resident memory (VmHWM).
	RSSPeak int64 `json:"rss_peak"`
}

// OK reports whether every client got every item exactly once.
func (r StormResult) OK() bool {
	return r.Connected == r.Clients && r.Lost == 0 && r.Duplicated == 0 && r.NewPID > 0
}

func (r StormResult) String() string {
	s := fmt.Sprintf("storm: %d/%d SSE clients connected in %s", r.Connected, r.Clients, r.ConnectTime.Round(time.Millisecond))
	if len(r.ConnectFailures) > 0 {
		s += fmt.Sprintf(" (failures: %s)", r.ConnectFailures)
	}
	s += fmt.Sprintf("\n  gateway restarted in %s (new pid %d); %d items in all", r.Restart.Round(time.Millisecond), r.NewPID, r.Items)
	s += fmt.Sprintf("\n  every client caught up %s after the new process listened; per client %s", r.CaughtUp.Round(time.Millisecond), r.PerClient)
	s += fmt.Sprintf("\n  deliveries %d of %d: lost %d, duplicated %d; reconnects %d", r.Received, r.Expected, r.Lost, r.Duplicated, r.Reconnects)
	if len(r.Refused) > 0 {
		s += fmt.Sprintf(" (refused: %s)", r.Refused)
	}
	if r.RSSPeak > 0 {
		s += fmt.Sprintf("\n  new gateway peak RSS %s", mib(r.RSSPeak))
	}
	return s
}

// stormClient is one EventSource-like client.
type stormClient struct {
	seen     []uint64
	distinct int64
	dups     int64
	lastID   string
	retry    time.Duration
	done     int64 // Unix ns it had every item; 0 before
	ready    bool
}

type stormRun struct {
	cfg    StormConfig
	marker Marker
	dialer *Dialer
	items  int

	clients []stormClient
	readyN  atomic.Int64
	doneN   atomic.Int64
	reconn  atomic.Int64

	mu       sync.Mutex
	refused  Counts
	failures Counts
	allDone  chan struct{}
	doneOnce sync.Once
	ctx      context.Context
}

// RunStorm connects the clients, publishes Before items, restarts the
// gateway, publishes During items and waits for every client to have them
// all.
func RunStorm(ctx context.Context, cfg StormConfig) (StormResult, error) {
	res := StormResult{Clients: cfg.Clients, Items: cfg.Before + cfg.During}
	if cfg.Clients < 1 || cfg.Before < 1 || cfg.During < 0 || cfg.RestartCmd == "" {
		return res, errors.New("a storm needs --clients, --before (at least 1) and --restart-cmd")
	}
	if cfg.ConnectConcurrency < 1 {
		cfg.ConnectConcurrency = 200
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 60 * time.Second
	}
	if cfg.CatchUp <= 0 {
		cfg.CatchUp = 60 * time.Second
	}
	if cfg.Body == "" {
		cfg.Body = BodyAtom
	}
	if _, err := RaiseNoFile(cfg.Clients + 128); err != nil {
		return res, err
	}
	hub := NewHub(cfg.Target, cfg.Auth, 1)
	defer hub.Close()
	if err := prepareTopic(ctx, hub, StreamConfig{Topic: cfg.Topic, Body: cfg.Body, ItemBytes: cfg.ItemBytes}); err != nil {
		return res, err
	}
	d, err := newDialer(cfg.Target, cfg.SourceIPs, cfg.Clients)
	if err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &stormRun{
		cfg: cfg, marker: NewMarker(NewRunID()), dialer: d, items: res.Items,
		clients: make([]stormClient, cfg.Clients),
		refused: Counts{}, failures: Counts{}, allDone: make(chan struct{}), ctx: runCtx,
	}
	words := (r.items + 63) / 64
	bits := make([]uint64, words*cfg.Clients)
	for i := range r.clients {
		r.clients[i].seen = bits[i*words : (i+1)*words : (i+1)*words]
	}

	// Connect every client.
	start := time.Now()
	sem := make(chan struct{}, cfg.ConnectConcurrency)
	var wg sync.WaitGroup
	for i := range r.clients {
		wg.Go(func() { r.run(&r.clients[i], sem) })
	}
	deadline := time.Now().Add(cfg.ConnectTimeout)
	for int(r.readyN.Load()) < cfg.Clients && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond) // polling a counter; bounded by --connect-timeout
	}
	res.ConnectTime = time.Since(start)
	res.Connected = int(r.readyN.Load())
	r.mu.Lock()
	res.ConnectFailures = r.failures
	r.mu.Unlock()
	r.progress("%d/%d clients connected in %s", res.Connected, cfg.Clients, res.ConnectTime.Round(time.Millisecond))
	if res.Connected < cfg.Clients {
		cancel()
		wg.Wait()
		return res, fmt.Errorf("only %d of %d clients connected within %s", res.Connected, cfg.Clients, cfg.ConnectTimeout)
	}

	// Items while everyone listens.
	if err := r.publish(ctx, hub, 0, cfg.Before); err != nil {
		cancel()
		wg.Wait()
		return res, err
	}
	r.progress("published %d items; restarting the gateway", cfg.Before)

	// The restart.
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, "sh", "-c", cfg.RestartCmd).Output()
	res.Restart = time.Since(t0)
	listening := time.Now()
	if err != nil {
		cancel()
		wg.Wait()
		return res, fmt.Errorf("--restart-cmd: %w", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) > 0 {
		res.NewPID, _ = strconv.Atoi(fields[len(fields)-1])
	}
	hub.Close()
	hub = NewHub(cfg.Target, cfg.Auth, 1)
	if err := r.publish(ctx, hub, cfg.Before, cfg.During); err != nil {
		cancel()
		wg.Wait()
		return res, err
	}
	r.progress("new gateway (pid %d) listening after %s; published %d more items", res.NewPID, res.Restart.Round(time.Millisecond), cfg.During)

	// Wait for every client to have everything.
	limit := time.NewTimer(cfg.CatchUp)
	tick := time.NewTicker(2 * time.Second)
wait:
	for {
		select {
		case <-r.allDone:
			break wait
		case <-limit.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
			r.progress("  %d of %d clients have every item", r.doneN.Load(), cfg.Clients)
		}
	}
	limit.Stop()
	tick.Stop()
	if res.NewPID > 0 {
		res.RSSPeak, _ = peakRSS(res.NewPID)
	}
	cancel()
	wg.Wait()

	var last int64
	per := make(Latencies, 0, cfg.Clients)
	for i := range r.clients {
		c := &r.clients[i]
		res.Received += c.distinct
		res.Duplicated += c.dups
		if c.done > 0 {
			last = max(last, c.done)
			per = append(per, time.Duration(c.done-listening.UnixNano()))
		}
	}
	res.Expected = int64(cfg.Clients) * int64(r.items)
	res.Lost = res.Expected - res.Received
	if last > 0 {
		res.CaughtUp = time.Duration(last - listening.UnixNano())
	}
	res.PerClient = per.Summarize()
	res.Reconnects = r.reconn.Load()
	r.mu.Lock()
	res.Refused = r.refused
	r.mu.Unlock()
	return res, ctx.Err()
}

func (r *stormRun) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
	}
}

// publish fat-pings items first..first+n-1, one per ping, retrying a
// gateway that is not up yet for a few seconds.
func (r *stormRun) publish(ctx context.Context, hub *Hub, first, n int) error {
	for seq := first; seq < first+n; seq++ {
		entries := []Entry{{Seq: seq, PubNanos: time.Now().UnixNano()}}
		body := FeedBody(nil, r.cfg.Body, r.marker, entries, r.cfg.ItemBytes)
		var err error
		for attempt := 0; attempt < 50; attempt++ {
			if _, err = hub.FatPing(ctx, r.cfg.Topic, r.cfg.Body, body); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // the gateway may still be starting; bounded to 5 s
		}
		if err != nil {
			return fmt.Errorf("publishing item %d: %w", seq, err)
		}
	}
	return nil
}

// run is one client: connect (with Last-Event-ID once it has one), read
// events until the stream ends, wait the retry delay, again; until it has
// every item or the run ends.
func (r *stormRun) run(c *stormClient, sem chan struct{}) {
	c.retry = 3 * time.Second
	first := true
	for r.ctx.Err() == nil && c.done == 0 {
		if !first {
			r.reconn.Add(1)
			t := time.NewTimer(c.retry)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		release := func() {}
		if first {
			// The first connections are made a few at a time; a slot is
			// freed once the client has its first answer.
			select {
			case sem <- struct{}{}:
			case <-r.ctx.Done():
				return
			}
			var once sync.Once
			release = func() { once.Do(func() { <-sem }) }
		}
		err := r.session(c, release)
		release()
		if err != nil && !errors.Is(err, errCaughtUp) {
			r.mu.Lock()
			if c.ready {
				r.refused[errKind(err)]++
			} else {
				r.failures[errKind(err)]++
			}
			r.mu.Unlock()
			if !c.ready {
				return
			}
		}
		first = false
	}
}

var errCaughtUp = errors.New("caught up")

// session is one connection of a client; ready is called at its first
// event.
func (r *stormRun) session(c *stormClient, ready func()) error {
	q := r.query()
	extra := []string{"Accept", "text/event-stream"}
	if c.lastID != "" {
		extra = append(extra, "Last-Event-ID", c.lastID)
	}
	req := BuildGet(r.cfg.Target, q, r.cfg.Auth, extra...)
	dctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	nc, err := r.dialer.Dial(dctx)
	cancel()
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(r.ctx, func() { nc.Close() })
	defer stop()
	lr, err := openStream(nc, req)
	if err != nil {
		return err
	}
	for {
		line, err := lr.Line()
		if err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil // the gateway ended the stream: reconnect
			}
			return err
		}
		switch {
		case bytes.HasPrefix(line, []byte("data:")):
			if !c.ready {
				c.ready = true
				r.readyN.Add(1)
			}
			ready()
			r.deliver(c, line)
			if c.done != 0 {
				return errCaughtUp
			}
		case bytes.HasPrefix(line, []byte("id:")):
			c.lastID = string(bytes.TrimSpace(line[3:]))
		case bytes.HasPrefix(line, []byte("retry:")):
			if ms, err := strconv.Atoi(string(bytes.TrimSpace(line[6:]))); err == nil && ms > 0 {
				c.retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

func (r *stormRun) query() map[string][]string {
	return map[string][]string{"hub.mode": {"retrieve"}, "hub.topic": {r.cfg.Topic}, "count": {"1"}}
}

func (r *stormRun) deliver(c *stormClient, msg []byte) {
	r.marker.Scan(msg, func(seq int, _ int64) {
		if seq < 0 || seq >= r.items {
			return
		}
		w, bit := seq/64, uint64(1)<<(seq%64)
		if c.seen[w]&bit != 0 {
			c.dups++
			return
		}
		c.seen[w] |= bit
		c.distinct++
		if c.distinct == int64(r.items) {
			c.done = time.Now().UnixNano()
			if r.doneN.Add(1) == int64(len(r.clients)) {
				r.doneOnce.Do(func() { close(r.allDone) })
			}
		}
	})
}

// peakRSS returns the peak resident set size of pid (VmHWM), in bytes.
func peakRSS(pid int) (int64, error) {
	return procStatusKB(pid, "VmHWM:")
}
