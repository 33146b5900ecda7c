package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

type junk struct {
	method, query, ctype string
	body                 func() io.Reader
}

func junkRequests() []junk {
	t := url.QueryEscape(topic)
	var js []junk
	add := func(method, query, ctype string, body func() io.Reader) {
		js = append(js, junk{method, query, ctype, body})
	}
	get := func(q string) { add(http.MethodGet, q, "", nil) }
	for _, m := range []string{"", "nope", "RETRIEVE%00", "subscribe%0d%0a", strings.Repeat("x", 5000), "%ff%fe", "publish%20", "list;drop"} {
		get("hub.mode=" + m)
	}
	for _, c := range []string{"0", "-1", "51", "1e3", "ten", "", "%00", "99999999999999999999", "1.5", " 5"} {
		get("hub.mode=retrieve&hub.topic=" + t + "&count=" + c)
	}
	for _, cur := range []string{"0000000000000000x", "%ff", strings.Repeat("9", 3000), "", "-1", "00000000000000-1"} {
		get("hub.mode=retrieve&hub.topic=" + t + "&after=" + cur)
		get("hub.mode=retrieve&hub.topic=" + t + "&before=" + cur)
	}
	get("hub.mode=retrieve&hub.topic=" + t + "&after=1&before=2")
	for _, tp := range []string{"", "%00%01%02", "%ff%fe%fd", "ftp://x/feed", "javascript:alert(1)", "http://", "http://x/%0a", "not a url", "http://" + strings.Repeat("a", 3000), "//host/feed", "http://user:pw@host/feed", "%e2%80%ae"} {
		get("hub.mode=retrieve&hub.topic=" + tp)
		add(http.MethodPost, "hub.mode=subscribe&hub.topic="+tp, "", nil)
	}
	for _, f := range []string{"xml2", "html", "%00", "ATOMX"} {
		get("hub.mode=retrieve&hub.topic=" + t + "&format=" + f)
	}
	for _, w := range []string{"forever", "streamx", "%00"} {
		get("hub.mode=retrieve&hub.topic=" + t + "&wait=" + w)
	}
	get("hub.mode=retrieve&hub.topic=" + t + "&wait=poll&timeout=0")
	get("hub.mode=retrieve&hub.topic=" + t + "&wait=poll&timeout=100000")
	get("hub.mode=retrieve&hub.topic=" + t + "&callback=%3Cscript%3E")
	get("hub.mode=retrieve&hub.topic=" + t + "&callback=" + strings.Repeat("a", 300))
	get("hub.mode=retrieve&hub.topic=" + t + "&hub.topic=" + t + "2")
	for _, p := range []string{"0", "-3", "x", "99999999999"} {
		get("hub.mode=list&page=" + p)
		get("hub.mode=list&by_page=" + p)
	}
	get("hub.mode=list&by_page=501")
	get("hub.mode=subscribe&hub.topic=" + t + "&hub.secret=" + strings.Repeat("s", 200))
	get("hub.mode=subscribe&hub.topic=" + t + "&hub.verify=maybe")
	get("hub.mode=subscribe&hub.topic=" + t + "&hub.lease_seconds=-5")
	get("hub.mode=subscribe&hub.topic=" + t + "&format=rss")
	get("hub.mode=publish")
	get("hub.mode=publish&hub.url=gopher://x")
	get("%zz=1&hub.mode=list")
	add(http.MethodPost, "", "application/x-www-form-urlencoded", func() io.Reader { return strings.NewReader("hub.mode=retrieve&hub.topic=%zz") })
	add(http.MethodPost, "", "application/x-www-form-urlencoded", func() io.Reader { return bytes.NewReader(make([]byte, 2<<20)) })
	feed := "hub.mode=publish&hub.topic=" + t
	for _, body := range []string{"", "not a feed", "<rss><channel><item>", "<feed xmlns='http://www.w3.org/2005/Atom'><entry>", "\x00\x01\x02\xff\xfe", "{\"version\":\"https://jsonfeed.org/version/1\",\"items\":[", "<?xml version='1.0'?><rss version='2.0'><channel><item><title>cut</title></item>", "<html><body>hello</body></html>"} {
		add(http.MethodPost, feed, "application/atom+xml", func() io.Reader { return strings.NewReader(body) })
	}
	add(http.MethodPost, feed, "application/feed+json", func() io.Reader { return strings.NewReader("[1,2,3]") })
	add(http.MethodPost, feed, "image/png", func() io.Reader { return strings.NewReader("\x89PNG") })
	add(http.MethodPost, feed, "application/rss+xml", func() io.Reader { return io.LimitReader(zeroes{}, 64<<20) })
	add(http.MethodPost, "hub.mode=publish", "application/rss+xml", func() io.Reader { return strings.NewReader("<rss/>") })
	var many string
	for i := range 101 {
		many += "&hub.topic=" + url.QueryEscape(fmt.Sprintf("%s?n=%d", topic, i))
	}
	get("hub.mode=retrieve&wait=stream" + many)
	get("hub.mode=retrieve&hub.topic=" + t + "&wait=stream&before=0000000000000001")
	get("hub.mode=retrieve&hub.topic=" + t + "&format=sse&wait=poll")
	get("hub.mode=retrieve&hub.topic=" + t + "&callback=cb&wait=stream")
	add(http.MethodPost, "", "application/x-www-form-urlencoded", func() io.Reader { return strings.NewReader("hub.mode=subscribe&hub.topic=%00%ff%fe") })
	add(http.MethodPost, "hub.mode=subscribe", "application/x-www-form-urlencoded; charset=utf-8", func() io.Reader { return strings.NewReader("hub.topic=" + strings.Repeat("%ff", 500)) })
	add(http.MethodPut, "hub.mode=list", "", nil)
	add(http.MethodDelete, "hub.mode=list", "", nil)
	return js
}

