package embedded

import (
	"testing"

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
