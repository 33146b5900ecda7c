package retry

import (
	"testing"
	"time"
)

func TestNth(t *testing.T) {
	t.Parallel()
	b := Exponential(time.Minute, 6*time.Hour, 2, 0)
	for n, want := range map[int]time.Duration{
		-1: time.Minute, 0: time.Minute, 1: time.Minute, 2: 2 * time.Minute, 3: 4 * time.Minute,
		9: 256 * time.Minute, 10: 6 * time.Hour, 30: 6 * time.Hour, 1 << 30: 6 * time.Hour,
	} {
		if got := Nth(b, n); got != want {
			t.Errorf("Nth(%d) = %s, want %s", n, got, want)
		}
	}
	if got := b.NextBackOff(); got != time.Minute {
		t.Errorf("Nth changed the schedule it was given: next %s, want the first 1m", got)
	}
	// A multiplier of 1 (or less) stays at the first delay.
	if got := Nth(Exponential(time.Second, time.Minute, 1, 0), 50); got != time.Second {
		t.Errorf("Nth with multiplier 1 = %s", got)
	}
	// Jitter spreads each delay by ± the fraction, around the capped one.
	j := Exponential(100*time.Millisecond, 400*time.Millisecond, 2, 0.1)
	for range 200 {
		for n, mid := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 8: 400 * time.Millisecond} {
			if d := Nth(j, n); d < mid*9/10 || d > mid*11/10 {
				t.Fatalf("Nth(%d) = %s, want %s ± 10%%", n, d, mid)
			}
		}
	}
}