type zeroes struct{}

func (zeroes) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestJunkRequests sends over a hundred malformed requests: each must get a
// 4xx with a message, and the stored data must be intact afterwards.
func TestJunkRequests(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		g.subscribe(g.admin, topic)
		g.fatPing(g.admin, topic, "urn:1", "One", "urn:2", "Two")
		js := junkRequests()
		if len(js) < 100 {
			t.Fatalf("only %d junk requests", len(js))
		}
		login, token, _ := strings.Cut(g.admin, ":")
		client := &http.Client{Timeout: 10 * time.Second}
		for i, j := range js {
			var body io.Reader
			if j.body != nil {
				body = j.body()
			}
			req, err := http.NewRequest(j.method, g.url+"/?"+j.query, body)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth(login, token)
			if j.ctype != "" {
				req.Header.Set("Content-Type", j.ctype)
			}
			resp, err := client.Do(req)
			if err != nil {
				// The server may close a connection whose body it refused.
				continue
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("#%d %s ?%.120s: reading the answer: %v", i, j.method, j.query, err)
			}
			resp.Body.Close()
			desc := fmt.Sprintf("#%d %s ?%.120s (%s)", i, j.method, j.query, j.ctype)
			if j.body != nil {
				b, _ := io.ReadAll(io.LimitReader(j.body(), 80))
				desc += fmt.Sprintf(" body %q", b)
			}
			jsonpError := resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`({"error":{"code":4`))
			if (resp.StatusCode < 400 || resp.StatusCode >= 500) && !jsonpError {
				t.Errorf("%s: status %d, want 4xx: %.200s", desc, resp.StatusCode, b)
			}
			if len(bytes.TrimSpace(b)) < 10 {
				t.Errorf("%s: no message in the answer: %q", desc, b)
			}
		}
		m := g.get("hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(topic), g.admin).json(t)
		if got := itemIDs(t, m); !slices.Equal(got, []string{"urn:2", "urn:1"}) {
			t.Fatalf("stored items changed by junk: %v", got)
		}
	})
}
