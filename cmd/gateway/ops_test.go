package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// runGateway runs the gateway binary with args and env to completion.
func runGateway(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// cleanEnv is the test's environment less any FEEDGATE_* setting.
func cleanEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "FEEDGATE_") })
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFile serves with a YAML configuration file, checks that the
// environment overrides the file and flags override both, that secrets are
// masked, that `config check` prints a file that reads back the same, and
// that a misspelt key is refused with a suggestion.
func TestConfigFile(t *testing.T) {
	t.Parallel()
	bin := build(t)
	addr := freeAddr(t)
	cfg := writeFile(t, "feedgate.yaml", fmt.Sprintf(`# a test configuration
listen: %q
data-dir: %q
public-url: http://%s
allow-private: true
retention: 50
max-count: 30
allowed-origins:
  - https://a.example
  - https://b.example
max-lifetime: 1h
redis-url: ""
`, addr, t.TempDir(), addr))

	out, stderr, err := runGateway(t, bin, []string{"FEEDGATE_MAX_COUNT=40"}, "config", "check", "--config", cfg, "--retention", "60")
	if err != nil {
		t.Fatalf("config check: %v\n%s", err, stderr)
	}
	var eff map[string]any
	if err := yaml.Unmarshal([]byte(out), &eff); err != nil {
		t.Fatalf("config check printed no YAML: %v\n%s", err, out)
	}
	want := map[string]string{
		"listen": addr, "retention": "60", "max-count": "40", "max-lifetime": "1h0m0s",
		"allow-private": "true", "allowed-origins": "[https://a.example https://b.example]", "keepalive": "20s",
	}
	for k, v := range want {
		if got := fmt.Sprint(eff[k]); got != v {
			t.Errorf("effective %s = %q, want %q", k, got, v)
		}
	}
	for line, src := range map[string]string{"retention: 60": "# flag", "max-count: 40": "# env FEEDGATE_MAX_COUNT", "max-lifetime: 1h0m0s": "# file"} {
		if !strings.Contains(out, line+" "+src) {
			t.Errorf("config check does not say %q comes from %q:\n%s", line, src, out)
		}
	}
	// What config check prints is itself a configuration file.
	again, stderr, err := runGateway(t, bin, nil, "config", "check", "--config", writeFile(t, "effective.yaml", out))
	if err != nil {
		t.Fatalf("config check of its own output: %v\n%s", err, stderr)
	}
	if strip := regexp.MustCompile(` # .*`); strip.ReplaceAllString(again, "") != strip.ReplaceAllString(out, "") {
		t.Errorf("config check output does not read back the same:\n%s\n---\n%s", out, again)
	}

	// Secrets: a password in a URL.
	out, stderr, err = runGateway(t, bin, []string{"FEEDGATE_REDIS_URL=redis://:hunter2@127.0.0.1:1/0"}, "config", "check", "--config", cfg)
	if err != nil || strings.Contains(out, "hunter2") || !strings.Contains(out, "redis://:********@127.0.0.1:1/0") {
		t.Errorf("redis password not masked (%v):\n%s%s", err, out, stderr)
	}

	// Mistakes are refused with a reason.
	bad := writeFile(t, "bad.yaml", "listen: \":0\"\nretension: 5\n")
	if _, stderr, err := runGateway(t, bin, nil, "config", "check", "--config", bad); err == nil || !strings.Contains(stderr, `unknown key "retension" (did you mean "retention"?)`) {
		t.Errorf("misspelt key: %v\n%s", err, stderr)
	}
	if _, stderr, err := runGateway(t, bin, nil, "config", "check", "--retention", "0"); err == nil || !strings.Contains(stderr, "retention must be at least 1") {
		t.Errorf("retention 0 accepted: %v\n%s", err, stderr)
	}
	if _, stderr, err := runGateway(t, bin, nil, "config", "check", "--config", writeFile(t, "notmap.yaml", "- a\n- b\n")); err == nil || !strings.Contains(stderr, "not a YAML map") {
		t.Errorf("a list as configuration: %v\n%s", err, stderr)
	}

	// serve takes the same file (by environment this time); the flag wins.
	p := start(t, addr, []string{"FEEDGATE_CONFIG=" + cfg, "FEEDGATE_LOG_FORMAT=json"})
	code, body := call(t, "GET", p.url+"/?hub.mode=retrieve&hub.topic=x&format=json&count=45", "demo:x", "", "")
	if code != 401 {
		t.Fatalf("retrieve without a user: %d %s", code, body)
	}
	if !strings.Contains(p.logs.String(), `"msg":"feedgate serving"`) {
		t.Errorf("FEEDGATE_LOG_FORMAT=json did not override the file's default:\n%s", p.logs.String())
	}
	p.stop(t)
}

