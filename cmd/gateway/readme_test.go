package main_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlocks returns the ```sh blocks of the README sections from the
// heading "## <first>" up to the next level-2 heading not in sections.
func readmeBlocks(t *testing.T, sections ...string) []string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []string
	var in, block bool
	var cur []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "## "); ok && !block {
			in = false
			for _, s := range sections {
				in = in || h == s
			}
			continue
		}
		switch {
		case !in:
		case !block && line == "```sh":
			block, cur = true, nil
		case block && line == "```":
			block = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case block:
			cur = append(cur, line)
		}
	}
	return blocks
}

// TestReadme runs the command blocks of the README's Operating and
// Deploying sections with `gateway` built from this repository, each in a
// fresh directory. Comment lines after the first command are output the
// block must print. A block whose first line says it is not run (it needs
// Docker or a cluster) is only checked for the repository files it names.
func TestReadme(t *testing.T) {
	t.Parallel()
	bin := build(t)
	root, _ := filepath.Abs("../..")
	blocks := readmeBlocks(t, "Operating", "Deploying")
	if len(blocks) < 4 {
		t.Fatalf("found %d command blocks in Operating and Deploying", len(blocks))
	}
	runBlocks(t, bin, root, blocks)
}

// TestReadmeUsers runs the command blocks of "Users and tokens".
func TestReadmeUsers(t *testing.T) {
	t.Parallel()
	root, _ := filepath.Abs("../..")
	blocks := readmeBlocks(t, "Users and tokens")
	if len(blocks) < 2 {
		t.Fatalf("found %d command blocks in Users and tokens", len(blocks))
	}
	runBlocks(t, build(t), root, blocks)
}

// runBlocks runs README command blocks, each in a fresh directory. Comment
// lines after the first command are output the block must print. A block
// whose first line says it is not run is only checked for the repository
// files it names.
func runBlocks(t *testing.T, bin, root string, blocks []string) {
	t.Helper()
	for i, b := range blocks {
		lines := strings.Split(strings.TrimSpace(b), "\n")
		if strings.HasPrefix(lines[0], "# not run by the suite") {
			for _, w := range strings.Fields(b) {
				if strings.HasPrefix(w, "deploy/") {
					if _, err := os.Stat(filepath.Join(root, w)); err != nil {
						t.Errorf("block %d names %s: %v", i, w, err)
					}
				}
			}
			continue
		}
		var want []string
		started := false
		for _, l := range lines {
			if c, ok := strings.CutPrefix(l, "# "); ok && started {
				want = append(want, c)
			} else if !strings.HasPrefix(l, "#") {
				started = true
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		addr := freeAddr(t)
		b = strings.ReplaceAll(strings.ReplaceAll(b, "127.0.0.1:8080", addr), "localhost:8080", addr)
		b = strings.ReplaceAll(b, "127.0.0.1:9099", freeAddr(t))
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", b)
		cmd.Dir = t.TempDir()
		cmd.Env = append(cleanEnv(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "FEEDGATE_REPO="+root)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		// A block that fails before it stops what it started leaves a
		// process holding the output pipe: stop waiting for it.
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cancel()
		if err != nil {
			t.Errorf("README block %d failed: %v\n%s\n--- output:\n%s", i, err, b, out)
			continue
		}
		got := "\n" + string(out)
		for _, w := range want {
			if !strings.Contains(got, "\n"+w+"\n") {
				t.Errorf("README block %d did not print %q:\n%s\n--- output:\n%s", i, w, b, out)
			}
		}
	}
}
