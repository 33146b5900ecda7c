package embedded

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// crashDirEnv tells the test binary, re-executed by TestKill9, to act as the
// appending child process on that directory.
const crashDirEnv = "FEEDGATE_EMBEDDED_CRASH_DIR"

var crashTopics = []string{"https://example.com/1.xml", "https://example.com/2.xml", "https://example.com/3.xml"}

// TestCrashChild is the child process of TestKill9: it appends from several
// goroutines until it is killed and prints every acknowledged item as
// "ack <topic index> <cursor> <id>".
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process of TestKill9")
	}
	s, err := Open(dir, store.Options{})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	ctx := context.Background()
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				ti := (w + i) % len(crashTopics)
				its := testItems(fmt.Sprintf("w%d-%d-", w, i), 1+i%3)
				got, err := s.Append(ctx, crashTopics[ti], its)
				mu.Lock()
				if err != nil {
					fmt.Fprintf(out, "error %v\n", err)
				}
				for _, it := range got {
					fmt.Fprintf(out, "ack %d %d %s\n", ti, it.Cursor, it.ID)
				}
				_ = out.Flush() // acknowledged only once written out
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Minute) // the parent kills us long before
	os.Exit(2)
}

// TestKill9 kills a process in the middle of appending and checks that every
// item it acknowledged is there after reopening, and that the database is
// consistent.
func TestKill9(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as the child")
	}
	dir := t.TempDir()
	for round := range 3 {
		acked := runCrashChild(t, dir, 300+round*300)

		s, err := Open(dir, store.Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		if err := s.Check(); err != nil {
			t.Errorf("round %d: Check after kill -9: %v", round, err)
		}
		ctx := context.Background()
		for _, a := range acked {
			p, err := s.Read(ctx, crashTopics[a.topic], store.Query{From: store.After, Cursor: a.cursor - 1, Count: 1})
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if len(p.Items) != 1 || p.Items[0].ID != a.id || p.Items[0].Cursor != a.cursor {
				t.Fatalf("round %d: acknowledged item %s at %s cursor %d is lost (read %+v)", round, a.id, crashTopics[a.topic], a.cursor, p.Items)
			}
		}
		// The store goes on from where it was: cursors stay contiguous.
		for _, topic := range crashTopics {
			p, err := s.Read(ctx, topic, store.Query{Count: 1})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Append(ctx, topic, testItems(fmt.Sprintf("after-%d-", round), 1))
			if err != nil || len(got) != 1 || got[0].Cursor != p.Last+1 {
				t.Fatalf("append after reopen: %v, %v; want cursor %d", cursors(got), err, p.Last+1)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d acknowledged items survived kill -9", round, len(acked))
	}
}

type ack struct {
	topic  int
	cursor feed.Cursor
	id     string
}

// runCrashChild starts the child on dir, waits for n acknowledgements, kills
// it with SIGKILL and returns everything it acknowledged.
func runCrashChild(t *testing.T, dir string, n int) []ack {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var acked []ack
	timeout := time.After(30 * time.Second)
	for len(acked) < n {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("child exited after %d acknowledgements", len(acked))
			}
			if a, ok := parseAck(line); ok {
				acked = append(acked, a)
			} else if strings.HasPrefix(line, "error") {
				t.Fatalf("child: %s", line)
			}
		case <-timeout:
			t.Fatalf("child acknowledged only %d items in 30s", len(acked))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	// Whatever the child wrote before dying was acknowledged too.
	for line := range lines {
		if a, ok := parseAck(line); ok {
			acked = append(acked, a)
		}
	}
	_ = cmd.Wait()
	return acked
}

func parseAck(line string) (ack, bool) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "ack" {
		return ack{}, false
	}
	ti, err1 := strconv.Atoi(f[1])
	c, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || ti < 0 || ti >= len(crashTopics) {
		return ack{}, false
	}
	return ack{topic: ti, cursor: feed.Cursor(c), id: f[3]}, true
}

func cursors(its []feed.Item) []uint64 {
	out := make([]uint64, len(its))
	for i, it := range its {
		out[i] = uint64(it.Cursor)
	}
	return out
}
