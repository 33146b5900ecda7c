// Package ratelog keeps repeated log lines about the same thing (a dead
// feed, a failing webhook) from flooding the log: one line per key per
// interval, and a cap on such lines per second over all keys; the lines
// let through say how many were held back.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// Limiter decides which lines of a repeated kind are logged. The zero
// value is not usable; use New.
type Limiter struct {
	every     time.Duration
	perSecond int
	maxKeys   int

	mu       sync.Mutex
	keys     map[string]*keyState
	second   int64
	inSecond int
	dropped  int // lines held back by the per-second cap, told in the next line let through
}

type keyState struct {
	last       time.Time
	suppressed int
}

// Options tune a Limiter; zero fields take the defaults.
type Options struct {
	// Every is how often one key may log (default 1 minute).
	Every time.Duration
	// PerSecond caps the lines let through per second over all keys
	// (default 20).
	PerSecond int
	// MaxKeys bounds the keys remembered (default 10 000); past it, keys
	// not seen for Every are forgotten first.
	MaxKeys int
}

func (o Options) withDefaults() Options {
	if o.Every <= 0 {
		o.Every = time.Minute
	}
	if o.PerSecond <= 0 {
		o.PerSecond = 20
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 10000
	}
	return o
}

// New returns a Limiter.
func New(o Options) *Limiter {
	o = o.withDefaults()
	return &Limiter{every: o.Every, perSecond: o.PerSecond, maxKeys: o.MaxKeys, keys: map[string]*keyState{}}
}

// Allow reports whether a line about key may be logged at now, and how
// many lines (about this key, or held back by the overall cap) were
// suppressed since the last one let through. first forces the line through
// the per-key interval (the first failure after a success), not the
// overall cap.
func (l *Limiter) Allow(key string, now time.Time, first bool) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ks := l.keys[key]
	if ks == nil {
		if len(l.keys) >= l.maxKeys {
			l.forget(now)
		}
		ks = &keyState{}
		l.keys[key] = ks
	}
	if !first && !ks.last.IsZero() && now.Sub(ks.last) < l.every {
		ks.suppressed++
		return false, 0
	}
	if sec := now.Unix(); sec != l.second {
		l.second, l.inSecond = sec, 0
	}
	if l.inSecond >= l.perSecond {
		ks.suppressed++
		l.dropped++
		return false, 0
	}
	l.inSecond++
	suppressed = ks.suppressed
	ks.last, ks.suppressed = now, 0
	return true, suppressed
}

// Forget drops what is known of key (its trouble is over).
func (l *Limiter) Forget(key string) {
	l.mu.Lock()
	delete(l.keys, key)
	l.mu.Unlock()
}

// forget drops keys idle for an interval, or all if that frees nothing.
func (l *Limiter) forget(now time.Time) {
	for k, ks := range l.keys {
		if now.Sub(ks.last) >= l.every {
			delete(l.keys, k)
		}
	}
	if len(l.keys) >= l.maxKeys {
		clear(l.keys)
	}
}

// Suppressed is the attribute naming how many lines were held back, or an
// empty attribute (which slog omits) when none were.
func Suppressed(n int) slog.Attr {
	if n == 0 {
		return slog.Attr{}
	}
	return slog.Int("suppressed", n)
}
