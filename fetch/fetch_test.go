package fetch

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// deadResolver fails every lookup at once, standing for a DNS that does not
// know the name.
var deadResolver = &net.Resolver{
	PreferGo: true,
	Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	},
}

func TestCheckURLGuard(t *testing.T) {
	t.Parallel()
	f := New(Options{})
	ctx := ctxT(t)
	refused := map[string]string{
		"http://127.0.0.1/feed":              "loopback",
		"http://127.1.2.3:8080/feed":         "loopback",
		"http://[::1]/feed":                  "loopback",
		"http://localhost:9/feed":            "loopback",
		"http://169.254.169.254/latest/meta": "link-local",
		"http://[fe80::1]/":                  "link-local",
		"http://10.1.2.3/":                   "private",
		"http://172.16.0.1/":                 "private",
		"http://192.168.1.1/":                "private",
		"http://[fc00::1]/":                  "private",
		"http://[fd12:3456::1]/":             "private",
		"http://100.64.0.1/":                 "carrier-grade NAT",
		"http://0.0.0.0/":                    "unspecified",
		"http://[::]/":                       "unspecified",
		"http://224.0.0.1/":                  "multicast",
		"http://[ff02::1]/":                  "multicast",
		"http://[::ffff:127.0.0.1]/":         "loopback",
		"http://[64:ff9b::a9fe:a9fe]/":       "link-local",
		"http://[2002:c0a8:0101::1]/":        "private",
		"http://240.0.0.1/":                  "reserved",
		"https://198.18.0.1/":                "reserved",
	}
	for raw, reason := range refused {
		err := f.CheckURL(ctx, raw)
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("CheckURL(%s) = %v, want a *RefusedError", raw, err)
			continue
		}
		if !strings.Contains(err.Error(), reason) || !strings.Contains(err.Error(), "--allow-private") {
			t.Errorf("CheckURL(%s) = %q, want the reason %q and how to allow it", raw, err, reason)
		}
	}
	for _, raw := range []string{"http://93.184.216.34/feed", "https://[2606:4700::1111]/", "http://8.8.8.8:8080/x"} {
		if err := f.CheckURL(ctx, raw); err != nil {
			t.Errorf("CheckURL(%s) = %v, want nil (public)", raw, err)
		}
	}
	for _, raw := range []string{"ftp://example.com/", "http:///nohost", "http://example.com:99999/"} {
		var re *RefusedError
		if err := f.CheckURL(ctx, raw); err == nil || errors.As(err, &re) {
			t.Errorf("CheckURL(%s) = %v, want a URL error", raw, err)
		}
	}
	// A host that does not resolve is not refused.
	nodns := New(Options{Resolver: deadResolver})
	if err := nodns.CheckURL(ctx, "http://feeds.example.invalid/rss"); err != nil {
		t.Errorf("CheckURL of an unresolvable host = %v, want nil", err)
	}
	// --allow-private allows everything.
	if err := New(Options{AllowPrivate: true}).CheckURL(ctx, "http://127.0.0.1/"); err != nil {
		t.Errorf("CheckURL with AllowPrivate = %v", err)
	}
}

func TestGuardOnConnect(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	f := New(Options{ConnectTimeout: time.Second})
	ctx := ctxT(t)
	for _, raw := range []string{srv.URL + "/feed", strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/feed", "http://169.254.169.254/latest/meta-data/"} {
		start := time.Now()
		_, err := f.Get(ctx, raw, Conditional{})
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("Get(%s) = %v, want a *RefusedError", raw, err)
		}
		if time.Since(start) > 500*time.Millisecond {
			t.Errorf("Get(%s) took %s; the guard refuses before connecting", raw, time.Since(start))
		}
	}
	if _, err := f.Post(ctx, srv.URL, "text/plain", []byte("x"), nil); err == nil {
		t.Error("Post to loopback was not refused")
	}
	if hits.Load() != 0 {
		t.Fatalf("the loopback server was reached %d times", hits.Load())
	}
}

