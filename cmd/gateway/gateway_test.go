package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
)

// binary builds the gateway once per test run.
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "feedgate-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gateway")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func build(t *testing.T) string {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a running gateway process.
type proc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	url  string
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs `gateway` with args and env and waits for /healthz.
func start(t *testing.T, addr string, env []string, args ...string) *proc {
	t.Helper()
	return startWith(t, addr, env, exec.Command(build(t), args...))
}

// startWith runs cmd (a gateway, perhaps wrapped) as start does.
func startWith(t *testing.T, addr string, env []string, cmd *exec.Cmd) *proc {
	t.Helper()
	// JSON logs with the access log, so that checkLogLines sees every kind
	// of line; the caller's env may say otherwise.
	cmd.Env = append(append(os.Environ(), "FEEDGATE_LOG_FORMAT=json", "FEEDGATE_ACCESS_LOG=true"), env...)
	p := &proc{cmd: cmd, logs: &syncBuffer{}, url: "http://" + addr, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		checkLogLines(t, p.logs.String())
		if t.Failed() {
			t.Logf("gateway log:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("gateway exited: %v\n%s", err, p.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("gateway did not come up\n%s", p.logs.String())
	return nil
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("gateway exited with %v after SIGTERM\n%s", err, p.logs.String())
		}
		p.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatalf("gateway did not stop on SIGTERM\n%s", p.logs.String())
	}
}

// userAdd runs `gateway user add` and returns the token from the last line.
func userAdd(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(build(t), append([]string{"user", "add"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("user add: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func call(t *testing.T, method, u, creds, ctype, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	login, token, _ := strings.Cut(creds, ":")
	req.SetBasicAuth(login, token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const feedDoc = `<?xml version="1.0"?><rss version="2.0"><channel><title>Walk</title><link>https://walk.example/</link>
<item><guid>w-1</guid><title>One</title><pubDate>Sun, 22 Nov 2026 10:00:00 GMT</pubDate></item>
<item><guid>w-2</guid><title>Two</title><pubDate>Sun, 22 Nov 2026 11:00:00 GMT</pubDate></item>
</channel></rss>`

// walk subscribes, fat-pings and retrieves JSON, Atom and JSONP as a client
// would, to give a gateway data to keep across restarts. (The README's own
// command blocks are run by TestReadmeWalkThrough.)
func walk(t *testing.T, base, creds, topic string) {
	t.Helper()
	q := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}
	if code, body := call(t, "POST", base+"/", creds, "application/x-www-form-urlencoded", q.Encode()); code != 204 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	if code, body := call(t, "POST", base+"/?hub.mode=publish&hub.topic="+url.QueryEscape(topic), creds, "application/rss+xml", feedDoc); code != 200 {
		t.Fatalf("fat ping: %d %s", code, body)
	}
	checkItems(t, base, creds, topic)
}

func checkItems(t *testing.T, base, creds, topic string) {
	t.Helper()
	r := base + "/?hub.mode=retrieve&hub.topic=" + url.QueryEscape(topic)
	code, body := call(t, "GET", r+"&format=json", creds, "", "")
	var m struct {
		Items []struct{ ID string } `json:"items"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &m) != nil || len(m.Items) != 2 || m.Items[0].ID != "w-2" {
		t.Fatalf("retrieve json: %d %s", code, body)
	}
	if code, body := call(t, "GET", r, creds, "", ""); code != 200 || !strings.Contains(body, "<feed") {
		t.Fatalf("retrieve atom: %d %s", code, body)
	}
	if code, body := call(t, "GET", r+"&callback=show", creds, "", ""); code != 200 || !strings.Contains(body, "show({") {
		t.Fatalf("retrieve jsonp: %d %s", code, body)
	}
}

// TestEnvOnlyEmbedded configures the gateway by environment only, creates a
// user while it serves (through the admin socket), walks through the README
// and checks the data survives a restart.
func TestEnvOnlyEmbedded(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := []string{
		"FEEDGATE_LISTEN=" + addr,
		"FEEDGATE_DATA_DIR=" + t.TempDir(),
		"FEEDGATE_PUBLIC_URL=http://" + addr,
		"FEEDGATE_ALLOW_PRIVATE=true",
	}
	p := start(t, addr, env)
	if !strings.Contains(p.logs.String(), "created user demo") {
		t.Fatalf("no demo user logged:\n%s", p.logs.String())
	}
	token := userAdd(t, env, "alice", "--rights", "all")
	creds := "alice:" + token
	walk(t, p.url, creds, "https://walk.example/feed")
	p.stop(t)

	p = start(t, addr, env)
	checkItems(t, p.url, creds, "https://walk.example/feed")
	if strings.Contains(p.logs.String(), "created user demo") {
		t.Fatal("demo user created again on a store with users")
	}
	p.stop(t)
	if strings.Contains(p.logs.String(), "panic") {
		t.Fatalf("panic in the log:\n%s", p.logs.String())
	}
}

// TestFlagsRedis runs on Redis (appendonly) configured by flags, and checks
// the data survives a gateway restart and a Redis restart.
func TestFlagsRedis(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.AppendOnly())
	addr := freeAddr(t)
	args := []string{"serve", "--listen", addr, "--redis-url", rs.URL(), "--allow-private", "--public-url", "http://" + addr}
	p := start(t, addr, nil, args...)
	token := userAdd(t, nil, "bob", "--rights", "all", "--redis-url", rs.URL())
	creds := "bob:" + token
	walk(t, p.url, creds, "https://walk.example/redis")
	p.stop(t)

	rs.Restart()
	p = start(t, addr, nil, args...)
	checkItems(t, p.url, creds, "https://walk.example/redis")
	p.stop(t)
}

// TestUserCommands covers user list and remove, and a bad right.
func TestUserCommands(t *testing.T) {
	t.Parallel()
	env := []string{"FEEDGATE_DATA_DIR=" + t.TempDir()}
	userAdd(t, env, "carol", "--rights", "retrieve", "--topics", "https://x.example/feed")
	run := func(args ...string) (string, error) {
		cmd := exec.Command(build(t), args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("user", "list")
	if err != nil || !strings.Contains(out, "carol") || !strings.Contains(out, "https://x.example/feed") {
		t.Fatalf("user list: %v\n%s", err, out)
	}
	if out, err := run("user", "add", "dave", "--rights", "fly"); err == nil || !strings.Contains(out, "unknown right") {
		t.Fatalf("bad right accepted: %s", out)
	}
	if out, err := run("user", "remove", "carol"); err != nil {
		t.Fatalf("user remove: %v %s", err, out)
	}
	if out, err := run("user", "remove", "carol"); err == nil {
		t.Fatalf("removing an unknown user succeeded: %s", out)
	}
}

// TestSIGTERMEndsStreams opens an NDJSON stream and an SSE stream, sends
// SIGTERM, and checks that both end promptly, the process exits cleanly and
// what was stored is still there after a restart.
func TestSIGTERMEndsStreams(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_SHUTDOWN_TIMEOUT=20s"}
	p := start(t, addr, env)
	creds := "erin:" + userAdd(t, env, "erin", "--rights", "all")
	topic := "https://walk.example/term"
	walk(t, p.url, creds, topic)

	login, token, _ := strings.Cut(creds, ":")
	open := func(query string) (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequest("GET", p.url+"/?hub.mode=retrieve&hub.topic="+url.QueryEscape(topic)+query, nil)
		req.SetBasicAuth(login, token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("open stream %s: %v %v", query, err, resp)
		}
		r := bufio.NewReader(resp.Body)
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("first line of %s: %v", query, err)
		}
		return resp, r
	}
	ndjson, nr := open("&wait=stream&format=json")
	defer ndjson.Body.Close()
	sse, sr := open("&format=sse")
	defer sse.Body.Close()

	ended := make(chan string, 2)
	drain := func(name string, r *bufio.Reader) {
		for {
			if _, err := r.ReadString('\n'); err != nil {
				ended <- name
				return
			}
		}
	}
	go drain("ndjson", nr)
	go drain("sse", sr)

	began := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	for range 2 {
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("streams still open 5 s after SIGTERM")
		}
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("gateway still running 5 s after SIGTERM")
	}
	t.Logf("streams ended and the gateway exited %v after SIGTERM", time.Since(began).Round(time.Millisecond))
	p.done <- nil

	p = start(t, addr, env)
	checkItems(t, p.url, creds, topic)
}
