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
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
	tb   testing.TB
	cfg  config
	dir  string
	port int

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	admin   *redis.Client
	logPath string
}

// Start launches a redis-server and stops it when the test ends. It fails
// the test when redis-server is not installed or does not come up.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatal(notFound)
	}
	s := &Server{tb: tb, dir: tb.TempDir()}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.fsync == "" {
		s.cfg.fsync = "always"
	}
	s.logPath = filepath.Join(s.dir, "redis.log")
	poolLog.attach(tb)
	tb.Cleanup(s.cleanup)

	// A free port can be taken by someone else between our probe and
	// redis-server's bind; try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("redistest: find a free port: %v", err)
		}
		s.port = port
		if lastErr = s.launch(bin); lastErr == nil {
			return s
		}
	}
	tb.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// URL for database 0 of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Port is the server's TCP port; it stays the same across Restart.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory (append-only file, log).
func (s *Server) Dir() string { return s.dir }

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runningLocked()
}

func (s *Server) runningLocked() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Stop shuts the server down gracefully (SIGTERM: the append-only file is
// flushed) and waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.tb.Helper()
	s.signal(syscall.SIGTERM, 10*time.Second)
}

// Kill ends the server with SIGKILL and waits for it to exit, as a crash
// would. Killing a stopped server does nothing.
func (s *Server) Kill() {
	s.tb.Helper()
	s.signal(syscall.SIGKILL, 10*time.Second)
}

// Restart stops the server if it runs and starts it again on the same port
// and directory, so with AppendOnly the data survives. It returns when the
// server answers PING.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.tb.Fatal(notFound)
	}
	// The port was just released; another process may grab it in between,
	// which a retry cannot fix, but a slow release can be waited out.
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.launch(bin)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redistest: restart redis-server on port %d: %v", s.port, err)
		}
		time.Sleep(50 * time.Millisecond)
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
func (s *Server) Do(args ...any) (any, error) {
	s.mu.Lock()
	c := s.admin
	s.mu.Unlock()
	if c == nil {
		return nil, errors.New("redistest: server is not running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Do(ctx, args...).Result()
}

// Log returns the server's log so far, for failure messages.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

func (s *Server) args() []string {
	appendOnly := "no"
	if s.cfg.appendOnly {
		appendOnly = "yes"
	}
	a := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", s.logPath,
		"--daemonize", "no",
		"--save", "",
		"--appendonly", appendOnly,
		"--appendfsync", s.cfg.fsync,
		"--databases", "16",
	}
	return append(a, s.cfg.args...)
}

// launch starts the process and waits until it answers PING.
func (s *Server) launch(bin string) error {
	cmd := exec.Command(bin, s.args()...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr()
	out, err := os.OpenFile(filepath.Join(s.dir, "redis.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open output file: %w", err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		// Owned by the Server: it ends when the process does, which
		// cleanup guarantees.
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()

	deadline := time.Now().Add(startTimeout)
	for {
		err := pingRaw(s.Addr())
		if err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start (port %d): %s", s.port, tail(s.Log(), 5))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %v", s.port, startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	admin := redis.NewClient(&redis.Options{
		Addr:            s.Addr(),
		DialTimeout:     time.Second,
		ReadTimeout:     10 * time.Second,
		MaxRetries:      -1,
		PoolSize:        2,
		DisableIdentity: true,
	})
	s.mu.Lock()
	s.cmd, s.exited, s.admin = cmd, exited, admin
	s.mu.Unlock()
	return nil
}

// signal sends sig to a running server and waits for it to exit.
func (s *Server) signal(sig syscall.Signal, wait time.Duration) {
	s.tb.Helper()
	s.mu.Lock()
	cmd, exited, admin := s.cmd, s.exited, s.admin
	running := s.runningLocked()
	s.admin = nil
	s.mu.Unlock()
	if admin != nil {
		admin.Close()
	}
	if !running {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-exited
		s.tb.Fatalf("redistest: redis-server on port %d did not exit within %v of %v; killed", s.port, wait, sig)
	}
}

func (s *Server) cleanup() {
	s.mu.Lock()
	cmd, exited, admin := s.cmd, s.exited, s.admin
	s.admin = nil
	s.mu.Unlock()
	if admin != nil {
		admin.Close()
	}
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
}

// pingRaw sends one inline PING and expects +PONG (not -LOADING while the
// append-only file is replayed). It speaks the protocol directly so that
// waiting for a starting server does not fill the log with dial errors.
func pingRaw(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	if reply := string(buf[:n]); !strings.HasPrefix(reply, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(reply))
	}
	return nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
