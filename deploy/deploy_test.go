// Package deploy_test checks the deployment files of the repository (there
// is no cluster or Docker daemon here to try them on): the Kubernetes
// manifests, the compose file and its load balancer, the Dockerfile, its
// build context and the image build script.
package deploy_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// docs reads every YAML document of a file.
func docs(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var out []map[string]any
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
}

// get walks a decoded YAML tree by keys and list indexes.
func get(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if v == nil {
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func sameLabels(a, b any) bool {
	am, _ := a.(map[string]any)
	bm, _ := b.(map[string]any)
	if len(am) == 0 {
		return false
	}
	for k, v := range am {
		if str(bm[k]) != str(v) {
			return false
		}
	}
	return true
}

// TestKubernetes checks deploy/kubernetes: every file is part of the
// kustomization and has apiVersion, kind and a name; the Deployment probes
// /readyz and /healthz; the public Service selects the pods and never the
// admin port; the PodDisruptionBudget covers the pods; the admin port is
// open only to labelled pods.
func TestKubernetes(t *testing.T) {
	dir := "kubernetes"
	kust := docs(t, filepath.Join(dir, "kustomization.yaml"))[0]
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	var listed []string
	for _, r := range get(kust, "resources").([]any) {
		listed = append(listed, r.(string))
	}
	byKind := map[string]map[string]any{}
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		if !slices.Contains(listed, base) {
			t.Errorf("%s is not listed in kustomization.yaml", base)
		}
		for _, d := range docs(t, f) {
			kind := str(d["kind"])
			if str(d["apiVersion"]) == "" || kind == "" || str(get(d, "metadata", "name")) == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", base)
			}
			byKind[kind] = d
		}
	}
	for _, k := range []string{"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "NetworkPolicy"} {
		if byKind[k] == nil {
			t.Fatalf("no %s in deploy/kubernetes", k)
		}
	}

	dep := byKind["Deployment"]
	podLabels := get(dep, "spec", "template", "metadata", "labels")
	if !sameLabels(get(dep, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("the Deployment's selector does not match its pod labels")
	}
	c := get(dep, "spec", "template", "spec", "containers", 0)
	ports := map[string]string{}
	for _, p := range get(c, "ports").([]any) {
		ports[str(get(p, "name"))] = str(get(p, "containerPort"))
	}
	if ports["http"] != "8080" || ports["admin"] != "9090" {
		t.Errorf("container ports: %v, want http 8080 and admin 9090", ports)
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := str(get(c, probe, "httpGet", "path")); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		if got := str(get(c, probe, "httpGet", "port")); got != "http" {
			t.Errorf("%s port %q, want the public port (http)", probe, got)
		}
	}
	args := strings.Join(func() []string {
		var a []string
		for _, v := range get(c, "args").([]any) {
			a = append(a, str(v))
		}
		return a
	}(), " ")
	if !strings.Contains(args, "--config /etc/feedgate/feedgate.yaml") {
		t.Errorf("container args %q do not read the ConfigMap's file", args)
	}
	env := map[string]any{}
	for _, e := range get(c, "env").([]any) {
		env[str(get(e, "name"))] = e
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(str(get(byKind["ConfigMap"], "data", "feedgate.yaml"))), &cfg); err != nil {
		t.Fatalf("the ConfigMap's feedgate.yaml: %v", err)
	}
	if str(cfg["admin-listen"]) != ":9090" || str(cfg["listen"]) != ":8080" {
		t.Errorf("the configuration puts the listeners on %q and %q, want :8080 and the admin port :9090", cfg["listen"], cfg["admin-listen"])
	}
	if get(env["FEEDGATE_REDIS_URL"], "valueFrom", "secretKeyRef") == nil {
		t.Error("the Redis URL does not come from a Secret")
	}
	if grace, _ := get(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(uint64); grace < 25 {
		t.Errorf("terminationGracePeriodSeconds %d leaves no time for the graceful shutdown (shutdown-timeout 20s)", grace)
	}

	svc := byKind["Service"]
	if !sameLabels(get(svc, "spec", "selector"), podLabels) {
		t.Error("the Service does not select the Deployment's pods")
	}
	if typ := str(get(svc, "spec", "type")); typ != "" && typ != "ClusterIP" && typ != "LoadBalancer" {
		t.Errorf("Service type %q", typ)
	}
	for _, p := range get(svc, "spec", "ports").([]any) {
		if tp := str(get(p, "targetPort")); tp == "admin" || tp == "9090" || str(get(p, "port")) == "9090" {
			t.Errorf("the public Service exposes the admin port: %v", p)
		}
	}

	pdb := byKind["PodDisruptionBudget"]
	if !sameLabels(get(pdb, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("the PodDisruptionBudget does not select the Deployment's pods")
	}
	if get(pdb, "spec", "maxUnavailable") == nil && get(pdb, "spec", "minAvailable") == nil {
		t.Error("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}

	np := byKind["NetworkPolicy"]
	if !sameLabels(get(np, "spec", "podSelector", "matchLabels"), podLabels) {
		t.Error("the NetworkPolicy does not select the Deployment's pods")
	}
	for _, rule := range get(np, "spec", "ingress").([]any) {
		for _, p := range get(rule, "ports").([]any) {
			if port := str(get(p, "port")); (port == "admin" || port == "9090") && get(rule, "from") == nil {
				t.Error("the NetworkPolicy opens the admin port to everyone")
			}
		}
	}
}

// TestCompose checks docker-compose.yml: a load balancer publishes the only
// public port and balances over both gateways (deploy/compose/nginx.conf),
// which share one Redis and publish nothing themselves.
func TestCompose(t *testing.T) {
	c := docs(t, "../docker-compose.yml")[0]
	services, _ := c["services"].(map[string]any)
	for _, s := range []string{"lb", "gateway-1", "gateway-2", "redis"} {
		if services[s] == nil {
			t.Fatalf("no service %q in docker-compose.yml", s)
		}
	}
	if got := str(get(services, "lb", "ports", 0)); got != "8080:8080" {
		t.Errorf("lb publishes %q, want 8080:8080", got)
	}
	var conf string
	for _, v := range get(services, "lb", "volumes").([]any) {
		if src, dst, ok := strings.Cut(str(v), ":"); ok && strings.HasPrefix(dst, "/etc/nginx/nginx.conf") {
			conf = src
		}
	}
	if conf == "" {
		t.Fatal("the lb service does not mount an nginx.conf")
	}
	raw, err := os.ReadFile(filepath.Join("..", conf))
	if err != nil {
		t.Fatalf("the lb's configuration: %v", err)
	}
	nginx := string(raw)
	for _, want := range []string{"server gateway-1:8080", "server gateway-2:8080", "proxy_buffering off", "proxy_read_timeout 1h", "proxy_set_header Upgrade $http_upgrade", "listen 8080"} {
		if !strings.Contains(nginx, want) {
			t.Errorf("%s lacks %q", conf, want)
		}
	}
	for _, g := range []string{"gateway-1", "gateway-2"} {
		s := services[g]
		if get(s, "ports") != nil {
			t.Errorf("%s publishes ports; only the load balancer should", g)
		}
		if got := str(get(s, "environment", "FEEDGATE_REDIS_URL")); got != "redis://redis:6379/0" {
			t.Errorf("%s FEEDGATE_REDIS_URL = %q", g, got)
		}
		if get(s, "build") == nil || get(s, "healthcheck", "test") == nil {
			t.Errorf("%s has no build or health check", g)
		}
	}
	if roles := str(get(services, "gateway-1", "environment", "FEEDGATE_ROLE")) + "," + str(get(services, "gateway-2", "environment", "FEEDGATE_ROLE")); roles != "all,api" {
		t.Errorf("roles %s, want one node fetching (all) and one api node", roles)
	}
}

// dockerignore is the patterns of ../.dockerignore, in order.
func dockerignore(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pats []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			pats = append(pats, l)
		}
	}
	return pats
}

// ignored applies Docker's rules for the patterns used in .dockerignore:
// paths relative to the context, a leading "/" is dropped, "**/" matches any
// number of directories, a pattern matching a directory excludes what is
// in it, and a later "!pattern" re-includes.
func ignored(pats []string, file string) bool {
	out := false
	for _, p := range pats {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/")
		if matchPath(p, file) {
			out = !neg
		}
	}
	return out
}

func matchPath(pat, file string) bool {
	parts := strings.Split(file, "/")
	for i := 1; i <= len(parts); i++ { // the file or any directory above it
		prefix := strings.Join(parts[:i], "/")
		if rest, ok := strings.CutPrefix(pat, "**/"); ok {
			for j := 0; j < i; j++ {
				if m, _ := path.Match(rest, strings.Join(parts[j:i], "/")); m {
					return true
				}
			}
			continue
		}
		if m, _ := path.Match(pat, prefix); m {
			return true
		}
	}
	return false
}

// TestDockerBuildContext checks that .dockerignore keeps every file the
// image's `go build ./cmd/gateway` reads (sources, embedded files, go.mod,
// go.sum, LICENSE) and leaves out what must not travel (.git, data, node
// modules).
func TestDockerBuildContext(t *testing.T) {
	pats := dockerignore(t)
	out, err := exec.Command("go", "list", "-deps", "-f", `{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles ","}}|{{join .EmbedFiles ","}}{{end}}{{end}}`, "../cmd/gateway").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, _ := filepath.Abs("..")
	need := []string{"go.mod", "go.sum", "LICENSE", "Dockerfile"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, _ := strings.Cut(line, "|")
		rel, _ := filepath.Rel(root, dir)
		for _, f := range strings.FieldsFunc(strings.ReplaceAll(files, "|", ","), func(r rune) bool { return r == ',' }) {
			need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(need) < 20 {
		t.Fatalf("go list found only %d files: %s", len(need), out)
	}
	for _, f := range need {
		if f == "Dockerfile" {
			continue // docker reads it even when ignored
		}
		if ignored(pats, f) {
			t.Errorf(".dockerignore leaves out %s, which the image build needs", f)
		}
	}
	for _, f := range []string{".git/HEAD", "data/feedgate.db", "web/e2e/node_modules/x/index.js", "hub/testdata/websub-subscriber/node_modules/a.js", "gateway", "x.test"} {
		if !ignored(pats, f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

// TestDockerfile checks what the image promises: the version baked into
// the binary, a non-root user, the health check through `gateway health`,
// and the listen port exposed.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, want := range []string{
		`-X main.version=${VERSION}`, "./cmd/gateway", "USER 65532:65532", `CMD ["/gateway", "health"]`,
		"ENV FEEDGATE_LISTEN=:8080", "EXPOSE 8080", "COPY LICENSE /LICENSE",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`(?m)^FROM golang:(\S+)`).FindStringSubmatch(df); m == nil {
		t.Error("the build stage is not FROM golang")
	} else if gomod, _ := os.ReadFile("../go.mod"); !regexp.MustCompile(`(?m)^go ` + regexp.QuoteMeta(m[1])).Match(gomod) {
		t.Errorf("the build image golang:%s does not match go.mod's Go version", m[1])
	}
}

// TestDockerBuildScript runs deploy/docker-build.sh with stand-ins for the
// docker client: one without a daemon (the script must say so and fail),
// one that records the build it is asked for.
func TestDockerBuildScript(t *testing.T) {
	dir := t.TempDir()
	down := filepath.Join(dir, "docker-down")
	os.WriteFile(down, []byte("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n"), 0o755)
	cmd := exec.Command("bash", "docker-build.sh")
	cmd.Env = append(os.Environ(), "DOCKER="+down)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot reach a daemon") {
		t.Errorf("without a daemon: %v %s", err, out)
	}

	log := filepath.Join(dir, "calls")
	rec := filepath.Join(dir, "docker-rec")
	os.WriteFile(rec, []byte("#!/bin/sh\necho \"$@\" >> "+log+"\n"), 0o755)
	cmd = exec.Command("bash", "docker-build.sh", "registry.example/feedgate:t1")
	cmd.Env = append(os.Environ(), "DOCKER="+rec, "VERSION=9.9.9")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-build.sh: %v %s", err, out)
	}
	calls, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(calls)), "\n")
	if len(lines) != 2 || lines[0] != "info" || lines[1] != "build --build-arg VERSION=9.9.9 -t registry.example/feedgate:t1 ." {
		t.Errorf("docker was called as:\n%s", calls)
	}
}

// TestDashboardJSON checks the Grafana dashboard's structure (its metric
// names are checked against a running gateway in cmd/gateway).
func TestDashboardJSON(t *testing.T) {
	raw, err := os.ReadFile("grafana/feedgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Type    string
			Title   string
			GridPos struct{ H, W, X, Y int } `json:"gridPos"`
			Targets []struct {
				Expr  string
				RefID string `json:"refId"`
			}
		}
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard: uid %q title %q, %d panels", d.UID, d.Title, len(d.Panels))
	}
	for _, p := range d.Panels {
		if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q lies outside the 24-column grid: %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: a target without a query or with a repeated refId", p.Title)
			}
			refs[tg.RefID] = true
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced query %q", p.Title, tg.Expr)
			}
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
}