// TestVersion builds with a version baked in and checks `version`,
// `--version` and feedgate_build_info.
func TestVersion(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "gateway")
	const v = "1.2.3-test"
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, stderr, err := runGateway(t, bin, nil, args...)
		if err != nil || !strings.HasPrefix(out, "feedgate "+v+" (go") {
			t.Errorf("gateway %s: %v %q %s", args[0], err, out, stderr)
		}
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data-dir", t.TempDir())
	cmd.Env = cleanEnv()
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	fams := scrapeWhenUp(t, "http://"+addr+"/metrics", logs)
	f := fams["feedgate_build_info"]
	if f == nil || len(f.Metric) != 1 || labelOf(f.Metric[0], "version") != v || f.Metric[0].GetGauge().GetValue() != 1 {
		t.Fatalf("feedgate_build_info: %v", f)
	}
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// scrape reads a /metrics page.
func scrape(u string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

func scrapeWhenUp(t *testing.T, u string, logs *syncBuffer) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		fams, err := scrape(u)
		if err == nil {
			return fams
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics at %s within 15 s: %v\n%s", u, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling a starting process; bounded above
	}
}

// TestKubernetesConfigChecks runs `config check` on the configuration file
// of deploy/kubernetes/configmap.yaml.
func TestKubernetesConfigChecks(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../deploy/kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil || cm.Data["feedgate.yaml"] == "" {
		t.Fatalf("configmap.yaml has no data.feedgate.yaml: %v", err)
	}
	cfg := writeFile(t, "feedgate.yaml", cm.Data["feedgate.yaml"])
	out, stderr, err := runGateway(t, build(t), []string{"FEEDGATE_REDIS_URL=redis://:pw@redis:6379/0"}, "config", "check", "--config", cfg)
	if err != nil {
		t.Fatalf("config check of the Kubernetes configuration: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "log-format: json # file") || !strings.Contains(out, `admin-listen: :9090 # file`) || !strings.Contains(out, "redis-url: redis://:********@redis:6379/0 # env") {
		t.Fatalf("unexpected effective configuration:\n%s", out)
	}
}

// promName finds metric names in a PromQL expression, with the labels
// matched right after them ({a="b",c=~"d"}).
var promName = regexp.MustCompile(`\b((?:feedgate|go|process)_[a-zA-Z0-9_]*)(\{[^}]*\})?`)
var promLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
var promBy = regexp.MustCompile(`by \(([^)]*)\)`)

// TestDashboardMetrics makes a gateway export every series the Grafana
// dashboard of deploy/grafana uses (a fetch that works and one that fails, a
// stream and one refused, webhooks that succeed and fail, cached retrieves) and checks each
// metric name and label of the dashboard's queries against its /metrics.
func TestDashboardMetrics(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../deploy/grafana/feedgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	type use struct{ name, panel string }
	labels := map[use][]string{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			ms := promName.FindAllStringSubmatch(tg.Expr, -1)
			if len(ms) == 0 {
				t.Errorf("panel %q: no feedgate metric in %q", p.Title, tg.Expr)
			}
			var by []string
			for _, b := range promBy.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(b[1], ",") {
					if l = strings.TrimSpace(l); l != "le" && l != "instance" {
						by = append(by, l)
					}
				}
			}
			for _, m := range ms {
				u := use{m[1], p.Title}
				for _, l := range promLabel.FindAllStringSubmatch(m[2], -1) {
					if l[1] != "instance" {
						labels[u] = append(labels[u], l[1])
					}
				}
				labels[u] = append(labels[u], by...)
			}
		}
	}

	addr := freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_ALLOW_PRIVATE=true",
		"FEEDGATE_PUBLIC_URL=http://" + addr, "FEEDGATE_RETRY_ATTEMPTS=2", "FEEDGATE_MAX_CONNS_PER_USER=1"}
	p := start(t, addr, env)
	creds := "dash:" + userAdd(t, env, "dash", "--rights", "all")
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/broken") {
			http.Error(w, "down for maintenance", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/rss+xml")
		io.WriteString(w, feedDoc)
	}))
	defer upstream.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer failing.Close()
	cb, _, posts := callbackServer(t)

	for _, topic := range []string{upstream.URL + "/feed", upstream.URL + "/broken"} {
		if code, body := form(t, p.url, creds, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}); code != 204 {
			t.Fatalf("subscribe %s: %d %s", topic, code, body)
		}
	}
	topic := "https://walk.example/dash"
	for _, c := range []string{cb.URL, failing.URL} {
		q := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {c}, "format": {"json"}}
		if code, body := form(t, p.url, creds, q); code != 204 {
			t.Fatalf("subscribe %s: %d %s", c, code, body)
		}
	}
	login, token, _ := strings.Cut(creds, ":")
	req, _ := http.NewRequest("GET", p.url+"/?hub.mode=retrieve&wait=stream&format=json&hub.topic="+url.QueryEscape(topic), nil)
	req.SetBasicAuth(login, token)
	stream, err := http.DefaultClient.Do(req)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, stream)
	}
	defer stream.Body.Close()
	// A second live connection is over the user's limit (refused, counted).
	if code, body := call(t, "GET", p.url+"/?hub.mode=retrieve&wait=stream&format=json&hub.topic="+url.QueryEscape(topic), creds, "", ""); code != 429 {
		t.Fatalf("a second stream over --max-conns-per-user=1: %d %s", code, body)
	}
	if code, body := call(t, "POST", p.url+"/?hub.mode=publish&hub.topic="+url.QueryEscape(topic), creds, "application/rss+xml", feedDoc); code != 200 {
		t.Fatalf("fat ping: %d %s", code, body)
	}
	select {
	case <-posts:
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook delivery within 10 s")
	}
	for range 3 {
		checkItems(t, p.url, creds, topic)
	}

	// Wait until every metric of the dashboard is exported (some appear
	// only once a fetch or a delivery has failed), then check labels.
	var fams map[string]*dto.MetricFamily
	var missing []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		fams, err = scrape(p.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		missing = missing[:0]
		for u := range labels {
			if family(fams, u.name) == nil {
				missing = append(missing, u.name)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // waiting for background fetches and retries; bounded above
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Fatalf("the dashboard uses metrics /metrics does not export: %v", slices.Compact(missing))
	}
	for u, ls := range labels {
		f := family(fams, u.name)
		have := map[string]bool{}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				have[l.GetName()] = true
			}
		}
		for _, l := range ls {
			if !have[l] {
				t.Errorf("panel %q: %s has no label %q (it has %v)", u.panel, u.name, l, have)
			}
		}
	}
}

// family finds a metric family by a name used in PromQL (histograms are
// queried through _bucket, _sum and _count).
func family(fams map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f := fams[name]; f != nil {
		return f
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := fams[base]; f != nil && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
				return f
			}
		}
	}
	return nil
}

func execGateway(bin string, env []string, args ...string) *exec.Cmd {
	c := exec.Command(bin, args...)
	c.Env = append(cleanEnv(), env...)
	return c
}
