package redistest_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/internal/clusterslot"
	"github.com/feedgate/feedgate/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }

func clusterClient(t *testing.T, c *redistest.Cluster) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DisableIdentity: true})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestSharedCluster: the shared cluster serves every slot from three
// masters, and the slots clusterslot computes are the server's.
func TestSharedCluster(t *testing.T) {
	c := redistest.SharedCluster(t)
	if m := c.Masters(); len(m) != 3 {
		t.Fatalf("masters %v, want 3", m)
	}
	cc := clusterClient(t, c)
	ctx := context.Background()
	for i := range 200 {
		key := fmt.Sprintf("fg:{%x}:items%d", i*7919, i)
		n, err := cc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := clusterslot.Of(key); got != int(n) {
			t.Fatalf("clusterslot.Of(%q) = %d, CLUSTER KEYSLOT says %d", key, got, n)
		}
		if err := cc.Set(ctx, key, "v", time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
	}
	if again := redistest.SharedCluster(t); strings.Join(again.Addrs(), ",") != strings.Join(c.Addrs(), ",") {
		t.Fatal("a second SharedCluster started another cluster")
	}
}

// TestClusterFailover kills the master of a key's slot: its replica takes
// over, the data written before is there (replicated with WAIT), and the
// old master comes back as a replica.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	cc := clusterClient(t, c)
	ctx := context.Background()
	const key = "{failover}k"
	if err := cc.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := c.MasterOf(key)
	if _, err := c.Do(old, "WAIT", 1, 5000); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Kill(old)
	now := c.WaitFailover(key, old)
	t.Logf("slot of %s failed over from %s to %s in %v", key, old, now, time.Since(start).Round(time.Millisecond))
	if v, err := c.Do(now, "GET", key); err != nil || v != "v" {
		t.Fatalf("GET on the new master = %v, %v", v, err)
	}
	c.Restart(old)
	c.Settle()
	if r, _ := c.Do(old, "ROLE"); fmt.Sprint(r) == "" || !strings.HasPrefix(fmt.Sprint(r), "[slave") {
		t.Fatalf("old master after restart: ROLE %v, want a replica", r)
	}
}

// TestClusterReshard moves a master's first slot to another master.
func TestClusterReshard(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	ms := c.Masters()
	slot := c.FirstSlot(ms[0])
	c.Reshard(ms[0], ms[1], 1)
	if got := c.FirstSlot(ms[1]); got != slot && c.FirstSlot(ms[0]) == slot {
		t.Fatalf("slot %d still on %s after the reshard", slot, ms[0])
	}
}

// TestSentinelFailover kills the master: the sentinels promote a replica
// and a FailoverClient follows.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: redistest.SentinelMaster, SentinelAddrs: s.Addrs(), DisableIdentity: true})
	t.Cleanup(func() { fc.Close() })
	ctx := context.Background()
	if err := fc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := fc.Do(ctx, "WAIT", 2, 5000).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	old := s.KillMaster()
	now := s.WaitFailover(old)
	t.Logf("failed over from %s to %s in %v", old, now, time.Since(start).Round(time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := fc.Get(ctx, "k").Result()
		if err == nil && v == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET through the FailoverClient after failover: %v, %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Restart(old)
}

func TestSharedSentinel(t *testing.T) {
	s := redistest.SharedSentinel(t)
	if s.Master() == "" || len(s.Addrs()) != 3 {
		t.Fatalf("master %q, sentinels %v", s.Master(), s.Addrs())
	}
}
