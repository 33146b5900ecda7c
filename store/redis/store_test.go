package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
	"github.com/feedgate/feedgate/store/storetest"
)

func newStore(t testing.TB, url string, opts store.Options) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redisstore.New(ctx, url, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", url, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
		return newStore(t, redistest.Start(t).URL(), opts)
	})
}

// TestMultiNode runs the multi-node suite with two Store values, each with
// its own connections, standing for two gateway nodes on one Redis.
func TestMultiNode(t *testing.T) {
	storetest.RunMultiNode(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
		srv := redistest.Start(t)
		return newStore(t, srv.URL(), opts), newStore(t, srv.URL(), opts)
	})
}

func TestReopen(t *testing.T) {
	srv := redistest.Start(t)
	storetest.RunReopen(t, func(t *testing.T) store.Store {
		return newStore(t, srv.URL(), store.Options{})
	})
}

// TestReopenAfterRedisRestart is RunReopen with Redis itself stopped and
// started again (append-only file on) between the two stores.
func TestReopenAfterRedisRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.AppendOnly())
	opened := 0
	storetest.RunReopen(t, func(t *testing.T) store.Store {
		if opened > 0 {
			srv.Restart()
		}
		opened++
		return newStore(t, srv.URL(), store.Options{})
	})
}

func TestLeases(t *testing.T) {
	storetest.RunLeases(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
		srv := redistest.Start(t)
		return newStore(t, srv.URL(), opts), newStore(t, srv.URL(), opts)
	})
}
