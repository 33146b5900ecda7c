package redisstore_test

import (
	"testing"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/storetest"
)

func TestIngestConformance(t *testing.T) {
	storetest.RunIngest(t, func(t *testing.T) store.IngestStore {
		s := newStore(t, redistest.Start(t).URL(), store.Options{})
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// TestIngestMultiNode claims jobs through two clients standing for two
// gateway nodes on one Redis.
func TestIngestMultiNode(t *testing.T) {
	storetest.RunIngestNodes(t, func(t *testing.T) (store.IngestStore, store.IngestStore) {
		srv := redistest.Start(t)
		a, b := newStore(t, srv.URL(), store.Options{}), newStore(t, srv.URL(), store.Options{})
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		return a, b
	})
}
