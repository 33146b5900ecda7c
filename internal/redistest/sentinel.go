package redistest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SentinelMaster is the name the bed's sentinels know the master by.
const SentinelMaster = "feedgate"

// SentinelDownAfter is the bed's down-after-milliseconds: a master that
// stops answering is failed over a little after it.
const SentinelDownAfter = time.Second

// Sentinel is a Redis master with two replicas watched by three sentinels
// (quorum 2), on free loopback ports, for tests.
type Sentinel struct {
	tb        testing.TB
	data      []*proc // master first at start; roles change on failover
	sentinels []*proc
}

// StartSentinel launches a Sentinel set owned by the test (torn down when
// it ends). Use it for tests that kill nodes; others share one with
// SharedSentinel.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	poolLog.attach(tb)
	s, err := startSentinel(tb.TempDir())
	if s != nil {
		tb.Cleanup(s.teardown)
	}
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	s.tb = tb
	return s
}

func startSentinelOnce(dir string) (*Sentinel, error) {
	if _, err := binary(); err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, fmt.Errorf("find free ports: %w", err)
	}
	s := &Sentinel{}
	masterPort := ports[0]
	for i := range 3 {
		nd := filepath.Join(dir, "data"+strconv.Itoa(i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return s, err
		}
		port := ports[i]
		var p *proc
		p = newProc(nd, port, func() []string {
			a := []string{
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
			}
			if i > 0 && !p.startedOnce() {
				a = append(a, "--replicaof", "127.0.0.1", strconv.Itoa(masterPort))
			}
			return a
		})
		s.data = append(s.data, p)
	}
	for i := range 3 {
		nd := filepath.Join(dir, "sentinel"+strconv.Itoa(i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return s, err
		}
		port := ports[3+i]
		conf := filepath.Join(nd, "sentinel.conf")
		// Each sentinel is told its id and the others' (and the
		// replicas), so the set is whole at once instead of after rounds of
		// hello messages.
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n"+
			"sentinel myid %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s 10000\n"+
			"sentinel parallel-syncs %s 2\n",
			port, nd, sentinelID(i), SentinelMaster, masterPort, SentinelMaster, SentinelDownAfter/time.Millisecond, SentinelMaster, SentinelMaster)
		for j := range 3 {
			if j != i {
				text += fmt.Sprintf("sentinel known-sentinel %s 127.0.0.1 %d %s\n", SentinelMaster, ports[3+j], sentinelID(j))
			}
		}
		for j := 1; j < 3; j++ {
			text += fmt.Sprintf("sentinel known-replica %s 127.0.0.1 %d\n", SentinelMaster, ports[j])
		}
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return s, err
		}
		var p *proc
		p = newProc(nd, port, func() []string {
			return []string{conf, "--sentinel", "--logfile", p.logPath, "--daemonize", "no"}
		})
		s.sentinels = append(s.sentinels, p)
	}
	for _, p := range s.data {
		if err := p.start(); err != nil {
			return s, err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.sentinels))
	for i, p := range s.sentinels {
		wg.Go(func() { errs[i] = p.start() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("start sentinels: %w", err)
	}
	return s, s.settle("")
}

// startedOnce reports whether the process has been started before: a
// replica started again keeps whatever role the sentinels gave it.
func (p *proc) startedOnce() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// settle waits until every sentinel names the same running master (other
// than not, when given), which has two replicas in sync, and every
// sentinel knows the other two.
func (s *Sentinel) settle(not string) error {
	return waitUntil(clusterTimeout, "sentinel set settled", func() (bool, string) {
		master := ""
		for _, p := range s.sentinels {
			if !p.running() {
				continue
			}
			addr, err := p.sentinelMaster()
			if err != nil {
				return false, err.Error()
			}
			if master != "" && addr != master {
				return false, fmt.Sprintf("sentinels disagree: %s and %s", master, addr)
			}
			master = addr
			v, err := p.do("SENTINEL", "SENTINELS", SentinelMaster)
			if err != nil {
				return false, err.Error()
			}
			if others, _ := v.([]any); len(others) < 2 {
				return false, fmt.Sprintf("sentinel %s knows %d other sentinels", p.addr(), len(others))
			}
		}
		if master == "" || master == not {
			return false, "no new master named"
		}
		m := s.node(master)
		if m == nil || !m.running() || m.info("replication", "role") != "master" {
			return false, master + " is not a running master"
		}
		synced := 0
		for _, p := range s.data {
			if p != m && p.running() && p.info("replication", "master_link_status") == "up" &&
				p.info("replication", "master_port") == strconv.Itoa(m.port) {
				synced++
			}
		}
		running := 0
		for _, p := range s.data {
			if p.running() {
				running++
			}
		}
		if synced < running-1 {
			return false, fmt.Sprintf("%d of %d replicas in sync with %s", synced, running-1, master)
		}
		return true, ""
	})
}

// sentinelMaster asks a sentinel for the master's address.
func (p *proc) sentinelMaster() (string, error) {
	v, err := p.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", p.addr(), err)
	}
	f, _ := v.([]any)
	if len(f) != 2 {
		return "", fmt.Errorf("sentinel %s names no master", p.addr())
	}
	host, _ := f[0].(string)
	port, _ := f[1].(string)
	return host + ":" + port, nil
}

