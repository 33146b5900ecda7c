package hub

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/store"
)

// The crash test re-runs this test binary as a child process that acts as
// a gateway node, kills it with SIGKILL while deliveries are pending, runs
// it again on the same store and checks what the callbacks received.
const (
	envCrashChild    = "FEEDGATE_HUB_CRASH_CHILD"
	envCrashStore    = "FEEDGATE_HUB_CRASH_STORE"
	envCrashCallback = "FEEDGATE_HUB_CRASH_CALLBACK"

	crashCallbacks   = 10
	crashItems       = 100
	crashConcurrency = 4
	crashBatch       = 5
	crashLease       = 3 * time.Second
)

// TestCrashChild is the child's body; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	phase := os.Getenv(envCrashChild)
	if phase == "" {
		t.Skip("runs only as the child process of TestKill9WhileDeliveriesPending")
	}
	var st store.Store
	kind, where, _ := strings.Cut(os.Getenv(envCrashStore), ":")
	var err error
	if kind == "embedded" {
		st, err = embeddedOpen(where)
	} else {
		st = teststore.Redis(t, where, store.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	ing, err := ingest.New(st, st.(store.IngestStore), ingest.Options{AllowPrivate: true, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	o := fastOptions()
	o.Fetcher = ing.Fetcher()
	o.Concurrency = crashConcurrency
	o.PerCallback = 1
	o.MaxBatch = crashBatch
	o.DeliveryTimeout = crashLease - time.Second
	o.JobLease = crashLease
	h := New(st, ing, o)
	ctx := context.Background()
	go func() { _ = h.Run(ctx) }()
	if phase == "setup" {
		token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "ann", Rights: store.AllRights})
		if err != nil {
			t.Fatal(err)
		}
		p, err := auth.NewAuthenticator(st, 0).Check(ctx, "ann", token)
		if err != nil {
			t.Fatal(err)
		}
		for i := range crashCallbacks {
			cb := fmt.Sprintf("%s/cb/%d", os.Getenv(envCrashCallback), i)
			if err := h.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", cb, "format", "json")); err != nil {
				t.Fatal(err)
			}
		}
		// One append: any delivery means every item is stored.
		items := make([]feed.Item, crashItems)
		for i := range items {
			items[i] = feed.Item{ID: fmt.Sprintf("item-%d", i), Title: "t", Hash: "h"}
		}
		if _, err := st.Append(ctx, topic, items); err != nil {
			t.Fatal(err)
		}
		select {} // until killed
	}
	// Resuming: say when every callback has every item and no POST is in
	// flight, after which this node sends nothing more.
	last, err := st.Read(ctx, topic, store.Query{From: store.Newest, Count: 1})
	if err != nil || len(last.Items) != 1 {
		t.Fatalf("reading the newest item: %v", err)
	}
	for {
		caughtUp := true
		for i := range crashCallbacks {
			cb := fmt.Sprintf("%s/cb/%d", os.Getenv(envCrashCallback), i)
			d, err := h.dlv.Delivery(ctx, store.DeliveryKey{Login: "ann", Topic: topic, Callback: cb})
			caughtUp = caughtUp && err == nil && d.Progress.Delivered == last.Items[0].Cursor
		}
		if stats, err := h.dlv.DeliveryStats(ctx, time.Now()); caughtUp && err == nil && stats.Leased == 0 {
			fmt.Println("IDLE")
			select {} // until killed
		}
		time.Sleep(10 * time.Millisecond) // polling the store; the parent bounds the wait
	}
}

type crashPost struct {
	callback   string
	cursors    []feed.Cursor
	redelivery bool
	at         time.Time // when the POST arrived
}

func TestKill9WhileDeliveriesPending(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		kill9(t, "embedded:"+t.TempDir())
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		kill9(t, "redis:"+redisStart(t))
	})
}

