package redistest

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// Beds shared by the tests of one package: a cluster and a Sentinel set
// take a few seconds to start, so tests that only read and write (each
// under keys of its own) share one per test binary. They start on first use
// and are torn down by Main when the package's tests end.
var shared struct {
	main atomic.Bool

	mu          sync.Mutex
	cluster     *Cluster
	sentinel    *Sentinel
	clusterErr  error
	sentinelErr error
	dirs        []string
}

// Main runs the package's tests and then tears down the shared beds. A
// package that uses SharedCluster or SharedSentinel calls it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
func Main(m *testing.M) int {
	shared.main.Store(true)
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster != nil {
		shared.cluster.teardown()
	}
	if shared.sentinel != nil {
		shared.sentinel.teardown()
	}
	for _, d := range shared.dirs {
		_ = os.RemoveAll(d)
	}
	return code
}

// sharedDir makes a directory for a shared bed, removed by Main.
func sharedDir(tb testing.TB, name string) string {
	tb.Helper()
	if !shared.main.Load() {
		tb.Fatal("redistest: shared beds need the package's TestMain to call redistest.Main")
	}
	d, err := os.MkdirTemp("", "feedgate-"+name+"-")
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	shared.dirs = append(shared.dirs, d)
	return d
}

// SharedCluster returns the package's shared 3-master cluster, starting it
// on first use. Tests using it must not stop nodes or move slots, and must
// keep to keys of their own.
func SharedCluster(tb testing.TB) *Cluster {
	tb.Helper()
	poolLog.attach(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil && shared.clusterErr == nil {
		c, err := startCluster(sharedDir(tb, "cluster"))
		if err != nil {
			if c != nil {
				c.teardown()
			}
			shared.clusterErr = err
		} else {
			shared.cluster = c
		}
	}
	if shared.clusterErr != nil {
		tb.Fatalf("redistest: shared cluster: %v", shared.clusterErr)
	}
	return &Cluster{tb: tb, dir: shared.cluster.dir, nodes: shared.cluster.nodes}
}

// SharedSentinel returns the package's shared Sentinel set, starting it on
// first use. Tests using it must not stop nodes, and must keep to keys of
// their own.
func SharedSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	poolLog.attach(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.sentinel == nil && shared.sentinelErr == nil {
		s, err := startSentinel(sharedDir(tb, "sentinel"))
		if err != nil {
			if s != nil {
				s.teardown()
			}
			shared.sentinelErr = err
		} else {
			shared.sentinel = s
		}
	}
	if shared.sentinelErr != nil {
		tb.Fatalf("redistest: shared Sentinel set: %v", shared.sentinelErr)
	}
	return &Sentinel{tb: tb, data: shared.sentinel.data, sentinels: shared.sentinel.sentinels}
}
