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

// TestTimetableMultiNode claims ingest jobs through two clients standing
// for two gateway nodes on one Redis.
func TestTimetableMultiNode(t *testing.T) {
	storetest.RunTimetableNodes(t, func(t *testing.T) (store.Timetable, store.Timetable) {
		srv := redistest.Start(t)
		a, b := newStore(t, srv.URL(), store.Options{}), newStore(t, srv.URL(), store.Options{})
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		return a.IngestJobs(), b.IngestJobs()
	})
}
