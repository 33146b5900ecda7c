package redistest

import (
	"context"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// go-redis logs connection-pool events (a refused dial while a test has
// stopped its server, a reconnection) to stderr, where they drown a failing
// test's own output. Binaries that use this package send them instead to
// the log of the newest test still running that started a server (shown
// with its failure, or with -v).
func init() { redis.SetLogger(poolLog) }

var poolLog = &testLogger{}

type testLogger struct {
	mu  sync.Mutex
	tbs []testing.TB
}

// attach makes tb the target of go-redis's log lines until it ends.
func (l *testLogger) attach(tb testing.TB) {
	l.mu.Lock()
	l.tbs = append(l.tbs, tb)
	l.mu.Unlock()
	tb.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, x := range l.tbs {
			if x == tb {
				l.tbs = append(l.tbs[:i], l.tbs[i+1:]...)
				break
			}
		}
	})
}

// Printf implements go-redis's logger. The lock is held while logging so a
// test cannot end in between (its cleanup waits for it).
func (l *testLogger) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.tbs); n > 0 {
		l.tbs[n-1].Logf(format, v...)
	}
}
