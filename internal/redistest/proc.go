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
	"time"

	"github.com/redis/go-redis/v9"
)

// proc is one redis-server (or redis-sentinel) process on a fixed loopback
// port and directory, which can be stopped, killed and started again. Its
// methods report failures as errors; Server and the beds turn them into
// test failures.
type proc struct {
	dir  string
	port int
	args func() []string // the command line, read at each start

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited
	admin   *redis.Client
	logPath string
}

func newProc(dir string, port int, args func() []string) *proc {
	return &proc{dir: dir, port: port, args: args, logPath: filepath.Join(dir, "redis.log")}
}

func (p *proc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runningLocked()
}

func (p *proc) runningLocked() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// pid is the process id, 0 when it does not run.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.runningLocked() {
		return 0
	}
	return p.cmd.Process.Pid
}

func binary() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New(notFound)
	}
	return bin, nil
}

// start launches the process and waits until it answers PING.
func (p *proc) start() error {
	bin, err := binary()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, p.args()...)
	cmd.Dir = p.dir
	cmd.SysProcAttr = sysProcAttr()
	out, err := os.OpenFile(filepath.Join(p.dir, "redis.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
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
		// Owned by the proc: it ends when the process does, which every
		// bed's teardown guarantees.
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()

	deadline := time.Now().Add(startTimeout)
	for {
		err := pingRaw(p.addr())
		if err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start (port %d): %s", p.port, tail(p.log(), 5))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d did not answer PING within %v: %v", p.port, startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond) // polling a starting process; bounded above
	}
	admin := redis.NewClient(&redis.Options{
		Addr:            p.addr(),
		DialTimeout:     time.Second,
		ReadTimeout:     10 * time.Second,
		MaxRetries:      -1,
		PoolSize:        2,
		DisableIdentity: true,
	})
	p.mu.Lock()
	p.cmd, p.exited, p.admin = cmd, exited, admin
	p.mu.Unlock()
	return nil
}

// restart starts a stopped process again on its port; the port was just
// released, and another process may take it in between, which a retry
// cannot fix, but a slow release can be waited out.
func (p *proc) restart() error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := p.start()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("restart redis-server on port %d: %w", p.port, err)
		}
		time.Sleep(50 * time.Millisecond) // waiting for the port; bounded above
	}
}

// signal sends sig to a running process and waits for it to exit.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, exited, admin := p.cmd, p.exited, p.admin
	running := p.runningLocked()
	p.admin = nil
	p.mu.Unlock()
	if admin != nil {
		admin.Close()
	}
	if !running {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server on port %d did not exit within %v of %v; killed", p.port, wait, sig)
	}
}

// kill ends the process at once, for teardown.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, exited, admin := p.cmd, p.exited, p.admin
	p.admin = nil
	p.mu.Unlock()
	if admin != nil {
		admin.Close()
	}
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
}

// do runs one command through the private admin connection.
func (p *proc) do(args ...any) (any, error) {
	p.mu.Lock()
	c := p.admin
	p.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("redistest: server on port %d is not running", p.port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Do(ctx, args...).Result()
}

// info returns one field of INFO section, "" when absent.
func (p *proc) info(section, field string) string {
	v, err := p.do("INFO", section)
	if err != nil {
		return ""
	}
	s, _ := v.(string)
	for _, line := range strings.Split(s, "\n") {
		if k, val, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return val
		}
	}
	return ""
}

// clusterInfo returns one field of CLUSTER INFO, "" when absent.
func (p *proc) clusterInfo(field string) string {
	v, err := p.do("CLUSTER", "INFO")
	if err != nil {
		return ""
	}
	s, _ := v.(string)
	for _, line := range strings.Split(s, "\n") {
		if k, val, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return val
		}
	}
	return ""
}

func (p *proc) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
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

// freePorts asks the kernel for n distinct free loopback ports, holding
// them all until every one is found.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	out := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitUntil polls cond every 20 ms until it holds or timeout passes; it
// returns an error naming what did not happen, with cond's last reason.
func waitUntil(timeout time.Duration, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v (%s)", what, timeout, why)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition; bounded above
	}
}
