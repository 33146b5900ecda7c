package server_test

import (
	"encoding/xml"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/feedgate/feedgate/store"
)

const topic = "https://blog.example/feed.xml"

func TestAuthentication(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		q := "hub.mode=list"
		a := g.get(q, "")
		if a.code != http.StatusUnauthorized || a.header.Get("WWW-Authenticate") != `Basic realm="feedgate"` {
			t.Fatalf("no credentials: %d %v", a.code, a.header)
		}
		if a := g.get(q, "root:wrong-token-xxxxxxxx"); a.code != http.StatusUnauthorized {
			t.Fatalf("wrong token: %d", a.code)
		}
		if a := g.get(q, "nobody:wrong-token-xxxxxxxx"); a.code != http.StatusUnauthorized {
			t.Fatalf("unknown login: %d", a.code)
		}
		if a := g.get(q, g.admin); a.code != http.StatusOK {
			t.Fatalf("basic auth: %d %s", a.code, a.body)
		}
		if a := g.get(q+"&authorization="+url.QueryEscape(basic(g.admin)), ""); a.code != http.StatusOK {
			t.Fatalf("authorization= parameter: %d %s", a.code, a.body)
		}
		reader := g.user("reader", "retrieve")
		a = g.get(q, reader)
		if a.code != http.StatusForbidden || !strings.Contains(a.body, `"list" right`) {
			t.Fatalf("missing right: %d %s", a.code, a.body)
		}
	})
}

func TestSubscribePublishRetrieve(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		alice := g.user("alice", "subscribe,unsubscribe,list,retrieve,publish")
		bob := g.user("bob", "subscribe,retrieve")
		g.subscribe(alice, topic)

		if a := g.get("hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(topic), bob); a.code != http.StatusNotFound {
			t.Fatalf("retrieve without a subscription: %d %s", a.code, a.body)
		}
		out := g.fatPing(alice, topic, "urn:1", "One", "urn:2", "Two", "urn:3", "Three")
		if out["stored"].(float64) != 3 || out["cursor"] != "0000000000000003" {
			t.Fatalf("fat ping answer: %v", out)
		}
		if out := g.fatPing(alice, topic, "urn:1", "One", "urn:2", "Two"); out["stored"].(float64) != 0 {
			t.Fatalf("the same entries were stored again: %v", out)
		}

		base := "hub.mode=retrieve&hub.topic=" + url.QueryEscape(topic)
		a := g.get(base+"&format=json", alice)
		m := a.json(t)
		if got := itemIDs(t, m); !slices.Equal(got, []string{"urn:3", "urn:2", "urn:1"}) {
			t.Fatalf("items %v, want newest first", got)
		}
		st := m["status"].(map[string]any)
		if st["feed"] != topic || st["cursor"] != "0000000000000003" || st["gap"] != false {
			t.Fatalf("status %v", st)
		}
		if m["title"] != "Test feed" {
			t.Fatalf("title %v", m["title"])
		}
		if a := g.get(base, alice, "Accept", "application/json"); !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
			t.Fatalf("Accept: application/json gave %s", a.header.Get("Content-Type"))
		}

		// Paging by cursor and by entry id.
		m = g.get(base+"&format=json&count=1&after=0000000000000001", alice).json(t)
		if got := itemIDs(t, m); !slices.Equal(got, []string{"urn:2"}) {
			t.Fatalf("after=1 count=1: %v", got)
		}
		m = g.get(base+"&format=json&after=urn:1", alice).json(t)
		if got := itemIDs(t, m); !slices.Equal(got, []string{"urn:3", "urn:2"}) {
			t.Fatalf("after=urn:1: %v", got)
		}
		m = g.get(base+"&format=json&before=0000000000000003", alice).json(t)
		if got := itemIDs(t, m); !slices.Equal(got, []string{"urn:2", "urn:1"}) {
			t.Fatalf("before=3: %v", got)
		}
		if a := g.get(base+"&format=json&after=urn:unknown", alice); a.code != http.StatusUnprocessableEntity {
			t.Fatalf("unknown entry id: %d", a.code)
		}

		// An updated entry is stored again as a new item.
		out = g.fatPing(alice, topic, "urn:2", "Two, edited")
		if out["stored"].(float64) != 1 || out["cursor"] != "0000000000000004" {
			t.Fatalf("update: %v", out)
		}

		// Atom.
		a = g.get(base, alice)
		if a.code != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "application/atom+xml") {
			t.Fatalf("atom: %d %s", a.code, a.header.Get("Content-Type"))
		}
		var doc struct {
			XMLName xml.Name `xml:"feed"`
			Entries []struct {
				ID    string `xml:"id"`
				Title string `xml:"title"`
			} `xml:"entry"`
		}
		if err := xml.Unmarshal([]byte(a.body), &doc); err != nil {
			t.Fatalf("atom does not parse: %v\n%s", err, a.body)
		}
		if len(doc.Entries) != 4 || doc.Entries[0].Title != "Two, edited" {
			t.Fatalf("atom entries %+v", doc.Entries)
		}

		// JSONP, also for errors.
		a = g.get(base+"&callback=jQuery123_456", alice)
		if !strings.HasPrefix(a.header.Get("Content-Type"), "application/javascript") || !strings.Contains(a.body, "jQuery123_456({") {
			t.Fatalf("jsonp: %s %s", a.header.Get("Content-Type"), a.body[:min(80, len(a.body))])
		}
		a = g.get(base+"&callback=cb&count=0", alice)
		if a.code != http.StatusOK || !strings.Contains(a.body, `cb({"error":{"code":422`) {
			t.Fatalf("jsonp error: %d %s", a.code, a.body)
		}
		if a := g.get(base+"&callback=alert(1)", alice); a.code != http.StatusUnprocessableEntity {
			t.Fatalf("bad callback: %d %s", a.code, a.body)
		}

		// Subscribe with retrieve=true answers the items.
		a = g.do(http.MethodPost, "", bob, strings.NewReader(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "retrieve": {"true"}, "format": {"json"}}.Encode()),
			"Content-Type", "application/x-www-form-urlencoded")
		if a.code != http.StatusOK || len(itemIDs(t, a.json(t))) != 4 {
			t.Fatalf("subscribe retrieve=true: %d %s", a.code, a.body)
		}

		// List, then unsubscribe.
		a = g.get("hub.mode=list", alice)
		if a.code != http.StatusOK || !strings.Contains(a.body, `"url":"`+topic+`"`) || strings.Contains(a.body, "secret") {
			t.Fatalf("list: %d %s", a.code, a.body)
		}
		a = g.do(http.MethodPost, "hub.mode=unsubscribe&hub.topic="+url.QueryEscape(topic), alice, nil)
		if a.code != http.StatusNoContent {
			t.Fatalf("unsubscribe: %d %s", a.code, a.body)
		}
		if a := g.get(base+"&format=json", alice); a.code != http.StatusNotFound {
			t.Fatalf("retrieve after unsubscribe: %d", a.code)
		}
	})
}

