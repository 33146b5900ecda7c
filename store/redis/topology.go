package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/internal/clusterslot"
	"github.com/feedgate/feedgate/store"
)

// topology is the store's own view of a Redis Cluster: which master serves
// each slot, and one client per master. go-redis's ClusterClient routes
// ordinary commands; this view serves what must reach one node on purpose:
// the sharded pub/sub connections of listeners (one per shard), the WAIT
// that follows an append on the append's own connection, and Ping, which
// names the shard that does not answer.
type topology struct {
	cc   *redis.ClusterClient
	base *redis.Options

	mu      sync.Mutex
	owners  []string // master address per slot, "" when unserved
	loaded  time.Time
	clients map[string]*redis.Client
	closed  bool
}

// minRefresh spaces refreshes asked for in a burst (every listener link of a
// failed shard asks at once).
const minRefresh = 100 * time.Millisecond

func newTopology(cc *redis.ClusterClient, base *redis.Options) *topology {
	return &topology{cc: cc, base: base, clients: make(map[string]*redis.Client)}
}

// refresh reads the slot map again (CLUSTER SLOTS, from any node that
// answers), unless it was read within minRefresh.
func (t *topology) refresh(ctx context.Context) error {
	t.mu.Lock()
	fresh := time.Since(t.loaded) < minRefresh && t.owners != nil
	t.mu.Unlock()
	if fresh {
		return nil
	}
	slots, err := t.slots(ctx)
	if err != nil {
		return err
	}
	owners := make([]string, clusterslot.Count)
	for _, r := range slots {
		if len(r.Nodes) == 0 {
			continue
		}
		for s := r.Start; s <= r.End && s < clusterslot.Count; s++ {
			owners[s] = r.Nodes[0].Addr
		}
	}
	t.mu.Lock()
	t.owners, t.loaded = owners, time.Now()
	t.mu.Unlock()
	return nil
}

// slots asks the nodes it knows, in turn, for CLUSTER SLOTS: the first
// answer from a node that is up wins (a node cut off from the others may
// still answer with what it last knew; the next refresh corrects it).
func (t *topology) slots(ctx context.Context) ([]redis.ClusterSlot, error) {
	var addrs []string
	t.mu.Lock()
	for _, a := range t.owners {
		if a != "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	t.mu.Unlock()
	var errs []error
	for _, a := range addrs {
		slots, err := t.client(a).ClusterSlots(ctx).Result()
		if err == nil && len(slots) > 0 {
			return slots, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
		if ctx.Err() != nil {
			break
		}
	}
	// The seeds, through go-redis (which also knows the replicas).
	slots, err := t.cc.ClusterSlots(ctx).Result()
	if err == nil {
		return slots, nil
	}
	errs = append(errs, err)
	return nil, fmt.Errorf("read the cluster's slot map: %w", errors.Join(errs...))
}

// master returns the address of the master serving slot ("" when none is
// known), reading the slot map first if it was never read.
func (t *topology) master(ctx context.Context, slot int) (string, error) {
	t.mu.Lock()
	loaded := t.owners != nil
	t.mu.Unlock()
	if !loaded {
		if err := t.refresh(ctx); err != nil {
			return "", err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	addr := t.owners[slot]
	if addr == "" {
		return "", fmt.Errorf("slot %d is not served by any master (the cluster is failing over or incomplete)", slot)
	}
	return addr, nil
}

// client returns the client of the node at addr, with the store's options.
func (t *topology) client(addr string) *redis.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.clients[addr]; ok {
		return c
	}
	o := *t.base
	o.Addr = addr
	o.DB = 0
	c := redis.NewClient(&o)
	if t.closed {
		// Closed store: the client fails every command.
		_ = c.Close()
		return c
	}
	t.clients[addr] = c
	return c
}

// shards groups the slots by master: address -> slot ranges.
func (t *topology) shards() map[string][][2]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string][][2]int)
	for s := 0; s < len(t.owners); {
		a := t.owners[s]
		e := s
		for e+1 < len(t.owners) && t.owners[e+1] == a {
			e++
		}
		out[a] = append(out[a], [2]int{s, e})
		s = e + 1
	}
	return out
}

func (t *topology) close() {
	t.mu.Lock()
	t.closed = true
	cs := t.clients
	t.clients = make(map[string]*redis.Client)
	t.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// ranges renders slot ranges as "0-5460,6000".
func ranges(rs [][2]int) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.Itoa(r[0])
		if r[1] != r[0] {
			parts[i] += "-" + strconv.Itoa(r[1])
		}
	}
	return strings.Join(parts, ",")
}

// pingCluster reads the slot map and pings every master serving slots, in
// parallel. It fails naming the slots no master serves, or the first shard
// that does not answer (by address and slots).
func (s *Store) pingCluster(ctx context.Context) error {
	if err := s.topo.refresh(ctx); err != nil {
		return s.wrap("ping", err)
	}
	shards := s.topo.shards()
	if rs, ok := shards[""]; ok {
		return fmt.Errorf("%w: redis cluster at %s: slots %s are served by no master (a master failed and was not replaced yet)",
			store.ErrUnavailable, s.where, ranges(rs))
	}
	addrs := make([]string, 0, len(shards))
	for a := range shards {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() { errs[i] = s.topo.client(a).Ping(ctx).Err() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%w: redis cluster shard %s (slots %s) does not answer: %w (the cluster fails it over to a replica after cluster-node-timeout)",
				store.ErrUnavailable, addrs[i], ranges(shards[addrs[i]]), err)
		}
	}
	return nil
}

// checkClusterVersion refuses a cluster older than Redis 7, which has no
// sharded pub/sub.
func (s *Store) checkClusterVersion(ctx context.Context) error {
	info, err := s.rdb.Info(ctx, "server").Result()
	if err != nil {
		return s.wrap("info", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			if major, _, _ := strings.Cut(v, "."); major < "7" && len(major) == 1 {
				return fmt.Errorf("redis cluster at %s runs Redis %s; feedgate needs Redis 7 or later on a cluster (sharded pub/sub)", s.where, v)
			}
		}
	}
	return nil
}
