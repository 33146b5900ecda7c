package ingest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
)

// brokenBodies are documents no feed should be: each with words its status
// must contain (any of them).
func brokenBodies() []struct {
	name, ctype, encoding string
	body                  []byte
	want                  []string
} {
	valid := atomDoc("broken", []entry{{ID: "urn:x:1", Title: "one"}, {ID: "urn:x:2", Title: "two"}})
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestSpeed)
	zeros := make([]byte, 1<<20)
	for range 4 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	garbage := make([]byte, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		garbage[i] = byte(r.IntN(256))
	}
	return []struct {
		name, ctype, encoding string
		body                  []byte
		want                  []string
	}{
		{name: "malformed", ctype: "application/atom+xml", body: []byte(`<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x</id><<<>>&&</feed>`), want: []string{"not an RSS, Atom or JSON feed"}},
		{name: "truncated", ctype: "application/atom+xml", body: valid[:len(valid)/2], want: []string{"not an RSS, Atom or JSON feed"}},
		{name: "huge", ctype: "application/atom+xml", body: bytes.Repeat([]byte("<!-- padding -->"), 64<<10), want: []string{"larger than 512 KiB"}},
		{name: "gzip bomb", ctype: "application/atom+xml", encoding: "gzip", body: bomb.Bytes(), want: []string{"larger than 512 KiB"}},
		{name: "corrupt gzip", ctype: "application/atom+xml", encoding: "gzip", body: []byte("\x1f\x8b\x08\x00garbage"), want: []string{"corrupt gzip"}},
		{name: "unknown charset", ctype: "application/atom+xml", body: []byte(`<?xml version="1.0" encoding="x-no-such-charset"?>` + string(valid[len(`<?xml version="1.0" encoding="utf-8"?>`):])), want: []string{"not an RSS, Atom or JSON feed", "entries parsed"}},
		{name: "latin-1 declared utf-8", ctype: "application/atom+xml; charset=utf-8", body: bytes.Replace(valid, []byte("one"), []byte("caf\xe9 \xff\xfe"), 1), want: []string{"not an RSS, Atom or JSON feed", "entries parsed"}},
		{name: "binary", ctype: "application/octet-stream", body: garbage, want: []string{"not an RSS, Atom or JSON feed"}},
		{name: "empty", ctype: "application/atom+xml", body: []byte{}, want: []string{"not an RSS, Atom or JSON feed"}},
		{name: "html", ctype: "text/html", body: []byte("<!DOCTYPE html><html><head><title>x</title></head><body>hi</body></html>"), want: []string{"HTML page that names no feed"}},
		{name: "json", ctype: "application/json", body: []byte(`{"hello":"world"}`), want: []string{"not an RSS, Atom or JSON feed"}},
		{name: "deep nesting", ctype: "application/xml", body: []byte(strings.Repeat("<a>", 50000) + strings.Repeat("</a>", 50000)), want: []string{"not an RSS, Atom or JSON feed"}},
		{name: "entity expansion", ctype: "application/xml", body: []byte(`<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><rss version="2.0"><channel><title>&lol2;</title></channel></rss>`), want: []string{"not an RSS, Atom or JSON feed", "entries parsed"}},
	}
}

