package retrieve

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/api"
)

// parseQuery parses a retrieve with the query and headers (name, value
// pairs) as the hub endpoint does.
func parseQuery(t *testing.T, query string, lim Limits, header ...string) (Request, error) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/?hub.mode=retrieve&"+query, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	p, err := api.ReadParams(r)
	if err != nil {
		t.Fatalf("ReadParams(%q): %v", query, err)
	}
	return Parse(r, p, lim)
}

// TestParse is the table of every retrieve parameter: what is accepted
// (and read as what), what is refused with a 422 saying why.
func TestParse(t *testing.T) {
	t.Parallel()
	topic := "hub.topic=" + url.QueryEscape(feedURL)
	other := "hub.topic=" + url.QueryEscape("https://other.example/atom")
	topics := func(n int) string {
		var b strings.Builder
		b.WriteString("wait=stream")
		for i := range n {
			b.WriteString("&hub.topic=" + url.QueryEscape("https://blog.example/"+strconv.Itoa(i)))
		}
		return b.String()
	}
	long := strings.Repeat("c", api.MaxTopicLength+1)
	for _, c := range []struct {
		name   string
		query  string
		header []string
		lim    Limits
		// check inspects an accepted request; msg is in the 422 of a
		// refused one.
		check func(t *testing.T, r Request)
		msg   string
	}{
		// Defaults.
		{name: "defaults", query: topic, check: func(t *testing.T, r Request) {
			if r.Count != DefaultCount || r.Format != Atom || r.Wait != NoWait || r.Timeout != 30*time.Second ||
				r.After != "" || r.Before != "" || r.HasAfter || r.Callback != "" || r.WebSocket || r.ByCallback != "" ||
				!slices.Equal(r.Topics, []string{feedURL}) {
				t.Errorf("defaults %+v", r)
			}
		}},

		// count.
		{name: "count 1", query: topic + "&count=1", check: wantCount(1)},
		{name: "count 50", query: topic + "&count=50", check: wantCount(50)},
		{name: "count 0", query: topic + "&count=0", msg: "count must be an integer from 1 to 50"},
		{name: "count 51", query: topic + "&count=51", msg: "from 1 to 50"},
		{name: "count -1", query: topic + "&count=-1", msg: "from 1 to 50"},
		{name: "count not a number", query: topic + "&count=ten", msg: "from 1 to 50"},
		{name: "count empty", query: topic + "&count=", msg: "from 1 to 50"},
		{name: "count huge", query: topic + "&count=99999999999999999999", msg: "from 1 to 50"},
		{name: "count under a lower server maximum", query: topic + "&count=20", lim: Limits{MaxCount: 20}, check: wantCount(20)},
		{name: "count over a lower server maximum", query: topic + "&count=21", lim: Limits{MaxCount: 20}, msg: "from 1 to 20"},
		{name: "default count under a lower server maximum", query: topic, lim: Limits{MaxCount: 5}, check: wantCount(5)},

		// after and before.
		{name: "after a cursor", query: topic + "&after=0000000000000007", check: func(t *testing.T, r Request) {
			if r.After != "0000000000000007" || !r.HasAfter || r.Before != "" {
				t.Errorf("after: %+v", r)
			}
		}},
		{name: "after an entry id", query: topic + "&after=" + url.QueryEscape("tag:blog.example,2026:post/1"), check: func(t *testing.T, r Request) {
			if r.After != "tag:blog.example,2026:post/1" {
				t.Errorf("after = %q", r.After)
			}
		}},
		{name: "before", query: topic + "&before=0000000000000007", check: func(t *testing.T, r Request) {
			if r.Before != "0000000000000007" || r.HasAfter {
				t.Errorf("before: %+v", r)
			}
		}},
		{name: "after empty", query: topic + "&after=", msg: "after must be a cursor or an entry id"},
		{name: "before empty", query: topic + "&before=", msg: "before must be a cursor or an entry id"},
		{name: "after and before", query: topic + "&after=1&before=2", msg: "not both"},
		{name: "before with a stream", query: topic + "&before=2&wait=stream", msg: "before pages back"},
		{name: "before with a poll", query: topic + "&before=2&wait=poll", msg: "before pages back"},
		{name: "before with SSE", query: topic + "&before=2", header: []string{"Accept", "text/event-stream"}, msg: "before pages back"},
		{name: "after too long", query: topic + "&after=" + long, msg: "at most 2048 characters"},
		{name: "after with a stream", query: topic + "&after=5&wait=stream", check: func(t *testing.T, r Request) {
			if r.After != "5" || r.Wait != Stream {
				t.Errorf("after with a stream: %+v", r)
			}
		}},

		// format and Accept.
		{name: "format json", query: topic + "&format=json", check: wantFormat(JSON, NoWait)},
		{name: "format JSON", query: topic + "&format=JSON", check: wantFormat(JSON, NoWait)},
		{name: "format atom", query: topic + "&format=atom", check: wantFormat(Atom, NoWait)},
		{name: "format xml", query: topic + "&format=xml", check: wantFormat(Atom, NoWait)},
		{name: "Accept json", query: topic, header: []string{"Accept", "application/json"}, check: wantFormat(JSON, NoWait)},
		{name: "format atom over Accept json", query: topic + "&format=atom", header: []string{"Accept", "application/json"}, check: wantFormat(Atom, NoWait)},
		{name: "Accept event-stream over format json", query: topic + "&format=json", header: []string{"Accept", "text/event-stream"}, check: wantFormat(SSE, NoWait)},
		{name: "format sse", query: topic + "&format=sse", check: wantFormat(SSE, NoWait)},
		{name: "format sse with a poll", query: topic + "&format=sse&wait=poll", msg: "wait=poll answers once"},
		{name: "format unknown", query: topic + "&format=rss", msg: "format must be atom, json or sse"},
		{name: "WebSocket keeps its format", query: topic + "&format=json",
			header: []string{"Upgrade", "websocket", "Connection", "Upgrade", "Accept", "text/event-stream"}, check: func(t *testing.T, r Request) {
				if !r.WebSocket || r.Format != JSON {
					t.Errorf("WebSocket: %+v", r)
				}
			}},

		// callback (JSONP).
		{name: "callback", query: topic + "&callback=app.onFeed", check: func(t *testing.T, r Request) {
			if r.Callback != "app.onFeed" || r.Format != JSON {
				t.Errorf("JSONP: %+v", r)
			}
		}},
		{name: "callback with format json", query: topic + "&callback=cb&format=json", check: wantFormat(JSON, NoWait)},
		{name: "callback with a poll", query: topic + "&callback=cb&wait=poll", check: wantFormat(JSON, Poll)},
		{name: "callback not an identifier", query: topic + "&callback=" + url.QueryEscape("alert(1)"), msg: "JavaScript identifier path"},
		{name: "callback too long", query: topic + "&callback=" + strings.Repeat("a", api.MaxCallback+1), msg: "JavaScript identifier path"},
		{name: "callback with format atom", query: topic + "&callback=cb&format=atom", msg: "drop format=atom"},
		{name: "callback with a stream", query: topic + "&callback=cb&wait=stream", msg: "cannot be used with a stream"},
		{name: "callback with SSE", query: topic + "&callback=cb", header: []string{"Accept", "text/event-stream"}, msg: "cannot be used with a stream"},

		// wait and timeout.
		{name: "wait stream", query: topic + "&wait=stream", check: wantFormat(Atom, Stream)},
		{name: "wait poll", query: topic + "&wait=POLL&format=json", check: wantFormat(JSON, Poll)},
		{name: "wait unknown", query: topic + "&wait=forever", msg: "wait must be stream or poll"},
		{name: "timeout", query: topic + "&wait=poll&timeout=5", check: func(t *testing.T, r Request) {
			if r.Timeout != 5*time.Second {
				t.Errorf("timeout %s", r.Timeout)
			}
		}},
		{name: "timeout at the maximum", query: topic + "&wait=poll&timeout=120", check: func(t *testing.T, r Request) {
			if r.Timeout != 120*time.Second {
				t.Errorf("timeout %s", r.Timeout)
			}
		}},
		{name: "timeout over the maximum", query: topic + "&wait=poll&timeout=121", msg: "from 1 to 120"},
		{name: "timeout over a lower maximum", query: topic + "&wait=poll&timeout=11", lim: Limits{MaxTimeout: 10 * time.Second}, msg: "from 1 to 10"},
		{name: "default timeout within a lower maximum", query: topic + "&wait=poll", lim: Limits{MaxTimeout: 10 * time.Second}, check: func(t *testing.T, r Request) {
			if r.Timeout != 10*time.Second {
				t.Errorf("default timeout %s with a 10 s maximum", r.Timeout)
			}
		}},
		{name: "timeout 0", query: topic + "&wait=poll&timeout=0", msg: "whole number of seconds"},
		{name: "timeout fractional", query: topic + "&wait=poll&timeout=1.5", msg: "whole number of seconds"},
		{name: "timeout huge", query: topic + "&wait=poll&timeout=9223372036854775807", msg: "whole number of seconds"},

		// hub.topic, once or several times.
		{name: "no topic", query: "count=5", msg: "hub.topic is required"},
		{name: "two topics on a plain retrieve", query: topic + "&" + other, msg: "one hub.topic per retrieve"},
		{name: "two topics on a poll", query: topic + "&" + other + "&wait=poll", msg: "one hub.topic per retrieve"},
		{name: "two topics on a stream", query: topic + "&" + other + "&wait=stream", check: func(t *testing.T, r Request) {
			if !slices.Equal(r.Topics, []string{feedURL, "https://other.example/atom"}) {
				t.Errorf("topics %q", r.Topics)
			}
		}},
		{name: "bracketed and repeated topics on SSE", query: topic + "&" + strings.Replace(other, "hub.topic", "hub.topic[]", 1) + "&" + topic,
			header: []string{"Accept", "text/event-stream"}, check: func(t *testing.T, r Request) {
				if !slices.Equal(r.Topics, []string{feedURL, "https://other.example/atom"}) {
					t.Errorf("topics %q, want both once", r.Topics)
				}
			}},
		{name: "100 topics on a stream", query: topics(100), check: func(t *testing.T, r Request) {
			if len(r.Topics) != 100 {
				t.Errorf("%d topics", len(r.Topics))
			}
		}},
		{name: "101 topics on a stream", query: topics(101), msg: "at most 100 hub.topic"},
		{name: "5 topics over a lower maximum", query: topics(5), lim: Limits{MaxTopics: 4}, msg: "at most 4 hub.topic"},
		{name: "topic not http", query: "hub.topic=" + url.QueryEscape("ftp://blog.example/f"), msg: "http or https"},
		{name: "one bad topic among good ones", query: topic + "&wait=stream&hub.topic=nope", msg: "hub.topic"},
		{name: "WebSocket without a topic", query: "", header: []string{"Upgrade", "websocket", "Connection", "keep-alive, Upgrade"}, check: func(t *testing.T, r Request) {
			if !r.WebSocket || len(r.Topics) != 0 {
				t.Errorf("WebSocket without topic: %+v", r)
			}
		}},

		// Resuming an event stream.
		{name: "Last-Event-ID", query: topic, header: []string{"Accept", "text/event-stream", "Last-Event-ID", " 0000000000000009 "}, check: func(t *testing.T, r Request) {
			if r.LastEventID != "0000000000000009" {
				t.Errorf("Last-Event-ID %q", r.LastEventID)
			}
		}},
		{name: "lastEventId", query: topic + "&lastEventId=0000000000000009", header: []string{"Accept", "text/event-stream"}, check: func(t *testing.T, r Request) {
			if r.LastEventID != "0000000000000009" {
				t.Errorf("lastEventId %q", r.LastEventID)
			}
		}},
		{name: "Last-Event-ID over lastEventId", query: topic + "&lastEventId=1", header: []string{"Last-Event-ID", "2"}, check: func(t *testing.T, r Request) {
			if r.LastEventID != "2" {
				t.Errorf("Last-Event-ID %q, want the header's", r.LastEventID)
			}
		}},
		{name: "Last-Event-ID too long", query: topic + "&lastEventId=" + strings.Repeat("x", 64*1024+1), msg: "Last-Event-ID is too long"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			req, err := parseQuery(t, c.query, c.lim, c.header...)
			if c.msg != "" {
				e, ok := api.AsError(err)
				if !ok || e.Code != http.StatusUnprocessableEntity || !strings.Contains(e.Message, c.msg) {
					t.Fatalf("Parse = %+v, %v; want a 422 mentioning %q", req, err, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			c.check(t, req)
		})
	}
}

func wantCount(n int) func(*testing.T, Request) {
	return func(t *testing.T, r Request) {
		if r.Count != n {
			t.Errorf("count %d, want %d", r.Count, n)
		}
	}
}

func wantFormat(f Format, w Wait) func(*testing.T, Request) {
	return func(t *testing.T, r Request) {
		if r.Format != f || r.Wait != w {
			t.Errorf("format %v wait %v, want %v %v", r.Format, r.Wait, f, w)
		}
	}
}
