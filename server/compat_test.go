package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

// sseEvents reads an event stream and sends the data of each
// "notification" event; the channel closes when the stream ends.
func sseEvents(resp *http.Response) <-chan string {
	out := make(chan string, 100)
	go func() {
		defer close(out)
		lines := bufio.NewScanner(resp.Body)
		lines.Buffer(make([]byte, 0, 64<<10), 4<<20)
		typ, data := "", []string(nil)
		for lines.Scan() {
			line := lines.Text()
			switch {
			case line == "":
				if typ == "notification" {
					out <- strings.Join(data, "\n")
				}
				typ, data = "", nil
			case strings.HasPrefix(line, "event:"):
				typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
			}
		}
	}()
	return out
}

func nextEvent(t *testing.T, events <-chan string, what string) map[string]any {
	t.Helper()
	select {
	case data, ok := <-events:
		if !ok {
			t.Fatalf("the event stream ended before %s", what)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("%s: event data is not JSON (%v): %s", what, err, data)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no event within 10 s: %s", what)
		return nil
	}
}

// TestEventSourceWithFormatJSON opens the retrieve URL Superfeedr's jQuery
// plugin gives an EventSource (format=json, the credential and count in the
// query; the browser sends Accept: text/event-stream): the answer is an
// event stream whose first event holds the last count items and whose next
// one an item published after it connected.
func TestEventSourceWithFormatJSON(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		g.subscribe(g.admin, topic)
		g.fatPing(g.admin, topic, "urn:1", "One", "urn:2", "Two", "urn:3", "Three")
		q := "hub.mode=retrieve&hub.topic=" + url.QueryEscape(topic) + "&format=json&authorization=" + url.QueryEscape(basic(g.admin)) + "&count=2"
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/?"+q, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Cache-Control", "no-cache")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("answer %s, Content-Type %q: an EventSource aborts on anything but text/event-stream", resp.Status, ct)
		}
		events := sseEvents(resp)
		if got := itemIDs(t, nextEvent(t, events, "the first answer")); !slices.Equal(got, []string{"urn:3", "urn:2"}) {
			t.Fatalf("first event items %v, want the last 2", got)
		}
		g.fatPing(g.admin, topic, "urn:4", "Four")
		if got := itemIDs(t, nextEvent(t, events, "the item published after connecting")); !slices.Equal(got, []string{"urn:4"}) {
			t.Fatalf("live event items %v, want [urn:4]", got)
		}
	})
}

// TestFormBodyParameters sends every mode as a POST whose form body holds
// every parameter, authorization= included (as rack-superfeedr does), with
// no credential in a header or the query.
func TestFormBodyParameters(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		alice := g.user("alice", "subscribe,unsubscribe,list,retrieve,publish")
		post := func(kv ...string) answer {
			t.Helper()
			form := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				form.Add(kv[i], kv[i+1])
			}
			return g.do(http.MethodPost, "", "", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		}
		auth := basic(alice)
		if a := post("hub.mode", "list", "authorization", basic("alice:wrong-token-xxxxxxxx")); a.code != http.StatusUnauthorized {
			t.Fatalf("a wrong authorization in the body: %d %s", a.code, a.body)
		}
		if a := post("hub.mode", "subscribe", "hub.topic", topic, "authorization", auth); a.code != http.StatusNoContent {
			t.Fatalf("subscribe: %d %s", a.code, a.body)
		}
		g.fatPing(g.admin, topic, "urn:1", "One", "urn:2", "Two")
		a := post("hub.mode", "retrieve", "hub.topic", topic, "format", "json", "count", "1", "authorization", auth)
		if a.code != http.StatusOK || !slices.Equal(itemIDs(t, a.json(t)), []string{"urn:2"}) {
			t.Fatalf("retrieve: %d %s", a.code, a.body)
		}
		if a := post("hub.mode", "retrieve", "hub.topic", topic, "callback", "show", "authorization", auth); a.code != http.StatusOK || !strings.Contains(a.body, "show({") {
			t.Fatalf("retrieve JSONP: %d %s", a.code, a.body)
		}
		if a := post("hub.mode", "list", "by_page", "5", "authorization", auth); a.code != http.StatusOK || !strings.Contains(a.body, topic) {
			t.Fatalf("list: %d %s", a.code, a.body)
		}
		if a := post("hub.mode", "publish", "hub.url", topic, "authorization", auth); a.code != http.StatusNoContent {
			t.Fatalf("publish: %d %s", a.code, a.body)
		}
		// Authenticated, and told there is no such callback subscription.
		if a := post("hub.mode", "replay", "hub.topic", topic, "hub.callback", "https://cb.example/x", "authorization", auth); a.code == http.StatusUnauthorized || a.code == http.StatusOK {
			t.Fatalf("replay: %d %s", a.code, a.body)
		}
		if a := post("hub.mode", "unsubscribe", "hub.topic", topic, "authorization", auth); a.code != http.StatusNoContent {
			t.Fatalf("unsubscribe: %d %s", a.code, a.body)
		}
		if a := post("hub.mode", "retrieve", "hub.topic", topic, "format", "json", "authorization", auth); a.code != http.StatusNotFound {
			t.Fatalf("retrieve after unsubscribe: %d %s", a.code, a.body)
		}
		// A query string and a form body together: both are read.
		a = g.do(http.MethodPost, "hub.mode=retrieve&format=json", "", strings.NewReader(url.Values{"hub.topic": {topic}, "authorization": {basic(g.admin)}}.Encode()),
			"Content-Type", "application/x-www-form-urlencoded")
		if a.code != http.StatusOK {
			t.Fatalf("query and body: %d %s", a.code, a.body)
		}
	})
}