func (s *Sentinel) node(addr string) *proc {
	for _, p := range s.data {
		if p.addr() == addr {
			return p
		}
	}
	return nil
}

func (s *Sentinel) teardown() {
	var wg sync.WaitGroup
	for _, p := range append(append([]*proc(nil), s.sentinels...), s.data...) {
		wg.Go(p.kill)
	}
	wg.Wait()
}

func (s *Sentinel) fatalf(format string, args ...any) {
	s.tb.Helper()
	s.tb.Fatalf("redistest: "+format, args...)
}

// Addrs are the sentinels' host:port, as --redis-sentinel takes them.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.sentinels))
	for i, p := range s.sentinels {
		out[i] = p.addr()
	}
	return out
}

// Seeds is Addrs joined with commas.
func (s *Sentinel) Seeds() string { return strings.Join(s.Addrs(), ",") }

// Master returns the current master's address, as the sentinels say.
func (s *Sentinel) Master() string {
	s.tb.Helper()
	for _, p := range s.sentinels {
		if p.running() {
			addr, err := p.sentinelMaster()
			if err != nil {
				s.fatalf("%v", err)
			}
			return addr
		}
	}
	s.fatalf("no sentinel is running")
	return ""
}

// KillMaster ends the master with SIGKILL and returns its address.
func (s *Sentinel) KillMaster() string {
	s.tb.Helper()
	addr := s.Master()
	if err := s.node(addr).signal(syscall.SIGKILL, 10*time.Second); err != nil {
		s.fatalf("%v", err)
	}
	return addr
}

// WaitFailover waits until the sentinels name a master other than old,
// serving with its replicas in sync, and returns it.
func (s *Sentinel) WaitFailover(old string) string {
	s.tb.Helper()
	if err := s.settle(old); err != nil {
		s.fatalf("%v", err)
	}
	return s.Master()
}

// Restart starts a killed data node again; the sentinels make it a
// replica of the current master.
func (s *Sentinel) Restart(addr string) {
	s.tb.Helper()
	p := s.node(addr)
	if p == nil {
		s.fatalf("no data node at %s", addr)
	}
	if err := p.restart(); err != nil {
		s.fatalf("%v", err)
	}
}

// Do runs a command on the data node at addr.
func (s *Sentinel) Do(addr string, args ...any) (any, error) {
	p := s.node(addr)
	if p == nil {
		return nil, fmt.Errorf("redistest: no data node at %s", addr)
	}
	return p.do(args...)
}

// Logs returns every process's log, for failure messages.
func (s *Sentinel) Logs() string {
	var b strings.Builder
	for _, p := range append(append([]*proc(nil), s.data...), s.sentinels...) {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.addr(), tail(p.log(), 30))
	}
	return b.String()
}

// sentinelID is the run id of the bed's sentinel i (40 hex digits).
func sentinelID(i int) string { return fmt.Sprintf("%040x", i+1) }

// State describes each data node (role, master, pub/sub clients), for
// failure messages.
func (s *Sentinel) State() string {
	var b strings.Builder
	for _, p := range s.data {
		if !p.running() {
			fmt.Fprintf(&b, "%s: stopped\n", p.addr())
			continue
		}
		clients, _ := p.do("CLIENT", "LIST", "TYPE", "pubsub")
		fmt.Fprintf(&b, "%s: role %s, master port %s, link %s\n  pub/sub clients: %v\n", p.addr(),
			p.info("replication", "role"), p.info("replication", "master_port"),
			p.info("replication", "master_link_status"), clients)
	}
	return b.String()
}

// startSentinel starts the bed in dir, again on other ports when one it chose
// was taken meanwhile (free ports are probed, then bound by redis-server).
func startSentinel(dir string) (*Sentinel, error) {
	for attempt := 1; ; attempt++ {
		sub := filepath.Join(dir, "try"+strconv.Itoa(attempt))
		b, err := startSentinelOnce(sub)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			return b, err
		}
		if b != nil {
			b.teardown()
		}
	}
}
