// Package redistest runs a private redis-server for tests and benchmarks.
//
// Each Start launches its own redis-server (from PATH) bound to 127.0.0.1 on
// a free port, with its data directory in t.TempDir(), and stops it when the
// test ends. The server can be stopped, killed, restarted on the same port
// and directory, and have its client connections cut, so tests can exercise
// what happens to feedgate when Redis goes away.
//
// Methods that change the server's state report failures with t.Fatalf, so
// call them from the test's own goroutine.
package redistest

import (
	"strconv"
	"syscall"
	"testing"
	"time"
)

// notFound is the message given when redis-server is missing.
const notFound = "redis-server not found: run make test (it installs it) or apt-get install -y redis-server"

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 15 * time.Second

// Option configures a Server.
type Option func(*config)

type config struct {
	appendOnly bool
	fsync      string
	args       []string
}

// AppendOnly turns on the append-only file, so data survives Stop, Kill and
// Restart. Writes are fsynced on every command ("appendfsync always") unless
// AppendFsync says otherwise, so a Kill loses nothing that was acknowledged.
func AppendOnly() Option {
	return func(c *config) { c.appendOnly = true }
}

// AppendFsync sets appendfsync ("always", "everysec" or "no"); it implies
// AppendOnly.
func AppendFsync(policy string) Option {
	return func(c *config) { c.appendOnly, c.fsync = true, policy }
}

// Args passes extra redis-server command-line options, e.g.
// Args("--maxmemory", "10mb").
func Args(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one redis-server process owned by a test.
type Server struct {
	tb  testing.TB
	cfg config
	p   *proc
}

// Start launches a redis-server and stops it when the test ends. It fails
// the test when redis-server is not installed or does not come up.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	if _, err := binary(); err != nil {
		tb.Fatal(err)
	}
	s := &Server{tb: tb}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.fsync == "" {
		s.cfg.fsync = "always"
	}
	dir := tb.TempDir()
	poolLog.attach(tb)

	// A free port can be taken by someone else between our probe and
	// redis-server's bind; try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			tb.Fatalf("redistest: find a free port: %v", err)
		}
		s.p = newProc(dir, ports[0], s.args)
		if lastErr = s.p.start(); lastErr == nil {
			tb.Cleanup(s.p.kill)
			return s
		}
	}
	tb.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.p.addr() }

// URL is a redis:// URL for database 0 of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Port is the server's TCP port; it stays the same across Restart.
func (s *Server) Port() int { return s.p.port }

// Dir is the server's working directory (append-only file, log).
func (s *Server) Dir() string { return s.p.dir }

// Running reports whether the server process is alive.
func (s *Server) Running() bool { return s.p.running() }

// Stop shuts the server down gracefully (SIGTERM: the append-only file is
// flushed) and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.tb.Helper()
	if err := s.p.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		s.tb.Fatalf("redistest: %v", err)
	}
}

// Kill ends the server with SIGKILL and waits for it to exit, as a crash
// would. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.tb.Helper()
	if err := s.p.signal(syscall.SIGKILL, 10*time.Second); err != nil {
		s.tb.Fatalf("redistest: %v", err)
	}
}

// Restart stops the server if it runs and starts it again on the same port
// and directory, so with AppendOnly the data survives. It returns when the
// server answers PING.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	if err := s.p.restart(); err != nil {
		s.tb.Fatalf("redistest: %v", err)
	}
}

// KillClients cuts every normal and pub/sub client connection (CLIENT KILL
// TYPE normal / pubsub) and returns how many were cut. Clients reconnect by
// themselves; this is how tests simulate a broken link.
func (s *Server) KillClients() int {
	s.tb.Helper()
	return s.killClients("normal") + s.killClients("pubsub")
}

// KillPubSubClients cuts only the pub/sub connections and returns how many.
func (s *Server) KillPubSubClients() int {
	s.tb.Helper()
	return s.killClients("pubsub")
}

func (s *Server) killClients(kind string) int {
	s.tb.Helper()
	// Our own admin connection is a normal client too; SKIPME (the default)
	// keeps it alive.
	n, err := s.Do("CLIENT", "KILL", "TYPE", kind)
	if err != nil {
		s.tb.Fatalf("redistest: CLIENT KILL TYPE %s: %v", kind, err)
	}
	v, _ := n.(int64)
	return int(v)
}

// Do runs one command on the server through a private admin connection,
// e.g. Do("CONFIG", "SET", "maxmemory", "1mb").
func (s *Server) Do(args ...any) (any, error) { return s.p.do(args...) }

// Log returns the server's log so far, for failure messages.
func (s *Server) Log() string { return s.p.log() }

func (s *Server) args() []string {
	appendOnly := "no"
	if s.cfg.appendOnly {
		appendOnly = "yes"
	}
	a := []string{
		"--port", strconv.Itoa(s.p.port),
		"--bind", "127.0.0.1",
		"--dir", s.p.dir,
		"--logfile", s.p.logPath,
		"--daemonize", "no",
		"--save", "",
		"--appendonly", appendOnly,
		"--appendfsync", s.cfg.fsync,
		"--databases", "16",
	}
	return append(a, s.cfg.args...)
}
