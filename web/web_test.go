package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			Landing(w, r)
			return
		}
		http.NotFound(w, r)
	})))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, method, path string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	// A bare transport: no transparent gzip, so the test sees what was sent.
	resp, err := (&http.Transport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	tests := []struct {
		path, ctype, cache, contains string
	}{
		{"/feedgate.js", "text/javascript; charset=utf-8", assetMaxAge, "Feedgate"},
		{"/feedgate.css", "text/css; charset=utf-8", assetMaxAge, ".feedgate-item"},
		{"/jquery.feedgate.js", "text/javascript; charset=utf-8", assetMaxAge, "$.fn.feedgate"},
		{"/demo", "text/html; charset=utf-8", "no-cache", "Watch a feed live"},
		{"/", "text/html; charset=utf-8", "no-cache", "real-time feed gateway"},
		{"/static/site.css", "text/css; charset=utf-8", assetMaxAge, "--accent"},
		{"/static/demo.js", "text/javascript; charset=utf-8", assetMaxAge, "Feedgate.widget"},
		{"/static/favicon.svg", "image/svg+xml", assetMaxAge, "<svg"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, srv, http.MethodGet, tt.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
			if got := resp.Header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control %q, want %q", got, tt.cache)
			}
			if resp.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if !bytes.Contains(body, []byte(tt.contains)) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			html := strings.HasPrefix(tt.ctype, "text/html")
			if csp := resp.Header.Get("Content-Security-Policy"); html != (csp != "") {
				t.Errorf("Content-Security-Policy %q on a page that is html=%v", csp, html)
			}
		})
	}
}

func TestConditionalAndCompressed(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	resp, plain := get(t, srv, http.MethodGet, "/feedgate.js", nil)
	etag := resp.Header.Get("ETag")

	resp, body := get(t, srv, http.MethodGet, "/feedgate.js", http.Header{"If-None-Match": {`"other", ` + etag}})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("If-None-Match with the ETag: status %d and %d bytes, want 304 and none", resp.StatusCode, len(body))
	}
	resp, _ = get(t, srv, http.MethodGet, "/feedgate.js", http.Header{"If-None-Match": {`"stale"`}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("If-None-Match with another ETag: status %d, want 200", resp.StatusCode)
	}

	resp, zipped := get(t, srv, http.MethodGet, "/feedgate.js", http.Header{"Accept-Encoding": {"br, gzip"}})
	if resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("Content-Encoding %q, Vary %q: want gzip and Accept-Encoding", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unzipped, plain) {
		t.Fatalf("gzip body does not inflate to the file (err %v)", err)
	}
	resp, _ = get(t, srv, http.MethodGet, "/feedgate.js", http.Header{"Accept-Encoding": {"gzip;q=0"}})
	if resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("gzip;q=0 was answered with Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}

	resp, body = get(t, srv, http.MethodHead, "/demo", nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Length") == "" {
		t.Fatalf("HEAD /demo: status %d, %d body bytes, Content-Length %q", resp.StatusCode, len(body), resp.Header.Get("Content-Length"))
	}
}

func TestUnknownFiles(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	for _, p := range []string{"/static/nope.js", "/static/", "/static/../web.go", "/static/%2e%2e/web.go"} {
		resp, body := get(t, srv, http.MethodGet, p, nil)
		// A path with dot segments is redirected to its clean form, which
		// is then not found.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMovedPermanently && resp.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("GET %s: status %d, want 404: %s", p, resp.StatusCode, body)
		}
		if bytes.Contains(body, []byte("package web")) {
			t.Errorf("GET %s served source code", p)
		}
	}
}

// Every local script, stylesheet and icon the pages name is served.
func TestPagesReferenceServedFiles(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	ref := regexp.MustCompile(`(?:src|href)="(/[^"#]*)"`)
	for _, page := range []string{"/", "/demo"} {
		_, body := get(t, srv, http.MethodGet, page, nil)
		for _, m := range ref.FindAllSubmatch(body, -1) {
			p := string(m[1])
			if p == "/" || p == "/healthz" || p == "/demo" {
				continue
			}
			if resp, _ := get(t, srv, http.MethodGet, p, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("%s names %s, which answers %d", page, p, resp.StatusCode)
			}
		}
	}
}
