package main_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeOwnSections are the README sections whose command blocks other
// tests run, each block on its own (TestReadme: Operating and Deploying;
// TestReadmeUsers: Users and tokens). TestReadmeWalkThrough runs every other
// command block, so a block added anywhere else is run too.
var readmeOwnSections = map[string]bool{"Operating": true, "Deploying": true, "Users and tokens": true}

// readmeBlock is one ```sh block of README.md.
type readmeBlock struct {
	section string // the "## " heading above it ("" before the first)
	line    int    // of the opening fence
	text    string
}

func readmeShellBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []readmeBlock
	var cur *readmeBlock
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case line == "```sh":
			cur = &readmeBlock{section: section, line: n}
		case strings.HasPrefix(line, "## "):
			section = strings.TrimPrefix(line, "## ")
		}
	}
	if cur != nil {
		t.Fatalf("README.md line %d: a ```sh block is not closed", cur.line)
	}
	return blocks
}

// readmeHarness comes before the README's blocks. Streams run until Ctrl-C
// on the page; here each stops after 3 s, which is not a failure. `make
// build` is what the test did already: ./gateway is the binary it built.
// `go run ./cmd/gateway` runs that binary with its defaults, in a directory
// of its own and on a free port ($README_GO_RUN_ADDR instead of :8080),
// until it answers /readyz; then it is stopped as Ctrl-C would.
const readmeHarness = `set -euo pipefail
go() {
  if [ "$*" != "run ./cmd/gateway" ]; then command go "$@"; return; fi
  local bin=$PWD/gateway dir pid i
  dir=$(mktemp -d)
  (cd "$dir" && FEEDGATE_LISTEN=$README_GO_RUN_ADDR exec "$bin") &
  pid=$!
  for i in $(seq 300); do
    command curl -sf "http://$README_GO_RUN_ADDR/readyz" > /dev/null && break
    sleep 0.1
  done
  command curl -sf "http://$README_GO_RUN_ADDR/readyz" > /dev/null || { echo "go run ./cmd/gateway did not answer in 30 s" >&2; return 1; }
  kill -INT "$pid"
  wait "$pid" || true
}
curl() {
  local a rc=0
  for a in "$@"; do
    if [[ "$a" == -N || "$a" =~ ^-[a-zA-Z]*N ]]; then
      command curl --max-time 3 "$@" || rc=$?
      if [ "$rc" = 28 ]; then rc=0; fi
      return "$rc"
    fi
  done
  command curl "$@"
}
make() {
  if [ "$*" = build ]; then return 0; fi
  command make "$@"
}
`

// readmePorts finds the ports the blocks use on this machine.
var readmePorts = regexp.MustCompile(`((?:127\.0\.0\.1|localhost):|--port |-p )(\d{4,5})\b`)

// readmeClaim turns an output claim ("..." stands for any text) into a
// pattern.
func readmeClaim(c string) *regexp.Regexp {
	parts := strings.Split(c, "...")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("(?s)" + strings.Join(parts, ".*?"))
}

// TestReadmeWalkThrough runs the README's command blocks, those of the
// sections other tests do not run, in order and in one shell, as a new
// user following the page would: the first block starts the gateway (the
// binary built here, on a free port), later ones start the local webhook
// receiver and feed server of examples/, a Redis and a second gateway, all
// on free ports. The working directory holds the checkout's files (by
// symbolic links), so `go run ./examples/...` works, and ./gateway.
//
// Comment lines after a block's first command are output the block must
// print (at once, or soon after from the processes it started); "..." in
// them stands for any text. A block whose first line says it is not run by
// the suite is only checked for syntax.
func TestReadmeWalkThrough(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"redis-server", "redis-cli", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run the README (make deps installs redis-server): %v", tool, err)
		}
	}
	bin := build(t)
	root, _ := filepath.Abs("../..")
	dir := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "data", "gateway", "site", ".git":
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(bin, filepath.Join(dir, "gateway")); err != nil {
		t.Fatal(err)
	}

	var script strings.Builder
	script.WriteString(readmeHarness)
	type claims struct {
		block readmeBlock
		want  []string
	}
	var run []claims
	ports := map[string]string{}
	for _, b := range readmeShellBlocks(t) {
		if readmeOwnSections[b.section] {
			continue
		}
		if strings.HasPrefix(b.text, "# not run by the suite") {
			if out, err := exec.Command("bash", "-n", "-c", b.text).CombinedOutput(); err != nil {
				t.Errorf("README.md line %d: the block is not valid shell: %v\n%s", b.line, err, out)
			}
			continue
		}
		text := readmePorts.ReplaceAllStringFunc(b.text, func(m string) string {
			sub := readmePorts.FindStringSubmatch(m)
			p, ok := ports[sub[2]]
			if !ok {
				_, p, _ = strings.Cut(freeAddr(t), ":")
				ports[sub[2]] = p
			}
			return sub[1] + p
		})
		lines := strings.Split(strings.TrimSpace(text), "\n")
		c := claims{block: b}
		started := false
		for _, l := range lines {
			if w, ok := strings.CutPrefix(l, "# "); ok && started {
				c.want = append(c.want, w)
			} else if !strings.HasPrefix(l, "#") {
				started = true
			}
		}
		fmt.Fprintf(&script, "printf '\\n@@block %d@@\\n'\n%s", len(run), text)
		run = append(run, c)
	}
	if len(run) < 10 {
		t.Fatalf("found %d command blocks to run in README.md", len(run))
	}
	script.WriteString("printf '\\n@@end@@\\n'\n")

	out, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "README_GO_RUN_ADDR="+freeAddr(t))
	// Background processes write to the file, not to a pipe Wait would wait
	// for; they are in the shell's process group, killed at the end.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	runErr := cmd.Wait()
	output := func() string {
		b, _ := os.ReadFile(out.Name())
		return string(b)
	}
	// blockOutput is what was printed from the start of block i on.
	blockOutput := func(s string, i int) string {
		_, after, _ := strings.Cut(s, "\n@@block "+strconv.Itoa(i)+"@@\n")
		return after
	}
	if runErr != nil {
		s := output()
		last := -1
		for i := range run {
			if strings.Contains(s, "\n@@block "+strconv.Itoa(i)+"@@\n") {
				last = i
			}
		}
		if last < 0 {
			t.Fatalf("the README's blocks did not start: %v\n%s", runErr, s)
		}
		b := run[last].block
		t.Fatalf("the README block at line %d (%s) failed: %v\n%s--- its output:\n%s", b.line, b.section, runErr, b.text, blockOutput(s, last))
	}
	// What processes started by a block print may come after the shell
	// ended; wait for it, a bounded time.
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := output()
		var missing []string
		for i, c := range run {
			got := blockOutput(s, i)
			for _, w := range c.want {
				if !readmeClaim(w).MatchString(got) {
					missing = append(missing, fmt.Sprintf("README.md line %d (%s) did not print %q", c.block.line, c.block.section, w))
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s\n--- output:\n%s", strings.Join(missing, "\n"), s)
		}
		time.Sleep(100 * time.Millisecond) // polling the output file; bounded by the deadline
	}
}