// TestComposeCluster checks deploy/compose/cluster.yml: the load balancer
// publishes the only public port, two gateways use the Redis Cluster (its
// seeds, WAIT 1) once it is created, and six Redis nodes in cluster mode
// announce their names.
func TestComposeCluster(t *testing.T) {
	c := docs(t, "compose/cluster.yml")[0]
	services, _ := c["services"].(map[string]any)
	for _, s := range []string{"lb", "gateway-1", "gateway-2", "redis-init"} {
		if services[s] == nil {
			t.Fatalf("no service %q in compose/cluster.yml", s)
		}
	}
	if got := str(get(services, "lb", "ports", 0)); got != "8080:8080" {
		t.Errorf("lb publishes %q, want 8080:8080", got)
	}
	for _, g := range []string{"gateway-1", "gateway-2"} {
		s := services[g]
		if get(s, "ports") != nil {
			t.Errorf("%s publishes ports; only the load balancer should", g)
		}
		if got := str(get(s, "environment", "FEEDGATE_REDIS_CLUSTER")); got != "redis-1:6379,redis-2:6379,redis-3:6379" {
			t.Errorf("%s FEEDGATE_REDIS_CLUSTER = %q", g, got)
		}
		if got := str(get(s, "environment", "FEEDGATE_REDIS_WAIT_REPLICAS")); got != "1" {
			t.Errorf("%s FEEDGATE_REDIS_WAIT_REPLICAS = %q, want 1", g, got)
		}
		if got := str(get(s, "depends_on", "redis-init", "condition")); got != "service_completed_successfully" {
			t.Errorf("%s starts %q redis-init, want once it completed", g, got)
		}
	}
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("redis-%d", i)
		cmd := str(get(services, name, "command"))
		for _, want := range []string{"--cluster-enabled yes", "--appendonly yes", "--cluster-announce-hostname " + name} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s command %q lacks %q", name, cmd, want)
			}
		}
		if get(services, "redis-init", "depends_on", name) == nil {
			t.Errorf("redis-init does not wait for %s", name)
		}
	}
	if init := fmt.Sprint(get(services, "redis-init", "command")); !strings.Contains(init, "--cluster create") || !strings.Contains(init, "--cluster-replicas 1") {
		t.Errorf("redis-init does not create the cluster with one replica per master: %s", init)
	}
}
