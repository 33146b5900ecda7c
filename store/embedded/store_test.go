package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/storetest"
)

func openTemp(t *testing.T, opts store.Options) store.Store {
	t.Helper()
	s, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, openTemp)
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	storetest.RunReopen(t, func(t *testing.T) store.Store {
		s, err := Open(dir, store.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestLeases(t *testing.T) {
	storetest.RunLeases(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
		s := openTemp(t, opts)
		return s, nopClose{s}
	})
}

// nopClose is the same store again, closed once by its first copy.
type nopClose struct{ store.Store }

func (nopClose) Close() error { return nil }

// Lease implements store.Leases for the copy.
func (n nopClose) Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	return n.Store.(store.Leases).Lease(ctx, name, holder, ttl)
}
