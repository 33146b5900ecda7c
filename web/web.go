// Package web serves feedgate's browser side from assets embedded in the
// binary: the dependency-free client and widget (/feedgate.js and its
// stylesheet /feedgate.css), the jQuery plugin (/jquery.feedgate.js), the
// demo console (/demo) and the landing page a browser sees at /.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static
var files embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body   []byte
	gzip   []byte // nil when compressing does not pay
	ctype  string
	etag   string
	html   bool
	public bool // may be cached by browsers for a while (scripts, styles, images)
}

// contentTypes are the types of the files under static/ (by extension).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".json": "application/json",
	".txt":  "text/plain; charset=utf-8",
}

// assetMaxAge is how long browsers reuse scripts and styles before asking
// again (with If-None-Match). Short, so a new gateway version's client
// reaches pages that embed /feedgate.js within minutes.
const assetMaxAge = "public, max-age=300"

// pagePolicy is the Content-Security-Policy of the gateway's own pages:
// scripts and styles only from the gateway; the demo may connect to any hub.
const pagePolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' http: https: ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

var assets = mustLoad()

func mustLoad() map[string]*asset {
	out := map[string]*asset{}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		ext := path.Ext(p)
		ctype, ok := contentTypes[ext]
		if !ok {
			ctype = http.DetectContentType(body)
		}
		sum := sha256.Sum256(body)
		a := &asset{
			body:   body,
			ctype:  ctype,
			etag:   `"` + hex.EncodeToString(sum[:12]) + `"`,
			html:   ext == ".html",
			public: ext != ".html",
		}
		if ext != ".png" {
			a.gzip = compress(body)
		}
		out[strings.TrimPrefix(p, "static/")] = a
		return nil
	})
	if err != nil {
		// The files are compiled in: failing here is a broken build.
		panic("web: reading embedded assets: " + err.Error())
	}
	return out
}

func compress(body []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(body)
	zw.Close()
	if buf.Len() >= len(body)*9/10 {
		return nil
	}
	return buf.Bytes()
}

// Handler serves the browser routes: /feedgate.js, /feedgate.css,
// /jquery.feedgate.js, /demo and /static/{file}, each for GET and HEAD, with
// its content type, an ETag and caching headers. Requests for other paths
// go to next.
func Handler(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	for route, name := range map[string]string{
		"/feedgate.js":        "feedgate.js",
		"/feedgate.css":       "feedgate.css",
		"/jquery.feedgate.js": "jquery.feedgate.js",
		"/demo":               "demo.html",
	} {
		mux.HandleFunc("GET "+route, func(w http.ResponseWriter, r *http.Request) { serveAsset(w, r, name) })
	}
	mux.HandleFunc("GET /static/{file...}", func(w http.ResponseWriter, r *http.Request) {
		serveAsset(w, r, r.PathValue("file"))
	})
	if next != nil {
		mux.Handle("/", next)
	}
	return mux
}

// Landing answers a browser that opens / with the landing page: what this
// gateway is, and links to the demo, the documentation and health.
func Landing(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Vary", "Accept")
	serveAsset(w, r, "index.html")
}

func serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := assets[name]
	if !ok || name == "" || strings.HasSuffix(name, "/") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "no such file %s; the browser assets are /feedgate.js, /jquery.feedgate.js and /demo\n", truncate(name))
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if a.public {
		h.Set("Cache-Control", assetMaxAge)
		// Public assets may be loaded by pages of any origin (crossorigin, SRI).
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if a.html {
		h.Set("Content-Security-Policy", pagePolicy)
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
	}
	if a.gzip != nil {
		h.Add("Vary", "Accept-Encoding")
	}
	if match(r.Header.Get("If-None-Match"), a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if a.gzip != nil && acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		body = a.gzip
	}
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// match reports whether an If-None-Match header names etag (or is *).
func match(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == etag || v == "*" {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding allows gzip (q > 0).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q, found := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		if !found {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
