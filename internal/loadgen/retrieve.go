package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// RetrieveConfig is one retrieve throughput run.
type RetrieveConfig struct {
	Target *Target
	Auth   Auth
	Topic  string
	// Conns is the number of concurrent keep-alive connections, each with
	// one request in flight.
	Conns    int
	Warmup   time.Duration // not measured
	Duration time.Duration // measured
	Format   string        // "json" or "atom"
	Count    int
	// Client is "raw" (lean HTTP/1.1, the default) or "nethttp".
	Client     string
	GatewayPID int
	SourceIPs  int
}

// RetrieveResult is what a retrieve run measured.
type RetrieveResult struct {
	Kind      string        `json:"kind"`
	Conns     int           `json:"conns"`
	Duration  time.Duration `json:"duration_ns"`
	Requests  int           `json:"requests"`
	OK        int           `json:"ok"`
	PerSecond float64       `json:"per_second"`
	Latency   Summary       `json:"latency"`
	Status    Counts        `json:"status"`
	Errors    Counts        `json:"errors"`
	BodyBytes int64         `json:"body_bytes"`
	CPU       CPUUse        `json:"cpu"`
}

func (r RetrieveResult) String() string {
	s := fmt.Sprintf("%s: %d conns, %s measured\n  %d requests, %.0f req/s (%d answered 200)\n  latency %s\n  status %s\n  errors %s",
		r.Kind, r.Conns, r.Duration, r.Requests, r.PerSecond, r.OK, r.Latency, r.Status, r.Errors)
	if r.BodyBytes > 0 {
		s += fmt.Sprintf("\n  answer size %d bytes", r.BodyBytes)
	}
	if c := r.CPU.String(); c != "" {
		s += "\n  cpu " + c
	}
	if cores := r.CPU.Cores(); cores > 0 && r.Requests > 0 {
		s += fmt.Sprintf("\n  %s per request: %.1f µs CPU, %.2f read and %.2f write syscalls (%.0f requests per CPU-second)",
			r.CPU.Name, float64(r.CPU.Server.Microseconds())/float64(r.Requests),
			float64(r.CPU.ServerReads)/float64(r.Requests), float64(r.CPU.ServerWrites)/float64(r.Requests), r.PerSecond/cores)
	}
	return s
}

// worker is one connection's tally; merged at the end.
type worker struct {
	lat    Latencies
	status Counts
	errs   Counts
}

func newWorker() *worker { return &worker{status: Counts{}, errs: Counts{}} }

// window tells workers whether a request started now is measured.
type window struct{ on atomic.Bool }

func merge(ws []*worker) (Latencies, Counts, Counts) {
	var lat Latencies
	status, errs := Counts{}, Counts{}
	for _, w := range ws {
		lat = append(lat, w.lat...)
		status.Add(w.status)
		errs.Add(w.errs)
	}
	return lat, status, errs
}