func TestGapAfterTrim(t *testing.T) {
	forEachStore(t, store.Options{Retention: 3}, func(t *testing.T, g *gateway) {
		g.subscribe(g.admin, topic)
		g.fatPing(g.admin, topic, "a", "A", "b", "B", "c", "C", "d", "D", "e", "E")
		base := "hub.mode=retrieve&format=json&hub.topic=" + url.QueryEscape(topic)
		a := g.get(base+"&after=0000000000000001", g.admin)
		m := a.json(t)
		if a.header.Get("Feedgate-Gap") != "true" || m["status"].(map[string]any)["gap"] != true {
			t.Fatalf("no gap signalled: %v %s", a.header, a.body)
		}
		if got := itemIDs(t, m); !slices.Equal(got, []string{"e", "d", "c"}) {
			t.Fatalf("items after a trimmed cursor: %v", got)
		}
		if a := g.get(base+"&after=0000000000000002", g.admin); a.header.Get("Feedgate-Gap") != "" {
			t.Fatalf("gap signalled for a cursor directly before the oldest held")
		}
		a = g.get("hub.mode=retrieve&hub.topic="+url.QueryEscape(topic)+"&after=0000000000000001", g.admin)
		if !strings.Contains(a.body, "<sf:gap>") && !strings.Contains(a.body, "gap") {
			t.Fatalf("atom does not say gap: %s", a.body)
		}
	})
}

func TestScopedToken(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		other := "https://other.example/feed"
		g.subscribe(g.admin, topic)
		g.subscribe(g.admin, other)
		site := g.user("site", "retrieve", topic)
		if a := g.get("hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(other), site); a.code != http.StatusForbidden {
			t.Fatalf("scoped token on another topic: %d %s", a.code, a.body)
		}
		// The scope is an explicit grant: a tracked topic in it is readable
		// without a subscription of the token's own user.
		if a := g.get("hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(topic), site); a.code != http.StatusOK {
			t.Fatalf("scoped token on its tracked topic: %d %s", a.code, a.body)
		}
		untracked := "https://blog.example/untracked"
		wide := g.user("wide", "retrieve", "https://blog.example/*")
		if a := g.get("hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(untracked), wide); a.code != http.StatusNotFound {
			t.Fatalf("scoped token on an untracked topic: %d %s", a.code, a.body)
		}
		prefix := g.user("prefix", "subscribe,retrieve", "https://blog.example/*")
		g.subscribe(prefix, topic)
		if a := g.get("hub.mode=retrieve&format=json&hub.topic="+url.QueryEscape(topic), prefix); a.code != http.StatusOK {
			t.Fatalf("prefix scope: %d %s", a.code, a.body)
		}
	})
}

func TestCORS(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		a := g.do(http.MethodOptions, "", "", nil, "Origin", "https://widget.example", "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "authorization")
		if a.code/100 != 2 || a.header.Get("Access-Control-Allow-Origin") != "https://widget.example" {
			t.Fatalf("preflight: %d %v", a.code, a.header)
		}
		a = g.get("hub.mode=list", g.admin, "Origin", "https://widget.example")
		if a.header.Get("Access-Control-Allow-Origin") != "https://widget.example" {
			t.Fatalf("no CORS header on an allowed origin: %v", a.header)
		}
		a = g.get("hub.mode=list", g.admin, "Origin", "https://evil.example")
		if a.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("CORS header for a foreign origin: %v", a.header)
		}
		if a.code != http.StatusForbidden || !strings.Contains(a.body, "--allowed-origins") {
			t.Fatalf("a foreign origin is not told why it is refused: %d %q %v", a.code, a.body, a.header)
		}
	})
}
