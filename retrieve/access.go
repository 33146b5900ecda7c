package retrieve

import (
	"sync"
	"sync/atomic"
	"time"
)

// access remembers, for a bounded time, who may read which topic: a
// user's subscription to it, or (login "") that somebody keeps it
// subscribed, which lets a token scoped to it read it. Without it every
// retrieve of a subscriber asks the store first, a round trip that costs
// as much as the read the retrieve cache saves.
//
// Only answers that allow are kept. A subscription deleted through this
// node's store client is forgotten before the deletion is answered (the
// store's ChangeHook bumps gen, which voids every entry kept before it, and
// every check that was in flight); one deleted on another node stops
// allowing within ttl, as a removed token does (auth.Options.CacheTTL).
type access struct {
	ttl time.Duration
	gen atomic.Uint64

	mu   sync.Mutex
	seen map[accessKey]accessEntry
}

type accessKey struct{ login, topic string }

type accessEntry struct {
	at  time.Time
	gen uint64
}

// maxAccess bounds the answers kept: past it, the expired ones are dropped,
// and all of them if none had expired.
const maxAccess = 1 << 17

func newAccess(ttl time.Duration) *access {
	return &access{ttl: ttl, seen: make(map[accessKey]accessEntry)}
}

// generation is read before asking the store; keep stores the answer only
// if no subscription was deleted since.
func (a *access) generation() uint64 { return a.gen.Load() }

// forget voids every answer kept (a subscription was deleted).
func (a *access) forget() { a.gen.Add(1) }

// allows reports whether login may read topic on a kept answer.
func (a *access) allows(login, topic string) bool {
	gen := a.gen.Load()
	a.mu.Lock()
	e, ok := a.seen[accessKey{login, topic}]
	a.mu.Unlock()
	return ok && e.gen == gen && time.Since(e.at) < a.ttl
}

// keep stores that login may read topic, as read from the store at gen.
func (a *access) keep(login, topic string, gen uint64) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen.Load() {
		return
	}
	if len(a.seen) >= maxAccess {
		for k, e := range a.seen {
			if e.gen != gen || now.Sub(e.at) >= a.ttl {
				delete(a.seen, k)
			}
		}
		if len(a.seen) >= maxAccess {
			clear(a.seen)
		}
	}
	a.seen[accessKey{login, topic}] = accessEntry{at: now, gen: gen}
}