// TestGuardBeforeDial: with Options.Dial the guard still passes on every
// address before the dial, and Dial carries what it lets through.
func TestGuardBeforeDial(t *testing.T) {
	t.Parallel()
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	var dials atomic.Int64
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, strings.TrimPrefix(srv.URL, "http://"))
	}
	ctx := ctxT(t)
	f := New(Options{Dial: dial})
	var re *RefusedError
	if _, err := f.Get(ctx, "http://169.254.169.254/latest/meta-data/", Conditional{}); !errors.As(err, &re) {
		t.Fatalf("Get(link-local) = %v, want a *RefusedError", err)
	}
	if n := dials.Load(); n != 0 {
		t.Fatalf("Dial was called %d times for a refused address", n)
	}
	f = New(Options{Dial: dial, AllowAddrs: []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:80")}})
	resp, err := f.Get(ctx, "http://10.1.2.3/feed", Conditional{})
	if err != nil || string(resp.Body) != "ok" || dials.Load() != 1 {
		t.Fatalf("Get(allowed address) = %v, %v after %d dials; want the answer through Dial", resp, err, dials.Load())
	}
}

// TestGuardOnRedirect: a server that stands for a public host (allowed by
// AllowAddrs) redirects to a loopback one: the redirect is refused.
func TestGuardOnRedirect(t *testing.T) {
	t.Parallel()
	var inner atomic.Int64
	private := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { inner.Add(1) }))
	public := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, "public content")
		case "/to-localhost":
			http.Redirect(w, r, strings.Replace(private.URL, "127.0.0.1", "localhost", 1)+"/x", http.StatusFound)
		default:
			http.Redirect(w, r, private.URL+"/secret", http.StatusMovedPermanently)
		}
	}))
	pub := netip.MustParseAddrPort(strings.TrimPrefix(public.URL, "http://"))
	f := New(Options{AllowAddrs: []netip.AddrPort{pub}})
	ctx := ctxT(t)
	resp, err := f.Get(ctx, public.URL+"/ok", Conditional{})
	if err != nil || string(resp.Body) != "public content" {
		t.Fatalf("Get of the allowed server = %v, %v", resp, err)
	}
	if err := f.CheckURL(ctx, public.URL+"/ok"); err != nil {
		t.Fatalf("CheckURL of the allowed server: %v", err)
	}
	for _, path := range []string{"/redirect", "/to-localhost"} {
		_, err = f.Get(ctx, public.URL+path, Conditional{})
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), "loopback") {
			t.Fatalf("Get of a redirect to loopback (%s) = %v, want a *RefusedError", path, err)
		}
	}
	if inner.Load() != 0 {
		t.Fatalf("the loopback server behind the redirect was reached %d times", inner.Load())
	}
}

func TestFetcherGzipAndBodyLimit(t *testing.T) {
	t.Parallel()
	doc := []byte(`<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>gz</title><entry><id>1</id><title>gzipped</title></entry></feed>`)
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestSpeed)
	zeros := make([]byte, 1<<20)
	for range 16 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	var sawGzip atomic.Bool
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gzip":
			sawGzip.Store(strings.Contains(r.Header.Get("Accept-Encoding"), "gzip"))
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write(doc)
			_ = zw.Close()
		case "/bomb":
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb.Bytes())
		case "/big":
			for range 3 {
				_, _ = w.Write(zeros)
			}
		case "/error":
			w.WriteHeader(500)
			for range 3 {
				_, _ = w.Write(zeros)
			}
		}
	}))
	f := New(Options{AllowPrivate: true, MaxBody: 1 << 20})
	ctx := ctxT(t)
	resp, err := f.Get(ctx, srv.URL+"/gzip", Conditional{})
	if err != nil || !bytes.Equal(resp.Body, doc) || !sawGzip.Load() {
		t.Fatalf("gzip: err %v, asked for gzip %v, body equal %v", err, sawGzip.Load(), err == nil && bytes.Equal(resp.Body, doc))
	}
	for _, path := range []string{"/bomb", "/big"} {
		_, err := f.Get(ctx, srv.URL+path, Conditional{})
		var tl *BodyTooLargeError
		if !errors.As(err, &tl) || !strings.Contains(err.Error(), "1 MiB") {
			t.Fatalf("Get(%s) = %v, want a *BodyTooLargeError naming the 1 MiB limit", path, err)
		}
	}
	resp, err = f.Get(ctx, srv.URL+"/error", Conditional{})
	if err != nil || resp.StatusCode != 500 || len(resp.Body) != errorBodyLimit {
		t.Fatalf("an error answer: %v; want its first %d bytes", err, errorBodyLimit)
	}
}

