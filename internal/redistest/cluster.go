package redistest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/clusterslot"
)

// clusterTimeout bounds how long a cluster takes to form, or to settle
// after a failover or a slot migration.
const clusterTimeout = 30 * time.Second

// ClusterNodeTimeout is the bed's cluster-node-timeout: a master that
// stops answering is failed over after about twice this.
const ClusterNodeTimeout = 1000 * time.Millisecond

// Cluster is a Redis Cluster of three masters with one replica each, on
// free loopback ports, for tests.
type Cluster struct {
	tb    testing.TB
	dir   string
	nodes []*proc
}

// StartCluster launches a 3-master, 3-replica Redis Cluster owned by the
// test (torn down when it ends). Use it for tests that kill nodes or move
// slots; tests that only need a cluster share one with SharedCluster.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	poolLog.attach(tb)
	c, err := startCluster(tb.TempDir())
	if c != nil {
		tb.Cleanup(c.teardown)
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	c.tb = tb
	return c
}

func startClusterOnce(dir string) (*Cluster, error) {
	if _, err := binary(); err != nil {
		return nil, err
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, errors.New("redis-cli not found: apt-get install -y redis-tools (it comes with redis-server)")
	}
	// Each node has a client port and a cluster bus port.
	ports, err := freePorts(12)
	if err != nil {
		return nil, fmt.Errorf("find free ports: %w", err)
	}
	c := &Cluster{dir: dir}
	for i := range 6 {
		nd := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return c, err
		}
		port, bus := ports[i], ports[6+i]
		var p *proc
		p = newProc(nd, port, func() []string {
			return []string{
				"--port", strconv.Itoa(port),
				"--bind", "127.0.0.1",
				"--dir", nd,
				"--logfile", p.logPath,
				"--daemonize", "no",
				"--save", "",
				"--appendonly", "no",
				// Replicas sync at once, not after the default 5 s wait for
				// more replicas to share the transfer.
				"--repl-diskless-sync-delay", "0",
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
				// Fail over whatever the replica's lag: tests kill masters
				// under load.
				"--cluster-replica-validity-factor", "0",
			}
		})
		c.nodes = append(c.nodes, p)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.nodes))
	for i, p := range c.nodes {
		wg.Go(func() { errs[i] = p.start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("start cluster nodes: %w", err)
	}
	args := []string{"--cluster", "create"}
	for _, p := range c.nodes {
		args = append(args, p.addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return c, fmt.Errorf("redis-cli --cluster create: %v: %s", err, tail(string(out), 10))
	}
	return c, c.settle()
}

// settle waits until every running node reports the cluster ok, agrees on
// who serves every slot, and every replica is in sync with its master.
func (c *Cluster) settle() error {
	return waitUntil(clusterTimeout, "cluster settled", func() (bool, string) {
		var owners map[int]string
		for _, p := range c.nodes {
			if !p.running() {
				continue
			}
			if st := p.clusterInfo("cluster_state"); st != "ok" {
				return false, fmt.Sprintf("%s reports cluster_state %q", p.addr(), st)
			}
			m, err := p.slotOwners()
			if err != nil {
				return false, err.Error()
			}
			if owners == nil {
				owners = m
			} else if !mapsEqual(owners, m) {
				return false, fmt.Sprintf("%s disagrees on slot owners", p.addr())
			}
			if p.info("replication", "role") == "slave" && p.info("replication", "master_link_status") != "up" {
				return false, fmt.Sprintf("replica %s is not in sync", p.addr())
			}
		}
		if len(owners) != clusterslot.Count {
			return false, fmt.Sprintf("%d of %d slots served", len(owners), clusterslot.Count)
		}
		return true, ""
	})
}

func mapsEqual(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// slotOwners asks the node who serves each slot (CLUSTER SLOTS).
func (p *proc) slotOwners() (map[int]string, error) {
	v, err := p.do("CLUSTER", "SLOTS")
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS on %s: %w", p.addr(), err)
	}
	ranges, _ := v.([]any)
	out := make(map[int]string, clusterslot.Count)
	for _, r := range ranges {
		f, _ := r.([]any)
		if len(f) < 3 {
			continue
		}
		lo, _ := f[0].(int64)
		hi, _ := f[1].(int64)
		m, _ := f[2].([]any)
		if len(m) < 2 {
			continue
		}
		host, _ := m[0].(string)
		port, _ := m[1].(int64)
		addr := host + ":" + strconv.FormatInt(port, 10)
		for s := lo; s <= hi; s++ {
			out[int(s)] = addr
		}
	}
	return out, nil
}

func (c *Cluster) teardown() {
	var wg sync.WaitGroup
	for _, p := range c.nodes {
		wg.Go(p.kill)
	}
	wg.Wait()
}

func (c *Cluster) fatalf(format string, args ...any) {
	c.tb.Helper()
	c.tb.Fatalf("redistest: "+format, args...)
}

// Addrs are the host:port of every node: the seed list a client is given.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, p := range c.nodes {
		out[i] = p.addr()
	}
	return out
}

