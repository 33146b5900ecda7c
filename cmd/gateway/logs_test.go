package main_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/testkit"
)

// checkLogLines fails the test for any JSON log line of a gateway that is
// not valid JSON or repeats a key in one object (log processors keep one
// of the two values, and which one varies).
func checkLogLines(t *testing.T, logs string) {
	t.Helper()
	for i, line := range strings.Split(logs, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		if err := uniqueKeys(json.NewDecoder(strings.NewReader(line))); err != nil {
			t.Errorf("log line %d: %v\n%s", i+1, err, line)
		}
	}
}

// uniqueKeys reads one JSON value and reports a key repeated in an object.
func uniqueKeys(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("key %q twice", key)
			}
			seen[key] = true
			if err := uniqueKeys(dec); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('['):
		for dec.More() {
			if err := uniqueKeys(dec); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

// TestUniqueKeysCatches checks the checker itself on lines it must refuse.
func TestUniqueKeysCatches(t *testing.T) {
	for _, bad := range []string{`{"msg":"a","msg":"b"}`, `{"a":{"x":1,"x":2}}`, `{"a":[{"y":1,"y":1}]}`, `{"a":`} {
		if err := uniqueKeys(json.NewDecoder(strings.NewReader(bad))); err == nil {
			t.Errorf("%s passed", bad)
		}
	}
	if err := uniqueKeys(json.NewDecoder(strings.NewReader(`{"msg":"a","a":{"msg":1},"l":[1,{"msg":2}]}`))); err != nil {
		t.Errorf("a good line refused: %v", err)
	}
}

// logLines decodes the JSON log lines of a gateway (other lines, such as
// the demo user's token printed to the terminal, are skipped).
func logLines(logs string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// findLog returns the log lines whose msg is msg.
func findLog(logs, msg string) []map[string]any {
	var out []map[string]any
	for _, m := range logLines(logs) {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestOpsLogs checks the access log (what it says, and that no credential
// gets into any line) and the lines about failing fetches and webhook
// deliveries: a warning naming the topic, status and next attempt, then no
// more than one line a minute per topic however often it fails.
func TestOpsLogs(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_ALLOW_PRIVATE=true",
		"FEEDGATE_PUBLIC_URL=http://" + addr, "FEEDGATE_RETRY_ATTEMPTS=3",
		// The pings below come faster than the default one per second per topic.
		"FEEDGATE_PING_RATE_LIMIT=0"}
	p := start(t, addr, env)
	token := userAdd(t, env, "logger", "--rights", "all")
	creds := "logger:" + token
	var fetches atomic.Int32
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Get("hub.challenge") != "" {
			io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		fetches.Add(1)
		http.Error(w, "gone fishing", http.StatusServiceUnavailable)
	}))
	defer dead.Close()

	topic := dead.URL + "/feed"
	if code, body := form(t, p.url, creds, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}); code != 204 {
		t.Fatalf("subscribe: %d %s", code, body)
	}
	// Publish pings fetch the dead feed again and again.
	for i := 0; i < 8; i++ {
		call(t, "POST", p.url+"/?hub.mode=publish&hub.url="+url.QueryEscape(topic), creds, "", "")
		testkit.Eventually(t, 10*time.Second, fmt.Sprintf("fetch %d of the dead feed", i+2), func() bool { return fetches.Load() >= int32(i+2) })
	}
	// A webhook whose callback fails, on a topic whose feed works.
	alive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/rss+xml")
		io.WriteString(w, feedDoc)
	}))
	defer alive.Close()
	hooked := alive.URL + "/feed"
	if code, body := form(t, p.url, creds, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {hooked}, "hub.callback": {dead.URL + "/hook"}}); code != 204 {
		t.Fatalf("subscribe a callback: %d %s", code, body)
	}
	before := fetches.Load()
	call(t, "POST", p.url+"/?hub.mode=publish&hub.topic="+url.QueryEscape(hooked), creds, "application/rss+xml", feedDoc)
	testkit.Eventually(t, 10*time.Second, "a delivery attempt", func() bool { return fetches.Load() > before })
	// A retrieve with the credentials in the query string.
	auth := base64.StdEncoding.EncodeToString([]byte(creds))
	resp, err := http.Get(p.url + "/?hub.mode=retrieve&format=json&hub.topic=" + url.QueryEscape(hooked) + "&authorization=" + auth)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("retrieve with authorization=: %v %v", err, resp)
	}
	resp.Body.Close()
	testkit.Eventually(t, 10*time.Second, "the failed delivery logged", func() bool { return len(findLog(p.logs.String(), "delivery failed, will retry")) > 0 })
	// The access line of a request is written once its answer is sent: the
	// client may read the answer first.
	retrieveLogged := func(m map[string]any) bool {
		n, _ := m["bytes"].(float64)
		return m["mode"] == "retrieve" && m["user"] == "logger" && m["status"] == float64(200) && m["route"] == "/" && n > 0
	}
	testkit.Eventually(t, 10*time.Second, "the access log line of the retrieve by logger", func() bool {
		return slices.ContainsFunc(findLog(p.logs.String(), "http request"), retrieveLogged)
	})

	logs := p.logs.String()
	for _, secret := range []string{token, auth} {
		if strings.Contains(logs, secret) {
			t.Errorf("a credential is in the log:\n%s", logs)
		}
	}
	for _, m := range findLog(logs, "http request") {
		for _, k := range []string{"method", "route", "status", "bytes", "duration_ms", "user"} {
			if _, ok := m[k]; !ok {
				t.Errorf("access log line without %s: %v", k, m)
			}
		}
	}

	var failed []map[string]any
	for _, m := range findLog(logs, "fetch failed") {
		if m["topic"] == topic {
			failed = append(failed, m)
		}
	}
	if len(failed) != 1 {
		t.Fatalf("%d 'fetch failed' lines for %d failed fetches; want 1 (one a minute per topic):\n%s", len(failed), fetches.Load(), logs)
	}
	f := failed[0]
	if f["level"] != "WARN" || f["topic"] != topic || f["status"] != float64(503) || f["next_attempt"] == nil {
		t.Errorf("fetch failure line: %v", f)
	}
	d := findLog(logs, "delivery failed, will retry")[0]
	if d["level"] != "WARN" || d["topic"] != hooked || d["reason"] != "http_5xx" || d["next_attempt"] == nil {
		t.Errorf("delivery failure line: %v", d)
	}
}