// TestBrokenFeeds: a topic that stored entries is then served broken
// documents; each fetch records why in the status, stores nothing and
// leaves what is stored intact.
func TestBrokenFeeds(t *testing.T) {
	var mu sync.Mutex
	body, ctype, encoding := atomDoc("broken", []entry{{ID: "urn:x:1", Title: "one"}, {ID: "urn:x:2", Title: "two"}}), "application/atom+xml", ""
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b, ct, enc := body, ctype, encoding
		mu.Unlock()
		w.Header().Set("Content-Type", ct)
		if enc != "" {
			w.Header().Set("Content-Encoding", enc)
		}
		_, _ = w.Write(b)
	}))
	opts := testOptions()
	opts.Fetch.MaxBody = 512 << 10
	n := startNode(t, openEmbedded(t), opts, true)
	topic := srv.URL + "/feed"
	subscribe(t, n, topic)
	testkit.Eventually(t, settle, "the valid feed", func() bool { return len(readAll(t, n.st, topic)) == 2 })
	before := readAll(t, n.st, topic)

	for _, c := range brokenBodies() {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			body, ctype, encoding = c.body, c.ctype, c.encoding
			mu.Unlock()
			// Mark the status so the next fetch is recognisable.
			_ = n.st.UpdateTopic(ctxT(t), topic, func(ts *store.TopicState) error { ts.Status.HTTP = "marker"; return nil })
			if err := n.svc.Ping(ctxT(t), []string{topic}); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, settle, "the fetch's status", func() bool { return topicState(t, n.st, topic).Status.HTTP != "marker" })
			st := topicState(t, n.st, topic).Status
			ok := false
			for _, w := range c.want {
				ok = ok || strings.Contains(st.HTTP, w)
			}
			if !ok {
				t.Fatalf("status.http = %q, want one of %q", st.HTTP, c.want)
			}
			t.Logf("status: %d %s", st.Code, st.HTTP)
			after := readAll(t, n.st, topic)
			if len(after) < len(before) {
				t.Fatalf("items lost: %d before, %d after", len(before), len(after))
			}
			for i, it := range after[len(after)-len(before):] {
				if it.ID != before[i].ID || it.Cursor != before[i].Cursor || it.Title != before[i].Title {
					t.Fatalf("stored item changed: %+v, was %+v", it, before[i])
				}
			}
			for _, it := range after {
				if !utf8.ValidString(it.Title) || !utf8.ValidString(it.Content) {
					t.Fatalf("stored invalid UTF-8: %q", it.Title)
				}
			}
			before = after
		})
	}
}

// TestBrokenPushes: the same documents pushed by a hub are answered 2xx (or
// 413 when too large), stored nothing, and the status says why.
func TestBrokenPushes(t *testing.T) {
	h := newTestHub(t)
	f := newTestFeed("pushed", 1)
	srv := serve(t, f)
	f.header = []string{fmt.Sprintf(`<%s>; rel="hub"`, h.URL())}
	opts := testOptions()
	opts.Fetch.MaxBody = 512 << 10
	n := startNode(t, openEmbedded(t), opts, true)
	topic := srv.URL + "/feed"
	subscribe(t, n, topic)
	sub := h.onlyActive(t)
	for _, c := range brokenBodies() {
		if c.encoding != "" {
			continue
		}
		code := h.deliver(sub, c.body, "sha256")
		switch {
		case c.name == "huge":
			if code != http.StatusRequestEntityTooLarge {
				t.Errorf("%s: answered %d, want 413", c.name, code)
			}
		case code/100 != 2:
			t.Errorf("%s: answered %d, want 2xx", c.name, code)
		}
	}
	items := readAll(t, n.st, topic)
	if len(items) > 3 || len(items) < 1 {
		t.Fatalf("%d items after broken pushes", len(items))
	}
}

// FuzzStoreFeed: no document makes the store path panic or store invalid
// text.
func FuzzStoreFeed(f *testing.F) {
	for _, c := range brokenBodies() {
		if len(c.body) < 64<<10 {
			f.Add(c.body, c.ctype)
		}
	}
	f.Add(atomDoc("x", []entry{{ID: "1", Title: "t"}}), "application/atom+xml")
	st := openEmbedded(f)
	n := startNode(f, st, testOptions(), false)
	i := 0
	f.Fuzz(func(t *testing.T, body []byte, ctype string) {
		i++
		items, err := n.svc.StoreFeed(ctxT(t), fmt.Sprintf("http://example.com/%d", i), body, ctype)
		if err != nil && len(items) > 0 {
			t.Fatal("items stored along with an error")
		}
		for _, it := range items {
			if !utf8.ValidString(it.Title) || it.ID == "" {
				t.Fatalf("bad item %+v", it)
			}
		}
	})
}
