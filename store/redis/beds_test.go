package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
	"github.com/feedgate/feedgate/store/storetest"
)

// The cluster and Sentinel beds are shared by the tests of this package
// that do not break them; each store on them has a key prefix of its own.
func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

var prefixes atomic.Int64

// newPrefix is a key prefix no other store of this test binary uses.
func newPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

func openConfig(t testing.TB, cfg redisstore.Config, opts store.Options) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := redisstore.Open(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("Open(%+v): %v", cfg, err)
	}
	return s
}

func clusterConfig(c *redistest.Cluster, prefix string) redisstore.Config {
	return redisstore.Config{Cluster: c.Addrs(), Prefix: prefix}
}

func sentinelConfig(s *redistest.Sentinel, prefix string) redisstore.Config {
	return redisstore.Config{Sentinel: s.Addrs(), Master: redistest.SentinelMaster, Prefix: prefix}
}

// beds lists the shared deployments the conformance suites run on besides
// the single server of each test: a cluster and a Sentinel set.
var beds = []struct {
	name   string
	config func(t *testing.T, prefix string) redisstore.Config
}{
	{"Cluster", func(t *testing.T, prefix string) redisstore.Config {
		return clusterConfig(redistest.SharedCluster(t), prefix)
	}},
	{"Sentinel", func(t *testing.T, prefix string) redisstore.Config {
		return sentinelConfig(redistest.SharedSentinel(t), prefix)
	}},
}

func TestConformanceOnBeds(t *testing.T) {
	for _, bed := range beds {
		t.Run(bed.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T, opts store.Options) store.Store {
				return openConfig(t, bed.config(t, newPrefix()), opts)
			})
		})
	}
}

func TestMultiNodeOnBeds(t *testing.T) {
	for _, bed := range beds {
		t.Run(bed.name, func(t *testing.T) {
			storetest.RunMultiNode(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
				cfg := bed.config(t, newPrefix())
				return openConfig(t, cfg, opts), openConfig(t, cfg, opts)
			})
		})
	}
}

func TestReopenOnBeds(t *testing.T) {
	for _, bed := range beds {
		t.Run(bed.name, func(t *testing.T) {
			cfg := bed.config(t, newPrefix())
			storetest.RunReopen(t, func(t *testing.T) store.Store { return openConfig(t, cfg, store.Options{}) })
		})
	}
}

func TestIngestOnBeds(t *testing.T) {
	for _, bed := range beds {
		t.Run(bed.name, func(t *testing.T) {
			storetest.RunIngest(t, func(t *testing.T) store.IngestStore {
				s := openConfig(t, bed.config(t, newPrefix()), store.Options{})
				t.Cleanup(func() { _ = s.Close() })
				return s
			})
			storetest.RunTimetableNodes(t, func(t *testing.T) (store.Timetable, store.Timetable) {
				cfg := bed.config(t, newPrefix())
				a, b := openConfig(t, cfg, store.Options{}), openConfig(t, cfg, store.Options{})
				t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
				return a.IngestJobs(), b.IngestJobs()
			})
		})
	}
}

func TestDeliveryOnBeds(t *testing.T) {
	for _, bed := range beds {
		t.Run(bed.name, func(t *testing.T) {
			storetest.RunDelivery(t, func(t *testing.T, opts store.Options) store.Store {
				return openConfig(t, bed.config(t, newPrefix()), opts)
			})
			storetest.RunDeliveryMultiNode(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
				cfg := bed.config(t, newPrefix())
				return openConfig(t, cfg, opts), openConfig(t, cfg, opts)
			})
			storetest.RunLeases(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
				cfg := bed.config(t, newPrefix())
				return openConfig(t, cfg, opts), openConfig(t, cfg, opts)
			})
			storetest.RunNodes(t, func(t *testing.T, opts store.Options) store.Store {
				return openConfig(t, bed.config(t, newPrefix()), opts)
			})
			storetest.RunNodesMultiNode(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
				cfg := bed.config(t, newPrefix())
				return openConfig(t, cfg, opts), openConfig(t, cfg, opts)
			})
		})
	}
}