func TestFetcherRedirects(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/hop/{n}", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(r.PathValue("n"), &n)
		if n == 0 {
			fmt.Fprint(w, "arrived")
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/p1", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/p2", http.StatusMovedPermanently) })
	mux.HandleFunc("/p2", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/t1", http.StatusPermanentRedirect) })
	mux.HandleFunc("/t1", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/p3", http.StatusFound) })
	mux.HandleFunc("/p3", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/end", http.StatusMovedPermanently) })
	mux.HandleFunc("/end", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Method) })
	mux.HandleFunc("/post307", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/post302", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/echo", http.StatusFound) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	})
	mux.HandleFunc("/scheme", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	srv := serve(t, mux)
	f := New(Options{AllowPrivate: true})
	ctx := ctxT(t)
	if resp, err := f.Get(ctx, srv.URL+"/hop/5", Conditional{}); err != nil || string(resp.Body) != "arrived" {
		t.Fatalf("5 redirects: %v", err)
	}
	if _, err := f.Get(ctx, srv.URL+"/hop/6", Conditional{}); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("6 redirects = %v, want an error", err)
	}
	resp, err := f.Get(ctx, srv.URL+"/p1", Conditional{})
	if err != nil || resp.URL != srv.URL+"/end" || resp.PermanentURL != srv.URL+"/t1" {
		t.Fatalf("301, 308, 302, 301: URL %v, PermanentURL %v (%v); want the end, and /t1 (before the temporary hop)", resp.URL, resp.PermanentURL, err)
	}
	resp, err = f.Get(ctx, srv.URL+"/t1", Conditional{})
	if err != nil || resp.PermanentURL != "" {
		t.Fatalf("a chain starting with a temporary redirect has PermanentURL %q", resp.PermanentURL)
	}
	resp, err = f.PostForm(ctx, srv.URL+"/post307", url.Values{"a": {"b"}})
	if err != nil || string(resp.Body) != "POST a=b" {
		t.Fatalf("POST through a 307: %q, %v; want the POST repeated", resp.Body, err)
	}
	resp, err = f.Post(ctx, srv.URL+"/post302", "text/plain", []byte("x"), nil)
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("POST through a 302: %v, %v; want the 302 itself (a POST must not become a GET)", resp, err)
	}
	if _, err := f.Get(ctx, srv.URL+"/scheme", Conditional{}); err == nil || !strings.Contains(err.Error(), "only http and https") {
		t.Fatalf("redirect to file:// = %v", err)
	}
}

func TestFetcherTimeouts(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/headers":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case "/trickle":
			w.WriteHeader(200)
			for {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-release:
					return
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	f := New(Options{AllowPrivate: true, HeaderTimeout: 200 * time.Millisecond, Timeout: 500 * time.Millisecond})
	ctx := ctxT(t)
	start := time.Now()
	if _, err := f.Get(ctx, srv.URL+"/headers", Conditional{}); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("header timeout: %v after %s", err, time.Since(start))
	}
	start = time.Now()
	_, err := f.Get(ctx, srv.URL+"/trickle", Conditional{})
	if err == nil || !strings.Contains(err.Error(), "timed out") || time.Since(start) > 2*time.Second {
		t.Fatalf("total timeout: %v after %s", err, time.Since(start))
	}
}

func TestFetcherHeaders(t *testing.T) {
	t.Parallel()
	var got http.Header
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	f := New(Options{AllowPrivate: true, UserAgent: UserAgent("1.2.3", "https://gw.example")})
	if _, err := f.Get(ctxT(t), srv.URL, Conditional{ETag: `W/"x"`, LastModified: "Mon, 02 Jan 2006 15:04:05 GMT"}); err != nil {
		t.Fatal(err)
	}
	if got.Get("User-Agent") != "feedgate/1.2.3 (+https://gw.example)" || got.Get("If-None-Match") != `W/"x"` ||
		got.Get("If-Modified-Since") != "Mon, 02 Jan 2006 15:04:05 GMT" {
		t.Fatalf("request headers: %v", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"120":                           2 * time.Minute,
		" 0 ":                           0,
		"Thu, 01 Jan 2026 12:30:00 GMT": 30 * time.Minute,
		"Thu, 01 Jan 2026 11:00:00 GMT": 0,
	} {
		if got, ok := ParseRetryAfter(v, now); !ok || got != want {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "-5", "soon", "1.5", "99999999999999999999999"} {
		if got, ok := ParseRetryAfter(v, now); ok {
			t.Errorf("ParseRetryAfter(%q) = %s, true; want false", v, got)
		}
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// serve serves h on a loopback listener for the test.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