func kill9(t *testing.T, storeSpec string) {
	want := crashCallbacks * crashItems
	var (
		mu    sync.Mutex
		posts []crashPost
		got   = map[string]int{} // "callback/cursor" -> receipts
		phase atomic.Value       // "setup", then "resume"
	)
	phase.Store("setup")
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	// Once a tenth is delivered the callbacks take every POST but hold the
	// answer until the first child is dead, and the test kills it at once
	// (well within its delivery timeout): deliveries are pending when it
	// dies however fast it runs, and what it had in flight reached the
	// callbacks without the node knowing.
	var holding atomic.Bool
	held := make(chan struct{})   // closed once the first child is dead
	cutoff := make(chan struct{}) // closed when the callbacks start holding
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		arrived := time.Now()
		body, _ := io.ReadAll(r.Body)
		time.Sleep(15 * time.Millisecond) // a callback that takes its time
		p := post{Body: body}
		cp := crashPost{callback: r.URL.Path, cursors: p.cursors(t), redelivery: r.Header.Get(HeaderRedelivery) == "true", at: arrived}
		mu.Lock()
		posts = append(posts, cp)
		for _, c := range cp.cursors {
			got[fmt.Sprintf("%s/%d", cp.callback, c)]++
		}
		hold := holding.Load()
		if !hold && len(got) >= want/10 && phase.Load() == "setup" {
			holding.Store(true)
			close(cutoff)
		}
		mu.Unlock()
		if hold {
			select {
			case <-held:
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)

	// start runs the child; its stdout lines arrive on the channel.
	start := func(phase string) (*exec.Cmd, <-chan string) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envCrashChild+"="+phase, envCrashStore+"="+storeSpec, envCrashCallback+"="+srv.URL)
		cmd.Stderr = io.Discard
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 100)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				default:
				}
			}
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, lines
	}
	// waitLine waits for the child to print line.
	waitLine := func(lines <-chan string, line string, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the child stopped before printing %s", line)
				}
				if strings.TrimSpace(l) == line {
					return
				}
			case <-deadline:
				t.Fatalf("the child did not print %s within %s", line, within)
			}
		}
	}

	child, _ := start("setup")
	select {
	case <-cutoff:
	case <-time.After(60 * time.Second):
		t.Fatalf("the child delivered %d items in a minute, want %d", total(), want/10)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killedAt := time.Now()
	atKill := total()
	if atKill >= want {
		t.Fatalf("everything (%d) was delivered before the kill: nothing was pending", atKill)
	}
	phase.Store("resume")
	holding.Store(false)
	close(held)

	child, lines := start("resume")
	testkit.Eventually(t, 60*time.Second, fmt.Sprintf("all %d deliveries after the restart", want), func() bool { return total() == want })
	// Once the node says it is idle it sends nothing more: stopped, and the
	// callbacks done with every POST, what they got is final.
	waitLine(lines, "IDLE", 60*time.Second)
	_ = child.Process.Kill()
	_ = child.Wait()
	srv.Close()

	mu.Lock()
	defer mu.Unlock()
	marked, twice := 0, 0
	firstSeen := map[string]time.Time{}
	for _, p := range posts {
		if p.redelivery {
			marked++
		}
		for _, c := range p.cursors {
			k := fmt.Sprintf("%s/%d", p.callback, c)
			first, seen := firstSeen[k]
			if !seen {
				firstSeen[k] = p.at
				continue
			}
			twice++
			// A second copy only of what was in flight when the node died,
			// and marked as a possible redelivery.
			if !p.redelivery {
				t.Errorf("%s delivered again without %s: true", k, HeaderRedelivery)
			}
			if first.After(killedAt) {
				t.Errorf("%s was first delivered after the restart, and then again", k)
			}
		}
	}
	if len(got) != want {
		t.Fatalf("%d distinct (callback, item) deliveries, want %d", len(got), want)
	}
	if marked > crashConcurrency {
		t.Errorf("%d POSTs marked as redeliveries; at most %d were in flight", marked, crashConcurrency)
	}
	t.Logf("%s: %d of %d delivered before kill -9; after restart all delivered; %d item copies redelivered in %d marked POSTs",
		strings.SplitN(storeSpec, ":", 2)[0], atKill, want, twice, marked)
}
