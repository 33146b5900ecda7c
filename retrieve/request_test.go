package retrieve

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/feedgate/feedgate/api"
)

const feedURL = "https://blog.example/feed.xml"

func TestParseFormat(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		query  string
		accept string
		format Format
		wait   Wait
		err    bool
	}{
		{"format=json", "", JSON, NoWait, false},
		{"", "application/json", JSON, NoWait, false},
		{"", "", Atom, NoWait, false},
		{"format=sse", "", SSE, NoWait, false},
		// An EventSource sends Accept: text/event-stream and can read
		// nothing else, whatever format the page put in its URL.
		{"", "text/event-stream", SSE, NoWait, false},
		{"format=json", "text/event-stream", SSE, NoWait, false},
		{"format=atom", "text/event-stream", SSE, NoWait, false},
		{"format=json&wait=stream", "text/event-stream", SSE, NoWait, false},
		{"format=json&wait=poll", "text/event-stream", SSE, NoWait, false},
		{"format=sse&wait=poll", "", SSE, Poll, true},
		{"format=json&wait=stream", "", JSON, Stream, false},
		{"format=rss", "", Atom, NoWait, true},
	} {
		r := httptest.NewRequest(http.MethodGet, "/?hub.mode=retrieve&hub.topic="+feedURL+"&"+c.query, nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		p, err := api.ReadParams(r)
		if err != nil {
			t.Fatal(err)
		}
		req, err := Parse(r, p, Limits{})
		if c.err {
			if err == nil {
				t.Errorf("%q Accept %q: no error", c.query, c.accept)
			}
			continue
		}
		if err != nil || req.Format != c.format || req.Wait != c.wait {
			t.Errorf("%q Accept %q: format %v wait %v err %v, want format %v wait %v", c.query, c.accept, req.Format, req.Wait, err, c.format, c.wait)
		}
	}
}

func TestParseByCallback(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		query string
		ok    bool
	}{
		{"hub.callback=https://my.app/hook/1", true},
		{"hub.callback=https://my.app/hook/%25&count=50&format=json", true},
		{"hub.callback=https://my.app/hook/%25&callback=show", true},
		{"hub.callback=https://my.app/hook/1&wait=stream", false},
		{"hub.callback=https://my.app/hook/1&wait=poll", false},
		{"hub.callback=https://my.app/hook/1&format=sse", false},
		{"hub.callback=https://my.app/hook/1&after=0000000000000001", false},
		{"hub.callback=https://my.app/hook/1&count=51", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/?hub.mode=retrieve&"+c.query, nil)
		p, err := api.ReadParams(r)
		if err != nil {
			t.Fatal(err)
		}
		req, err := Parse(r, p, Limits{})
		if (err == nil) != c.ok || (c.ok && req.ByCallback == "") {
			t.Errorf("%q: %+v %v", c.query, req, err)
		}
	}
}

func TestMatchCallback(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, callback string
		want              bool
	}{
		{"https://my.app/hook/1", "https://my.app/hook/1", true},
		{"https://my.app/hook/1", "https://my.app/hook/10", false},
		{"https://my.app/hook/%", "https://my.app/hook/10", true},
		{"https://my.app/hook/%", "https://my.app/hook/", true},
		{"https://my.app/hook/%", "https://other.app/hook/1", false},
		{"%my.app%", "https://my.app/hook/1", true},
		{"%", "anything", true},
		{"https://%/hook/%/x", "https://a.b/hook/1/x", true},
		{"https://%/hook/%/x", "https://a.b/hook/1/y", false},
		{"https://a/%ab%ab", "https://a/ab", false},
		// Percent-encoded callbacks match themselves.
		{"https://my.app/hook?id=a%20b", "https://my.app/hook?id=a%20b", true},
	} {
		if got := MatchCallback(c.pattern, c.callback); got != c.want {
			t.Errorf("MatchCallback(%q, %q) = %v", c.pattern, c.callback, got)
		}
	}
}
