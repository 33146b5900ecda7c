package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// AppendsConfig is a run of acknowledged fat-ping appends: Conns
// publishers, each posting one new item at a time to one of Topics topics
// (spread over every Redis Cluster slot), through the gateways in turn, for
// Duration after Warmup.
type AppendsConfig struct {
	Targets  []*Target
	Auth     Auth
	Conns    int
	Topics   int
	Duration time.Duration
	Warmup   time.Duration
	// ItemBytes is the text content of each item.
	ItemBytes int
	// Listeners, when above 0, are idle NDJSON streams opened on the
	// topics before measuring, spread over the gateways: the Redis cost of
	// an append does not grow with them (one message per node subscribed).
	Listeners int
	// RedisAddrs are the Redis servers (every master) whose commands and
	// network bytes per append are reported (INFO commandstats and stats);
	// RedisPIDs their processes, whose CPU time per append is reported.
	RedisAddrs []string
	RedisPIDs  []int
	// GatewayPIDs are the gateways' processes, for their CPU per append.
	GatewayPIDs []int
}

// AppendsResult is what an appends run measured.
type AppendsResult struct {
	Gateways  int     `json:"gateways"`
	Conns     int     `json:"conns"`
	Topics    int     `json:"topics"`
	Listeners int     `json:"listeners"`
	Acked     int64   `json:"acked"`
	Failed    int64   `json:"failed"`
	PerSecond float64 `json:"acked_per_second"`
	Latency   Summary `json:"latency"`
	// Per acknowledged append, over every Redis server measured.
	RedisCommands float64 `json:"redis_commands_per_append,omitempty"`
	RedisBytesIn  float64 `json:"redis_bytes_in_per_append,omitempty"`
	RedisBytesOut float64 `json:"redis_bytes_out_per_append,omitempty"`
	RedisCPU      float64 `json:"redis_cpu_us_per_append,omitempty"`
	GatewayCPU    float64 `json:"gateway_cpu_us_per_append,omitempty"`
	// Commands counts the Redis commands by name over the measure.
	Commands  map[string]int64 `json:"redis_commands,omitempty"`
	LastError string           `json:"last_error,omitempty"`
}

func (r AppendsResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d gateway(s), %d publishers over %d topics, %d idle listeners: %d appends acknowledged, %.0f/s, %d failed; latency %s\n",
		r.Gateways, r.Conns, r.Topics, r.Listeners, r.Acked, r.PerSecond, r.Failed, r.Latency)
	if r.RedisCommands > 0 {
		fmt.Fprintf(&b, "per append: %.2f Redis commands, %.0f bytes in, %.0f bytes out", r.RedisCommands, r.RedisBytesIn, r.RedisBytesOut)
		if r.RedisCPU > 0 {
			fmt.Fprintf(&b, ", %.1f µs of Redis CPU", r.RedisCPU)
		}
		if r.GatewayCPU > 0 {
			fmt.Fprintf(&b, ", %.1f µs of gateway CPU", r.GatewayCPU)
		}
		b.WriteString("\n")
		var names []string
		for n, c := range r.Commands {
			if float64(c)/float64(max(r.Acked, 1)) >= 0.01 {
				names = append(names, fmt.Sprintf("%s %.2f", n, float64(c)/float64(max(r.Acked, 1))))
			}
		}
		if len(names) > 0 {
			fmt.Fprintf(&b, "commands per append: %s\n", strings.Join(names, ", "))
		}
	}
	if r.LastError != "" {
		fmt.Fprintf(&b, "last error: %s\n", r.LastError)
	}
	return b.String()
}

