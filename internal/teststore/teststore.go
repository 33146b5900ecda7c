// Package teststore opens the store backends for the tests of the packages
// above the store: the embedded store in a test's temporary directory and
// the Redis store on a private redis-server, each closed when the test ends.
package teststore

import (
	"context"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

// Embedded opens the embedded store in a temporary directory of t.
func Embedded(t testing.TB, opts store.Options) store.Store {
	t.Helper()
	st, err := embedded.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("opening the embedded store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Redis opens a store on the Redis at url (a redistest server's), giving
// it 10 s to connect.
func Redis(t testing.TB, url string, opts store.Options) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := redisstore.New(ctx, url, opts)
	if err != nil {
		t.Fatalf("opening the Redis store at %s: %v", url, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Backend names a backend and opens a fresh store of it.
type Backend struct {
	Name string
	Open func(t testing.TB, opts store.Options) store.Store
}

// Backends are the embedded store and Redis, each store of the latter on
// a private redis-server of its own.
func Backends() []Backend {
	return []Backend{
		{"embedded", Embedded},
		{"redis", func(t testing.TB, opts store.Options) store.Store { return Redis(t, redistest.Start(t).URL(), opts) }},
	}
}

// ForEach runs f on a fresh store of every backend, in parallel subtests
// named after the backends.
func ForEach(t *testing.T, opts store.Options, f func(t *testing.T, st store.Store)) {
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			f(t, b.Open(t, opts))
		})
	}
}