// RunRetrieve hammers hub.mode=retrieve with Conns concurrent keep-alive
// connections for Warmup+Duration and reports the measured part.
func RunRetrieve(ctx context.Context, c RetrieveConfig) (RetrieveResult, error) {
	if c.Conns < 1 || c.Duration <= 0 {
		return RetrieveResult{}, fmt.Errorf("--conns must be at least 1 and --duration positive")
	}
	if _, err := RaiseNoFile(c.Conns + 64); err != nil {
		return RetrieveResult{}, err
	}
	q := url.Values{"hub.mode": {"retrieve"}, "hub.topic": {c.Topic}, "count": {strconv.Itoa(c.Count)}}
	if c.Format != "" {
		q.Set("format", c.Format)
	}
	// A first request through net/http checks the set-up and says what is
	// wrong before the load starts.
	hub := NewHub(c.Target, c.Auth, 1)
	defer hub.Close()
	if _, _, err := hub.do(ctx, "retrieve check", http.MethodGet, q, "", nil); err != nil {
		return RetrieveResult{}, fmt.Errorf("%w (run `loadgen seed` first to create the subscription and items)", err)
	}

	d, err := NewDialer(c.Target.Addr, c.SourceIPs)
	if err != nil {
		return RetrieveResult{}, err
	}
	kind := "retrieve"
	run := func(ctx context.Context, w *worker, win *window, size *atomic.Int64) {
		rawRetrieveWorker(ctx, d, BuildGet(c.Target, q, c.Auth), w, win, size)
	}
	if c.Client == "nethttp" {
		kind = "retrieve (net/http client)"
		tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: c.Conns, MaxConnsPerHost: c.Conns, DisableCompression: true}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr}
		u := c.Target.Endpoint() + "?" + q.Encode()
		run = func(ctx context.Context, w *worker, win *window, size *atomic.Int64) {
			netHTTPRetrieveWorker(ctx, hc, u, c.Auth, w, win, size)
		}
	} else if c.Client != "" && c.Client != "raw" {
		return RetrieveResult{}, fmt.Errorf("--client %q: use raw or nethttp", c.Client)
	}
	res := RetrieveResult{Kind: kind, Conns: c.Conns, Duration: c.Duration}
	ws, cpu, size := runWorkers(ctx, c.Conns, c.Warmup, c.Duration, c.GatewayPID, "gateway", run)
	lat, status, errs := merge(ws)
	res.Status, res.Errors, res.CPU = status, errs, cpu
	res.Requests = status.Total()
	res.OK = status["200"]
	res.PerSecond = float64(res.Requests) / c.Duration.Seconds()
	res.Latency = lat.Summarize()
	res.BodyBytes = size
	return res, ctx.Err()
}

// runWorkers runs n workers for warmup+dur and returns their tallies of the
// measured window and the CPU used during it.
func runWorkers(ctx context.Context, n int, warmup, dur time.Duration, pid int, name string,
	run func(context.Context, *worker, *window, *atomic.Int64)) ([]*worker, CPUUse, int64) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ws := make([]*worker, n)
	win := &window{}
	var size atomic.Int64
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = newWorker()
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			run(ctx, w, win, &size)
		}(ws[i])
	}
	sleepCtx(ctx, warmup)
	meter := StartCPU(pid, name)
	win.on.Store(true)
	sleepCtx(ctx, dur)
	win.on.Store(false)
	cpu := meter.Stop()
	cancel()
	wg.Wait()
	return ws, cpu, size.Load()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// rawRetrieveWorker sends req over one keep-alive connection in a loop
// (reconnecting when needed) until ctx ends.
func rawRetrieveWorker(ctx context.Context, d *Dialer, req []byte, w *worker, win *window, size *atomic.Int64) {
	for ctx.Err() == nil {
		nc, err := d.Dial(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.errs[errKind(err)]++
				sleepCtx(ctx, 20*time.Millisecond)
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { nc.Close() })
		br := bufio.NewReaderSize(nc, 32<<10)
		for ctx.Err() == nil {
			measured := win.on.Load()
			t0 := time.Now()
			if _, err = nc.Write(req); err != nil {
				break
			}
			var h Head
			if h, err = ReadHead(br); err != nil {
				break
			}
			var n int64
			if n, err = h.DiscardBody(br); err != nil {
				break
			}
			if h.Status == 200 && size.Load() == 0 {
				size.Store(n)
			}
			if measured && win.on.Load() {
				w.lat = append(w.lat, time.Since(t0))
				w.status[statusText(h.Status)]++
			}
			if h.Close {
				break
			}
		}
		stop()
		nc.Close()
		if err != nil && ctx.Err() == nil && win.on.Load() {
			w.errs[errKind(err)]++
		}
	}
}

func netHTTPRetrieveWorker(ctx context.Context, hc *http.Client, u string, auth Auth, w *worker, win *window, size *atomic.Int64) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		w.errs[errKind(err)]++
		return
	}
	req.Header.Set("Authorization", auth.Basic())
	for ctx.Err() == nil {
		measured := win.on.Load()
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err == nil {
			var n int64
			n, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && size.Load() == 0 {
				size.Store(n)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if win.on.Load() {
				w.errs[errKind(err)]++
			}
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		if measured && win.on.Load() {
			w.lat = append(w.lat, time.Since(t0))
			w.status[statusText(resp.StatusCode)]++
		}
	}
}