// TestNotFoundHints: the 404 of a retrieve without a subscription says what
// the caller's own token can do about it.
func TestNotFoundHints(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		const lonely = "https://blog.example/lonely.xml"
		for _, c := range []struct {
			creds, want string
		}{
			{g.user("sub", "subscribe,retrieve"), "subscribe to it first"},
			{g.user("site", "retrieve", lonely), "a user with the subscribe right must subscribe to it"},
			{g.user("reader", "retrieve"), "use a token with the subscribe right, or one scoped to the topic"},
		} {
			a := g.get("hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(lonely), c.creds)
			if a.code != http.StatusNotFound || !strings.Contains(a.body, c.want) {
				t.Errorf("%s: %d %s, want 404 saying %q", strings.Split(c.creds, ":")[0], a.code, a.body, c.want)
			}
		}
	})
}

// TestMethodOverride: X-HTTP-Method-Override of GET or POST is served like
// the request itself (parameters from the query and the form body alike);
// any other method is a 405 saying what the endpoint takes.
func TestMethodOverride(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		g.subscribe(g.admin, topic)
		g.fatPing(g.admin, topic, "urn:1", "One")
		retrieve := url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "format": {"json"}}.Encode()
		for _, c := range []struct {
			method, override string
			inBody           bool
			code             int
		}{
			{"GET", "", false, 200},
			{"POST", "GET", true, 200},
			{"POST", "get", false, 200},
			{"GET", "POST", false, 200},
			{"POST", "POST", true, 200},
			{"POST", "DELETE", true, 405},
			{"GET", "PUT", false, 405},
			{"POST", "PATCH", false, 405},
		} {
			var a answer
			header := []string{"X-HTTP-Method-Override", c.override}
			if c.inBody {
				header = append(header, "Content-Type", "application/x-www-form-urlencoded")
				a = g.do(c.method, "", g.admin, strings.NewReader(retrieve), header...)
			} else {
				a = g.do(c.method, retrieve, g.admin, nil, header...)
			}
			switch {
			case a.code != c.code:
				t.Errorf("%s with X-HTTP-Method-Override %q: %d %s, want %d", c.method, c.override, a.code, a.body, c.code)
			case c.code == 200 && !slices.Equal(itemIDs(t, a.json(t)), []string{"urn:1"}):
				t.Errorf("%s with X-HTTP-Method-Override %q: %s", c.method, c.override, a.body)
			case c.code == 405 && (!strings.Contains(a.body, c.override) || !strings.Contains(a.body, "GET or POST")):
				t.Errorf("%s with X-HTTP-Method-Override %q: %q does not say what the endpoint takes", c.method, c.override, a.body)
			}
		}
	})
}
