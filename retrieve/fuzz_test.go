package retrieve

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/api"
)

// FuzzParse: whatever the parameters and headers, Parse does not panic; it
// refuses with a 4xx *api.Error with a message, or accepts a request whose
// every value is within its bounds and whose parts agree (a JSONP callback
// is JSON and not a stream, before never with waiting, one topic unless
// the request is live, ...).
//
//	go test -run '^$' -fuzz FuzzParse ./retrieve
func FuzzParse(f *testing.F) {
	for _, s := range []struct {
		query, accept, lastEventID string
		ws                         bool
		maxCount, maxTopics        int
		maxTimeout                 int64 // seconds
	}{
		{"hub.topic=https%3A%2F%2Fblog.example%2Ffeed&count=5&format=json", "", "", false, 0, 0, 0},
		{"hub.topic=https://a.example/&hub.topic[]=https://b.example/&wait=stream&after=0000000000000001", "", "", false, 0, 0, 0},
		{"hub.topic=https://a.example/&callback=jQuery123_456&wait=poll&timeout=120", "", "", false, 0, 0, 0},
		{"hub.topic=https://a.example/&format=json", "text/event-stream", "0000000000000009", false, 0, 0, 0},
		{"hub.topic=https://a.example/&before=x&after=y", "application/json", "", false, 0, 0, 0},
		{"hub.topic=https://a.example/&timeout=9223372036854775807&wait=poll", "", "", false, 20, 3, 10},
		{"hub.topic=https://a.example/&count=99999999999999999999", "", "", false, 0, 0, 0},
		{"hub.callback=https://my.app/hook/%25&count=50", "", "", false, 0, 0, 0},
		{"hub.callback=https://my.app/hook/1&wait=stream", "", "", false, 0, 0, 0},
		{"", "", "", true, 9, 0, 0},
		{"hub.topic=javascript:alert(1)&callback=alert(1)", "", "", false, -1, -1, -1},
		{"hub.topic=http://a.example/%ZZ&lastEventId=abc&format=sse&wait=poll", "text/event-stream;q=0", "", false, 1, 1, 1},
	} {
		f.Add(s.query, s.accept, s.lastEventID, s.ws, s.maxCount, s.maxTopics, s.maxTimeout)
	}
	f.Fuzz(func(t *testing.T, query, accept, lastEventID string, ws bool, maxCount, maxTopics int, maxTimeoutSeconds int64) {
		r, err := http.NewRequest(http.MethodGet, "http://gateway.test/", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.URL.RawQuery = query
		r.Header.Set("Accept", accept)
		r.Header.Set("Last-Event-ID", lastEventID)
		if ws {
			r.Header.Set("Upgrade", "websocket")
			r.Header.Set("Connection", "Upgrade")
		}
		p, err := api.ReadParams(r)
		if err != nil {
			return // ReadParams' own fuzz target covers it
		}
		// Server limits in a sane range: they come from flags.
		lim := Limits{
			MaxCount:   int(uint(maxCount) % 1000),
			MaxTopics:  int(uint(maxTopics) % 1000),
			MaxTimeout: time.Duration(uint64(maxTimeoutSeconds)%86400) * time.Second,
		}
		req, err := Parse(r, p, lim)
		if err != nil {
			e, ok := api.AsError(err)
			if !ok || e.Code < 400 || e.Code > 499 || strings.TrimSpace(e.Message) == "" {
				t.Fatalf("Parse error %v (%T): want an *api.Error with a 4xx status and a message", err, err)
			}
			return
		}
		lim = lim.withDefaults()
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("accepted %+v (limits %+v): "+format, append([]any{req, lim}, args...)...)
		}
		live := req.Wait == Stream || req.Format == SSE || req.WebSocket
		switch {
		case req.Count < 1 || req.Count > lim.MaxCount:
			fail("count outside 1..%d", lim.MaxCount)
		case req.Timeout < time.Second || req.Timeout > lim.MaxTimeout:
			fail("timeout outside 1s..%s", lim.MaxTimeout)
		case req.Format != Atom && req.Format != JSON && req.Format != SSE:
			fail("unknown format")
		case req.Wait != NoWait && req.Wait != Stream && req.Wait != Poll:
			fail("unknown wait")
		case req.Format == SSE && req.Wait == Poll:
			fail("an event stream cannot be a poll")
		case req.Callback != "" && (!api.ValidCallback(req.Callback) || req.Format != JSON || req.Wait == Stream):
			fail("JSONP must be a valid callback, JSON, and not a stream")
		case req.After != "" && req.Before != "":
			fail("after and before")
		case req.HasAfter && req.After == "":
			fail("an empty after")
		case req.Before != "" && (live || req.Wait == Poll):
			fail("before with waiting")
		case len(req.After) > api.MaxTopicLength || len(req.Before) > api.MaxTopicLength:
			fail("a cursor longer than %d", api.MaxTopicLength)
		case len(req.LastEventID) > 64*1024:
			fail("a Last-Event-ID over 64 KiB")
		case len(req.Topics) > lim.MaxTopics:
			fail("more than %d topics", lim.MaxTopics)
		case len(req.Topics) > 1 && !live:
			fail("several topics without a stream")
		}
		if req.ByCallback != "" {
			if len(req.Topics) > 0 || live || req.Wait != NoWait || req.HasAfter || req.Before != "" || len(req.ByCallback) > api.MaxTopicLength {
				fail("a retrieve by callback answers once, for no named topic, without cursors")
			}
		} else if len(req.Topics) == 0 && !req.WebSocket {
			fail("no topic")
		}
		seen := map[string]bool{}
		for _, topic := range req.Topics {
			if err := api.CheckURL("hub.topic", topic); err != nil || seen[topic] {
				fail("topic %q invalid or repeated (%v)", topic, err)
			}
			seen[topic] = true
		}
	})
}
