package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// published is what the publishers did.
type published struct {
	first     time.Time // when the first fat ping was sent
	published int       // items the gateway said it stored
	errs      Counts
	rtt       Latencies // fat ping round trips
}

// publish fat-pings cfg.Items new items, cfg.Batch per ping, at cfg.Rate
// items per second (0: back-to-back) over cfg.PublishConns publishers.
// Each entry id carries the time its ping was sent.
func publish(ctx context.Context, hub *Hub, cfg StreamConfig, m Marker, progress func(string, ...any)) published {
	pings := (cfg.Items + cfg.Batch - 1) / cfg.Batch
	jobs := make(chan int)
	var out published
	out.errs = Counts{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	out.first = start
	for range cfg.PublishConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			entries := make([]Entry, 0, cfg.Batch)
			for k := range jobs {
				entries = entries[:0]
				now := time.Now()
				for seq := k * cfg.Batch; seq < min((k+1)*cfg.Batch, cfg.Items); seq++ {
					entries = append(entries, Entry{Seq: seq, PubNanos: now.UnixNano()})
				}
				body = FeedBody(body[:0], cfg.Body, m, entries, cfg.ItemBytes)
				a, err := hub.FatPing(ctx, cfg.Topic, cfg.Body, body)
				rtt := time.Since(now)
				mu.Lock()
				out.rtt = append(out.rtt, rtt)
				switch {
				case err != nil:
					var he *HTTPError
					if errors.As(err, &he) {
						out.errs[statusError(he.Status, []byte(he.Body)).Error()]++
					} else if ctx.Err() == nil {
						out.errs[errKind(err)]++
					}
				case a.Stored != len(entries):
					out.errs[fmt.Sprintf("stored %d of %d entries", a.Stored, len(entries))]++
					out.published += a.Stored
				default:
					out.published += a.Stored
				}
				mu.Unlock()
			}
		}()
	}
	// The schedule: ping k leaves at start + k*Batch/Rate.
	lastReport := start
	for k := 0; k < pings && ctx.Err() == nil; k++ {
		if cfg.Rate > 0 {
			at := start.Add(time.Duration(float64(k*cfg.Batch) / cfg.Rate * float64(time.Second)))
			sleepCtx(ctx, time.Until(at))
		}
		select {
		case jobs <- k:
		case <-ctx.Done():
		}
		if now := time.Now(); now.Sub(lastReport) >= 2*time.Second {
			lastReport = now
			progress("  published %d/%d pings", k+1, pings)
		}
	}
	close(jobs)
	wg.Wait()
	return out
}
