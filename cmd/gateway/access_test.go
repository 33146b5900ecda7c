package main_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// gw runs a gateway subcommand with env and returns stdout and stderr.
func gw(t *testing.T, env []string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(build(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// TestDemoTokenNotLogged: the first start prints the demo user's token to
// the terminal once, and no log record carries it.
func TestDemoTokenNotLogged(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_LOG_FORMAT=json"}
	p := start(t, addr, env)
	var token string
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "token: "); ok {
			token = v
		}
	}
	if token == "" {
		t.Fatalf("the demo token was not printed:\n%s", p.logs.String())
	}
	for _, line := range strings.Split(p.logs.String(), "\n") {
		if strings.HasPrefix(line, "{") && strings.Contains(line, token) {
			t.Fatalf("a log record carries the demo token: %s", line)
		}
	}
	if code, body := call(t, "GET", p.url+"/?hub.mode=list", "demo:"+token, "", ""); code != 200 {
		t.Fatalf("the printed demo token does not work: %d %s", code, body)
	}
}

// TestUserRotateExpiresRemove manages users of a running gateway through
// its admin socket: an expiring user, a rotation, and a removal that takes
// the user's webhook subscriptions with it.
func TestUserRotateExpiresRemove(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_PUBLIC_URL=http://" + addr}
	p := start(t, addr, env)

	// --expires: listed, and refused once past.
	out, errOut, err := gw(t, env, "user", "add", "temp", "--rights", "list", "--expires", "2s")
	if err != nil {
		t.Fatalf("user add --expires: %v %s", err, errOut)
	}
	tempCreds := "temp:" + lastLine(out)
	if code, body := call(t, "GET", p.url+"/?hub.mode=list", tempCreds, "", ""); code != 200 {
		t.Fatalf("an unexpired token: %d %s", code, body)
	}
	if out, _, _ := gw(t, env, "user", "list"); !strings.Contains(out, "temp") || strings.Contains(strings.SplitN(out[strings.Index(out, "temp"):], "\n", 2)[0], "never") {
		t.Fatalf("user list does not show the expiry:\n%s", out)
	}
	if _, errOut, err := gw(t, env, "user", "add", "bad", "--expires", "yesterday"); err == nil || !strings.Contains(errOut, "--expires") {
		t.Fatalf("a bad --expires was accepted: %s", errOut)
	}

	// rotate: the new token works at once, the old one is refused.
	oldTok := userAdd(t, env, "rot", "--rights", "list")
	out, errOut, err = gw(t, env, "user", "rotate", "rot")
	if err != nil {
		t.Fatalf("user rotate: %v %s", err, errOut)
	}
	newTok := lastLine(out)
	if newTok == "" || newTok == oldTok {
		t.Fatalf("rotate printed %q", out)
	}
	if code, _ := call(t, "GET", p.url+"/?hub.mode=list", "rot:"+oldTok, "", ""); code != 401 {
		t.Fatalf("the rotated-away token: %d, want 401", code)
	}
	if code, body := call(t, "GET", p.url+"/?hub.mode=list", "rot:"+newTok, "", ""); code != 200 {
		t.Fatalf("the new token: %d %s", code, body)
	}

	// remove: subscriptions go with the user; deliveries stop.
	topic := "https://walk.example/removed"
	hookCreds := "hook:" + userAdd(t, env, "hook", "--rights", "all")
	otherCreds := "other:" + userAdd(t, env, "other", "--rights", "all")
	cb, verifications, posts := callbackServer(t)
	sub := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {cb.URL + "/hook"}}
	if code, body := form(t, p.url, hookCreds, sub); code != 204 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	<-verifications
	if code, body := form(t, p.url, otherCreds, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}); code != 204 {
		t.Fatalf("subscribe other: %d %s", code, body)
	}
	if _, errOut, err := gw(t, env, "user", "remove", "hook"); err != nil {
		t.Fatalf("user remove: %v %s", err, errOut)
	}
	if code, _ := call(t, "GET", p.url+"/?hub.mode=list", hookCreds, "", ""); code != 401 {
		t.Fatalf("a removed user: %d, want 401", code)
	}
	// The topic is still followed by other: a fat ping stores items, and
	// nothing is delivered to the removed user's callback.
	if code, body := call(t, "POST", p.url+"/?hub.mode=publish&hub.topic="+url.QueryEscape(topic), otherCreds, "application/rss+xml", feedDoc); code != 200 {
		t.Fatalf("fat ping: %d %s", code, body)
	}
	checkItemsAs(t, p.url, otherCreds, topic)
	select {
	case d := <-posts:
		t.Fatalf("the removed user's callback got a delivery: %s", d.body)
	case <-time.After(2 * time.Second):
	}
}