// Seeds is Addrs joined with commas, as --redis-cluster takes it.
func (c *Cluster) Seeds() string { return strings.Join(c.Addrs(), ",") }

// node returns the node listening on addr.
func (c *Cluster) node(addr string) *proc {
	for _, p := range c.nodes {
		if p.addr() == addr {
			return p
		}
	}
	return nil
}

// live returns a running node to ask about the cluster.
func (c *Cluster) live() *proc {
	for _, p := range c.nodes {
		if p.running() && pingRaw(p.addr()) == nil {
			return p
		}
	}
	return nil
}

// MasterOf returns the address of the master serving key's slot.
func (c *Cluster) MasterOf(key string) string {
	c.tb.Helper()
	return c.ownerOf(clusterslot.Of(key))
}

func (c *Cluster) ownerOf(slot int) string {
	c.tb.Helper()
	p := c.live()
	if p == nil {
		c.fatalf("no cluster node is running")
	}
	owners, err := p.slotOwners()
	if err != nil {
		c.fatalf("%v", err)
	}
	return owners[slot]
}

// Masters returns the addresses of the masters serving slots, ordered.
func (c *Cluster) Masters() []string {
	c.tb.Helper()
	p := c.live()
	if p == nil {
		c.fatalf("no cluster node is running")
	}
	owners, err := p.slotOwners()
	if err != nil {
		c.fatalf("%v", err)
	}
	var out []string
	for _, a := range owners {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// Kill ends the node at addr with SIGKILL, as a crash would.
func (c *Cluster) Kill(addr string) {
	c.tb.Helper()
	p := c.node(addr)
	if p == nil {
		c.fatalf("no cluster node at %s", addr)
	}
	if err := p.signal(syscall.SIGKILL, 10*time.Second); err != nil {
		c.fatalf("%v", err)
	}
}

// Restart starts a killed node again on its port and directory; it rejoins
// the cluster (as a replica when it was failed over).
func (c *Cluster) Restart(addr string) {
	c.tb.Helper()
	p := c.node(addr)
	if p == nil {
		c.fatalf("no cluster node at %s", addr)
	}
	if err := p.restart(); err != nil {
		c.fatalf("%v", err)
	}
}

// WaitFailover waits until key's slot is served by a master other than
// old, and the cluster has settled.
func (c *Cluster) WaitFailover(key, old string) string {
	c.tb.Helper()
	slot := clusterslot.Of(key)
	var now string
	err := waitUntil(clusterTimeout, "failover of slot "+strconv.Itoa(slot), func() (bool, string) {
		p := c.live()
		if p == nil {
			return false, "no node running"
		}
		owners, err := p.slotOwners()
		if err != nil {
			return false, err.Error()
		}
		now = owners[slot]
		if now == "" || now == old {
			return false, "slot still served by " + old
		}
		if st := c.node(now).info("replication", "role"); st != "master" {
			return false, now + " is not master yet"
		}
		return true, ""
	})
	if err != nil {
		c.fatalf("%v", err)
	}
	if err := c.settleServing(); err != nil {
		c.fatalf("%v", err)
	}
	return now
}

// settleServing waits until the running nodes agree on who serves every
// slot and report the cluster ok (a killed node's replica stays without a
// master, which settle would wait for).
func (c *Cluster) settleServing() error {
	return waitUntil(clusterTimeout, "cluster serving every slot", func() (bool, string) {
		var owners map[int]string
		for _, p := range c.nodes {
			if !p.running() {
				continue
			}
			if st := p.clusterInfo("cluster_state"); st != "ok" {
				return false, fmt.Sprintf("%s reports cluster_state %q", p.addr(), st)
			}
			m, err := p.slotOwners()
			if err != nil {
				return false, err.Error()
			}
			if owners != nil && !mapsEqual(owners, m) {
				return false, fmt.Sprintf("%s disagrees on slot owners", p.addr())
			}
			owners = m
		}
		if len(owners) != clusterslot.Count {
			return false, fmt.Sprintf("%d of %d slots served", len(owners), clusterslot.Count)
		}
		return true, ""
	})
}

// Settle waits until the cluster is whole again: every running node agrees,
// every replica in sync.
func (c *Cluster) Settle() {
	c.tb.Helper()
	if err := c.settle(); err != nil {
		c.fatalf("%v", err)
	}
}

// FirstSlot returns the lowest slot served by the master at addr: the one
// Reshard moves first.
func (c *Cluster) FirstSlot(addr string) int {
	c.tb.Helper()
	p := c.live()
	owners, err := p.slotOwners()
	if err != nil {
		c.fatalf("%v", err)
	}
	first := -1
	for s, a := range owners {
		if a == addr && (first < 0 || s < first) {
			first = s
		}
	}
	if first < 0 {
		c.fatalf("%s serves no slot", addr)
	}
	return first
}

// Reshard moves n slots from the master at from to the master at to with
// redis-cli --cluster reshard (the lowest slots of from first), live, and
// waits until every node agrees.
func (c *Cluster) Reshard(from, to string, n int) {
	c.tb.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		c.fatalf("redis-cli not found")
	}
	fromID, toID := c.nodeID(from), c.nodeID(to)
	out, err := exec.Command(cli, "--cluster", "reshard", from,
		"--cluster-from", fromID, "--cluster-to", toID,
		"--cluster-slots", strconv.Itoa(n), "--cluster-yes", "--cluster-pipeline", "100").CombinedOutput()
	if err != nil {
		c.fatalf("redis-cli --cluster reshard: %v: %s", err, tail(string(out), 10))
	}
	if err := c.settleServing(); err != nil {
		c.fatalf("%v", err)
	}
}

// nodeID returns the cluster id of the node at addr.
func (c *Cluster) nodeID(addr string) string {
	c.tb.Helper()
	p := c.node(addr)
	if p == nil {
		c.fatalf("no cluster node at %s", addr)
	}
	v, err := p.do("CLUSTER", "MYID")
	if err != nil {
		c.fatalf("CLUSTER MYID on %s: %v", addr, err)
	}
	id, _ := v.(string)
	return id
}

// Do runs a command on the node at addr.
func (c *Cluster) Do(addr string, args ...any) (any, error) {
	p := c.node(addr)
	if p == nil {
		return nil, fmt.Errorf("redistest: no cluster node at %s", addr)
	}
	return p.do(args...)
}

// Logs returns every node's log, for failure messages.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, p := range c.nodes {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.addr(), tail(p.log(), 30))
	}
	return b.String()
}

// startCluster starts the bed in dir, again on other ports when one it chose
// was taken meanwhile (free ports are probed, then bound by redis-server).
func startCluster(dir string) (*Cluster, error) {
	for attempt := 1; ; attempt++ {
		sub := filepath.Join(dir, "try"+strconv.Itoa(attempt))
		b, err := startClusterOnce(sub)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return b, err
		}
		if b != nil {
			b.teardown()
		}
	}
}
