package loadgen

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mmcdole/gofeed"
)

func selfPID() int { return os.Getpid() }

func TestParseTargetOnlyLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, addr string
		ok       bool
	}{
		{"http://127.0.0.1:8080", "127.0.0.1:8080", true},
		{"http://localhost:8080/", "127.0.0.1:8080", true},
		{"http://127.9.8.7:1", "127.9.8.7:1", true},
		{"http://[::1]:8080", "[::1]:8080", true},
		{"http://LOCALHOST", "127.0.0.1:80", true},
		{"http://10.0.0.1:8080", "", false},
		{"http://example.com", "", false},
		{"http://localhost.example.com:80", "", false},
		{"https://127.0.0.1", "127.0.0.1:443", true},
		{"https://localhost:8443", "127.0.0.1:8443", true},
		{"https://10.0.0.1:8443", "", false},
		{"ftp://127.0.0.1", "", false},
		{"http://0.0.0.0:8080", "", false},
		{"::", "", false},
	} {
		tg, err := ParseTarget(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseTarget(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && tg.Addr != tc.addr {
			t.Errorf("ParseTarget(%q).Addr = %q, want %q", tc.in, tg.Addr, tc.addr)
		}
	}
	if _, err := NewRedis("redis://192.168.1.1:6379/0", 1); err == nil {
		t.Error("a non-loopback Redis URL must be refused")
	}
	d, _ := NewDialer("127.0.0.1:1", 1)
	if _, err := d.DialContext(context.Background(), "tcp", "93.184.216.34:80"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("the dialer must refuse a non-loopback address, got %v", err)
	}
}

func TestMarkerRoundTripThroughFeedBodies(t *testing.T) {
	t.Parallel()
	m := NewMarker(NewRunID())
	other := NewMarker("other")
	entries := []Entry{{Seq: 0, PubNanos: 1700000000123456789}, {Seq: 41, PubNanos: 1700000001000000000}}
	for _, f := range []BodyFormat{BodyAtom, BodyJSON} {
		body := FeedBody(nil, f, m, entries, 300)
		doc, err := gofeed.NewParser().ParseString(string(body))
		if err != nil {
			t.Fatalf("%s body does not parse: %v\n%s", f, err, body)
		}
		if len(doc.Items) != 2 {
			t.Fatalf("%s body: %d items, want 2", f, len(doc.Items))
		}
		var got []Entry
		for _, it := range doc.Items {
			m.Scan([]byte(`{"id":"`+it.GUID+`"}`), func(seq int, pub int64) { got = append(got, Entry{seq, pub}) })
			other.Scan([]byte(it.GUID), func(int, int64) { t.Error("another run's marker matched") })
		}
		if len(got) != 2 || got[0] != entries[0] || got[1] != entries[1] {
			t.Fatalf("%s: scanned %v, want %v", f, got, entries)
		}
	}
	var n int
	m.Scan([]byte(string(m.prefix)+"x "+string(m.prefix)+"12: "+string(m.prefix)+"3:4"), func(seq int, pub int64) {
		n++
		if seq != 3 || pub != 4 {
			t.Errorf("scanned %d:%d, want 3:4", seq, pub)
		}
	})
	if n != 1 {
		t.Fatalf("malformed ids must be skipped: %d matches", n)
	}
}

func TestReadHeadAndBodies(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 10000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/len":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"ok":true}`)
		case "/chunked":
			fl := w.(http.Flusher)
			io.WriteString(w, "line one\n")
			fl.Flush()
			io.WriteString(w, long+"\n\nlast")
			fl.Flush()
			io.WriteString(w, " line\n")
		case "/missing":
			http.Error(w, "no such thing", 404)
		}
	}))
	defer srv.Close()
	tg, _ := ParseTarget(srv.URL)
	d, _ := NewDialer(tg.Addr, 1)
	nc, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	get := func(path string) Head {
		t2 := *tg
		t2.Path = path
		if _, err := nc.Write(BuildGet(&t2, nil, Auth{})); err != nil {
			t.Fatal(err)
		}
		h, err := ReadHead(br)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := get("/len")
	if h.Status != 200 || h.Length != 11 || h.Chunked {
		t.Fatalf("/len head: %+v", h)
	}
	body, err := h.ReadBody(br, nil, 100)
	if err != nil || string(body) != `{"ok":true}` {
		t.Fatalf("/len body %q, %v", body, err)
	}
	h = get("/missing")
	if h.Status != 404 {
		t.Fatalf("/missing: %+v", h)
	}
	if n, err := h.DiscardBody(br); err != nil || n != int64(len("no such thing\n")) {
		t.Fatalf("discarded %d bytes, %v", n, err)
	}
	h = get("/chunked")
	if !h.Chunked || h.Status != 200 {
		t.Fatalf("/chunked head: %+v", h)
	}
	lr := NewLineReader(h.Body(br), 64) // lines longer than the buffer
	var lines []string
	for {
		l, err := lr.Line()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, string(l))
	}
	if len(lines) != 4 || lines[0] != "line one" || lines[1] != long || lines[2] != "" || lines[3] != "last line" {
		t.Fatalf("lines: %d %q", len(lines), lines)
	}
	// The connection is still usable (keep-alive) after a chunked body.
	if h := get("/len"); h.Status != 200 {
		t.Fatalf("keep-alive after chunked body: %+v", h)
	}
}

func TestNewestCursor(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"status":{"cursor":"0000000000000099"},"items":[{"id":"a","cursor":"0000000000000012"},{"id":"b","cursor":"0000000000000011"}]}`: "0000000000000012",
		`{"status":{"cursor":"0000000000000099"},"items":[]}`:                                                                              "",
		`{"items":[{"cursor":"0000000000000001"},{"cursor":"0000000000000003"}]}`:                                                          "0000000000000003",
		`garbage`: "",
	} {
		if got := newestCursor([]byte(body)); got != want {
			t.Errorf("newestCursor(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestSummaryPercentiles(t *testing.T) {
	t.Parallel()
	var l Latencies
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	s := l.Summarize()
	if s.P50 != 50*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond || s.Min != time.Millisecond {
		t.Fatalf("summary: %+v", s)
	}
	if (Latencies{}).Summarize().N != 0 {
		t.Fatal("empty summary")
	}
}

func TestRetrieveRun(t *testing.T) {
	t.Parallel()
	h, srv := newFakeHub(t)
	h.seedItems(20)
	tg, _ := ParseTarget(srv.URL)
	for _, client := range []string{"raw", "nethttp"} {
		res, err := RunRetrieve(context.Background(), RetrieveConfig{
			Target: tg, Auth: Auth{"bench", "secret-token-123"}, Topic: "http://t/feed",
			Conns: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond,
			Format: "json", Count: 10, Client: client, GatewayPID: selfPID(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		if res.OK == 0 || res.OK != res.Requests || res.Errors.Total() != 0 || res.PerSecond <= 0 {
			t.Fatalf("%s: %s", client, res)
		}
		if res.Latency.N != res.Requests || res.BodyBytes <= 0 {
			t.Fatalf("%s: %+v", client, res)
		}
	}
	// Wrong credentials are reported before the load starts.
	_, err := RunRetrieve(context.Background(), RetrieveConfig{
		Target: tg, Auth: Auth{"bench", "nope"}, Topic: "http://t/feed", Conns: 1, Duration: time.Second, Count: 10,
	})
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("want a 401 error, got %v", err)
	}
}
