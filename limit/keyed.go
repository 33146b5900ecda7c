// Package limit owns the request limits of a gateway node: token buckets
// per key (requests per user, pings per topic, failed logins per address)
// and the cap on concurrent unauthenticated connections per address.
package limit

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is a set of token buckets, one per key, each refilled at the same
// rate. Buckets that are full again are forgotten, so memory follows the
// keys active in the last burst/rate seconds. A nil *Keyed allows
// everything.
type Keyed struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	sweepAt int
}

// minSweep is the bucket count below which no sweep runs.
const minSweep = 1024

// NewKeyed returns buckets refilled at perSecond tokens per second holding
// at most burst (a burst below 1 is one second's worth, at least 1). A rate
// of 0 or less means no limit: it returns nil.
func NewKeyed(perSecond float64, burst int) *Keyed {
	if perSecond <= 0 {
		return nil
	}
	if burst < 1 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &Keyed{limit: rate.Limit(perSecond), burst: burst, buckets: map[string]*rate.Limiter{}, sweepAt: minSweep}
}

func (k *Keyed) bucket(key string, now time.Time) *rate.Limiter {
	b, ok := k.buckets[key]
	if ok {
		return b
	}
	if len(k.buckets) >= k.sweepAt {
		for key, b := range k.buckets {
			if b.TokensAt(now) >= float64(k.burst) {
				delete(k.buckets, key)
			}
		}
		k.sweepAt = max(minSweep, 2*len(k.buckets))
	}
	b = rate.NewLimiter(k.limit, k.burst)
	k.buckets[key] = b
	return b
}

// Allow takes a token for key; when none is left it takes nothing and
// says how long until one is.
func (k *Keyed) Allow(key string) (bool, time.Duration) {
	return k.AllowN(time.Now(), key, 1)
}

// AllowN takes n tokens for key at now, or none.
func (k *Keyed) AllowN(now time.Time, key string, n int) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.bucket(key, now)
	r := b.ReserveN(now, n)
	if !r.OK() {
		return false, time.Duration(float64(n)/float64(k.limit)*float64(time.Second)) + time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// AllowAll takes a token for every key, or none at all: it reports the
// longest wait among the keys that had none.
func (k *Keyed) AllowAll(keys []string) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	var taken []*rate.Reservation
	var wait time.Duration
	for _, key := range keys {
		r := k.bucket(key, now).ReserveN(now, 1)
		d := r.DelayFrom(now)
		if !r.OK() {
			d = time.Second
		}
		if d > 0 {
			r.CancelAt(now)
			wait = max(wait, d)
			continue
		}
		taken = append(taken, r)
	}
	if wait > 0 {
		for _, r := range taken {
			r.CancelAt(now)
		}
		return false, wait
	}
	return true, 0
}

// Blocked reports whether key has no token left, without taking one, and
// how long until it has.
func (k *Keyed) Blocked(key string) (bool, time.Duration) {
	if k == nil {
		return false, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	b, ok := k.buckets[key]
	if !ok {
		return false, 0 // the usual case: no clock reading for it
	}
	if t := b.TokensAt(time.Now()); t < 1 {
		return true, time.Duration((1 - t) / float64(k.limit) * float64(time.Second))
	}
	return false, 0
}

// Take takes a token for key even when none is left (the bucket goes into
// debt, as a failed login does).
func (k *Keyed) Take(key string) {
	if k == nil {
		return
	}
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.bucket(key, now).ReserveN(now, 1)
}

// RetryAfter renders a wait as a Retry-After value: whole seconds, at
// least 1.
func RetryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
