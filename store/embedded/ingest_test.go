package embedded

import (
	"testing"

	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/storetest"
)

func TestIngestConformance(t *testing.T) {
	storetest.RunIngest(t, func(t *testing.T) store.IngestStore {
		s, err := Open(t.TempDir(), store.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
