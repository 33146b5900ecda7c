// Package retry is feedgate's one exponential back-off, on
// github.com/cenkalti/backoff/v5: retry loops run backoff.Retry with
// Exponential, and delays after failures counted in the store (a feed's
// failed fetches, a webhook's failed deliveries, counts that outlive any
// process) come from Nth, so every component backs off on the same tested
// schedule and jitter.
package retry

import (
	"math"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Exponential returns the schedule first, first×multiplier, ... capped at
// max, each delay spread uniformly by ± jitter (a fraction, 0 for none).
func Exponential(first, max time.Duration, multiplier, jitter float64) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     first,
		RandomizationFactor: jitter,
		Multiplier:          multiplier,
		MaxInterval:         max,
	}
	b.Reset()
	return b
}

// Nth returns the delay before retry n (1 for the first) on b's schedule,
// b left as it was.
func Nth(b *backoff.ExponentialBackOff, n int) time.Duration {
	s := *b
	s.Reset()
	// Past the step that reaches the cap every delay is the cap's.
	steps := 1
	if s.Multiplier > 1 && s.MaxInterval > s.InitialInterval && s.InitialInterval > 0 {
		steps += int(math.Ceil(math.Log(float64(s.MaxInterval)/float64(s.InitialInterval)) / math.Log(s.Multiplier)))
	}
	d := s.NextBackOff()
	for i := 1; i < min(max(n, 1), steps); i++ {
		d = s.NextBackOff()
	}
	return d
}