func checkItemsAs(t *testing.T, base, creds, topic string) {
	t.Helper()
	code, body := call(t, "GET", base+"/?format=json&hub.mode=retrieve&hub.topic="+url.QueryEscape(topic), creds, "", "")
	var m struct {
		Items []json.RawMessage `json:"items"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &m) != nil || len(m.Items) == 0 {
		t.Fatalf("retrieve: %d %s", code, body)
	}
}

// TestTokenMint mints a JWT with `gateway token mint` and uses it as a
// Bearer token and as access_token=.
func TestTokenMint(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	secret := "a-long-enough-secret-for-hs256-signing-0123"
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_JWT_SECRET=" + secret}
	p := start(t, addr, env)
	out, errOut, err := gw(t, env, "token", "mint", "--sub", "demo", "--rights", "list", "--ttl", "1h")
	if err != nil {
		t.Fatalf("token mint: %v %s", err, errOut)
	}
	jwt := lastLine(out)
	req, _ := http.NewRequest("GET", p.url+"/?hub.mode=list", nil)
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("list with a minted Bearer token: %d", resp.StatusCode)
	}
	resp, err = http.Get(p.url + "/?hub.mode=list&access_token=" + jwt)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("list with access_token=: %d", resp.StatusCode)
	}
	// A right the token does not carry: 403.
	resp, err = http.Get(p.url + "/?hub.mode=publish&hub.url=https://walk.example/x&access_token=" + jwt)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("publish with a list-only token: %d, want 403", resp.StatusCode)
	}
	if _, errOut, err := gw(t, env, "token", "mint", "--sub", "demo", "--ttl", "0s"); err == nil {
		t.Fatalf("a token without expiry was minted: %s", errOut)
	}
}

// TestAdminListener: with --admin-listen, /metrics (with
// feedgate_build_info) and /debug/pprof/ are served there and not on the
// public port; without it /metrics is public and pprof is off.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	get := func(u string) (int, string) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	addr, adminAddr := freeAddr(t), freeAddr(t)
	p := start(t, addr, []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_ADMIN_LISTEN=" + adminAddr})
	if code, body := get("http://" + adminAddr + "/metrics"); code != 200 || !strings.Contains(body, "feedgate_build_info") {
		t.Fatalf("admin /metrics: %d, build info %v", code, strings.Contains(body, "feedgate_build_info"))
	}
	if code, body := get("http://" + adminAddr + "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("admin /debug/pprof/: %d", code)
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/goroutine"} {
		if code, _ := get(p.url + path); code != 404 {
			t.Errorf("public %s with --admin-listen: %d, want 404", path, code)
		}
	}

	addr = freeAddr(t)
	p = start(t, addr, []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir()})
	if code, body := get(p.url + "/metrics"); code != 200 || !strings.Contains(body, "feedgate_build_info") {
		t.Fatalf("public /metrics without --admin-listen: %d", code)
	}
	if code, _ := get(p.url + "/debug/pprof/"); code != 404 {
		t.Fatalf("public /debug/pprof/ without --admin-listen: %d, want 404", code)
	}
}