// RunAppends runs cfg.
func RunAppends(ctx context.Context, cfg AppendsConfig) (AppendsResult, error) {
	res := AppendsResult{Gateways: len(cfg.Targets), Conns: cfg.Conns, Topics: cfg.Topics, Listeners: cfg.Listeners}
	if len(cfg.Targets) == 0 || cfg.Conns < 1 || cfg.Topics < 1 || cfg.Duration <= 0 {
		return res, errors.New("appends: needs a gateway, conns, topics and a duration")
	}
	hubs := make([]*Hub, len(cfg.Targets))
	for i, t := range cfg.Targets {
		hubs[i] = NewHub(t, cfg.Auth, cfg.Conns)
		defer hubs[i].Close()
	}
	run := NewRunID()
	topics := make([]string, cfg.Topics)
	for i := range topics {
		topics[i] = fmt.Sprintf("http://127.0.0.1:9/loadgen/%s/appends/%d", run, i)
		if err := hubs[0].Subscribe(ctx, topics[i]); err != nil {
			return res, err
		}
	}
	lctx, stopListeners := context.WithCancel(ctx)
	defer stopListeners()
	var lwg sync.WaitGroup
	defer lwg.Wait()
	defer stopListeners()
	for i := range cfg.Listeners {
		t := cfg.Targets[i%len(cfg.Targets)]
		body, err := openIdleStream(lctx, t, cfg.Auth, topics[i%len(topics)])
		if err != nil {
			return res, fmt.Errorf("listener %d: %w", i, err)
		}
		lwg.Go(func() {
			<-lctx.Done()
			body.Close()
		})
	}

	m := NewMarker(run)
	var (
		acked, failed atomic.Int64
		measuring     atomic.Bool
		mu            sync.Mutex
		lat           Latencies
		lastErr       string
	)
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for c := range cfg.Conns {
		wg.Go(func() {
			var buf []byte
			for seq := c; pctx.Err() == nil; seq += cfg.Conns {
				hub := hubs[seq%len(hubs)]
				topic := topics[seq%len(topics)]
				start := time.Now()
				buf = FeedBody(buf[:0], BodyAtom, m, []Entry{{Seq: seq, PubNanos: start.UnixNano()}}, cfg.ItemBytes)
				_, err := hub.FatPing(pctx, topic, BodyAtom, buf)
				if pctx.Err() != nil {
					return
				}
				if !measuring.Load() {
					continue
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					lastErr = err.Error()
					mu.Unlock()
					continue
				}
				d := time.Since(start)
				acked.Add(1)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	if sleepCtx(ctx, cfg.Warmup); ctx.Err() != nil {
		return res, ctx.Err()
	}
	before, err := redisCounters(cfg.RedisAddrs)
	if err != nil {
		return res, err
	}
	cpu0 := cpuTimes(cfg.RedisPIDs)
	gw0 := cpuTimes(cfg.GatewayPIDs)
	measuring.Store(true)
	start := time.Now()
	sleepCtx(ctx, cfg.Duration)
	measuring.Store(false)
	wall := time.Since(start)
	after, err := redisCounters(cfg.RedisAddrs)
	cpu1 := cpuTimes(cfg.RedisPIDs)
	gw1 := cpuTimes(cfg.GatewayPIDs)
	stop()
	wg.Wait()
	if err != nil {
		return res, err
	}
	res.Acked, res.Failed, res.LastError = acked.Load(), failed.Load(), lastErr
	res.PerSecond = float64(res.Acked) / wall.Seconds()
	res.Latency = lat.Summarize()
	if n := float64(res.Acked); n > 0 && len(cfg.RedisAddrs) > 0 {
		res.Commands = make(map[string]int64)
		var calls int64
		for k, v := range after.calls {
			if d := v - before.calls[k]; d > 0 {
				res.Commands[k] = d
				calls += d
			}
		}
		// The INFO calls of the measure itself are not the gateway's.
		calls -= 2 * int64(len(cfg.RedisAddrs))
		res.Commands["info"] -= 2 * int64(len(cfg.RedisAddrs))
		res.RedisCommands = float64(calls) / n
		res.RedisBytesIn = float64(after.in-before.in) / n
		res.RedisBytesOut = float64(after.out-before.out) / n
		if cpu1 > cpu0 {
			res.RedisCPU = float64((cpu1 - cpu0).Microseconds()) / n
		}
		if gw1 > gw0 {
			res.GatewayCPU = float64((gw1 - gw0).Microseconds()) / n
		}
	}
	return res, nil
}

// cpuTimes sums the CPU time of the processes (those that cannot be read
// count 0).
func cpuTimes(pids []int) time.Duration {
	var sum time.Duration
	for _, p := range pids {
		if d, err := CPUTime(p); err == nil {
			sum += d
		}
	}
	return sum
}

// counters are a sum of Redis servers' command calls and network bytes.
type counters struct {
	calls   map[string]int64
	in, out int64
}

// redisCounters reads INFO commandstats and INFO stats of every server.
func redisCounters(addrs []string) (counters, error) {
	c := counters{calls: make(map[string]int64)}
	for _, a := range addrs {
		info, err := redisInfo(a, "commandstats")
		if err != nil {
			return c, err
		}
		for k, v := range info {
			name, ok := strings.CutPrefix(k, "cmdstat_")
			if !ok {
				continue
			}
			for _, f := range strings.Split(v, ",") {
				if n, ok := strings.CutPrefix(f, "calls="); ok {
					x, _ := strconv.ParseInt(n, 10, 64)
					c.calls[name] += x
				}
			}
		}
		stats, err := redisInfo(a, "stats")
		if err != nil {
			return c, err
		}
		in, _ := strconv.ParseInt(stats["total_net_input_bytes"], 10, 64)
		out, _ := strconv.ParseInt(stats["total_net_output_bytes"], 10, 64)
		c.in += in
		c.out += out
	}
	return c, nil
}

// redisInfo sends INFO section to the server at addr (inline protocol, no
// client library: loadgen measures the gateway's Redis, it does not load
// it) and returns its fields.
func redisInfo(addr, section string) (map[string]string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "INFO %s\r\n", section); err != nil {
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	r := bufio.NewReader(conn)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return nil, fmt.Errorf("redis %s: INFO answered %q: %v", addr, strings.TrimSpace(head), err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return nil, fmt.Errorf("redis %s: INFO answered %q", addr, head)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("redis %s: %w", addr, err)
	}
	out := make(map[string]string)
	for _, line := range strings.Split(string(body), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// openIdleStream opens an NDJSON stream of topic and reads its first line.
func openIdleStream(ctx context.Context, t *Target, auth Auth, topic string) (interface{ Close() error }, error) {
	d, err := NewDialer(t.Addr, 1)
	if err != nil {
		return nil, err
	}
	nc, err := d.Dial(ctx)
	if err != nil {
		return nil, err
	}
	q := url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"stream"}, "format": {"json"}}
	lr, err := openStream(nc, BuildGet(t, q, auth))
	if err != nil {
		nc.Close()
		return nil, err
	}
	if _, err := lr.Line(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("reading the first answer: %w", err)
	}
	return nc, nil
}
