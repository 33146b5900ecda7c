package ingest

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/feedgate/feedgate/fetch"
)

func TestParseLinkHeader(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   []string
		want []HeaderLink
	}{
		{[]string{`<https://hub.example/>; rel="hub"`}, []HeaderLink{{URL: "https://hub.example/", Rels: []string{"hub"}}}},
		{[]string{`<https://a/>; rel=hub, <https://b/>; rel="self"`}, []HeaderLink{{"https://a/", []string{"hub"}}, {"https://b/", []string{"self"}}}},
		{[]string{`<https://a/>;rel="Hub Self"`}, []HeaderLink{{"https://a/", []string{"hub", "self"}}}},
		{[]string{`<https://a/,x>; title="a, b; c"; rel="hub", <https://b/>; rel=self`}, []HeaderLink{{"https://a/,x", []string{"hub"}}, {"https://b/", []string{"self"}}}},
		{[]string{`<https://a/>; rel="hub"; rel="self"`}, []HeaderLink{{"https://a/", []string{"hub"}}}},
		{[]string{`<https://a/>; title="x\"y"; rel=hub`}, []HeaderLink{{"https://a/", []string{"hub"}}}},
		{[]string{`garbage, <https://b/>; rel=hub`}, []HeaderLink{{"https://b/", []string{"hub"}}}},
		{[]string{`<https://a/>`, `<https://b/>; rel="hub"`}, []HeaderLink{{"https://a/", nil}, {"https://b/", []string{"hub"}}}},
		{[]string{`<unterminated; rel=hub`}, nil},
		{[]string{`<https://a/>; rel="unterminated`}, []HeaderLink{{"https://a/", []string{"unterminated"}}}},
		{[]string{``, `;;;`, `<>; rel=hub`}, nil},
	} {
		if got := ParseLinkHeader(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseLinkHeader(%q) = %#v, want %#v", c.in, got, c.want)
		}
	}
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	const base = "https://blog.example/feed"
	for _, c := range []struct {
		name   string
		header []string
		ctype  string
		body   string
		want   Discovery
	}{
		{name: "header",
			header: []string{`</hub>; rel="hub"`, `<https://blog.example/self>; rel="self"`},
			body:   `<html><head><link rel="hub" href="https://other/"></head></html>`, ctype: "text/html",
			want: Discovery{Hubs: []string{"https://blog.example/hub"}, Self: "https://blog.example/self", HTML: true}},
		{name: "header hub, body self",
			header: []string{`<https://hub/>; rel="hub"`},
			body:   atomString([2]string{"self", "https://blog.example/atom"}, [2]string{"hub", "https://ignored/"}),
			want:   Discovery{Hubs: []string{"https://hub/"}, Self: "https://blog.example/atom"}},
		{name: "atom",
			body: atomString([2]string{"hub", "https://hub1/"}, [2]string{"hub", "https://hub2/"}, [2]string{"self", "/atom.xml"}, [2]string{"alternate", "/"}),
			want: Discovery{Hubs: []string{"https://hub1/", "https://hub2/"}, Self: "https://blog.example/atom.xml"}},
		{name: "rss",
			body: `<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>t</title><link>https://blog.example/</link>
<atom:link href="https://blog.example/rss" rel="self" type="application/rss+xml"/><atom:link rel="hub" href="https://pubsubhubbub.appspot.com/"/>
<item><atom:link rel="hub" href="https://item-level/"/></item></channel></rss>`,
			want: Discovery{Hubs: []string{"https://pubsubhubbub.appspot.com/"}, Self: "https://blog.example/rss"}},
		{name: "rss undeclared atom prefix",
			body: `<rss version="2.0"><channel><atom:link rel="hub" href="https://hub/"/></channel></rss>`,
			want: Discovery{Hubs: []string{"https://hub/"}}},
		{name: "entry links ignored",
			body: `<feed xmlns="http://www.w3.org/2005/Atom"><title>x</title><entry><link rel="hub" href="https://entry/"/></entry></feed>`,
			want: Discovery{}},
		{name: "html",
			body: `<!DOCTYPE html><html><head><base href="https://cdn.example/b/"><LINK REL="hub" HREF="hub"><link rel="self" href="https://blog.example/">
<link rel="alternate" type="application/rss+xml" href="rss.xml"><link rel="alternate" type="text/html" href="x.html"><link rel="stylesheet" href="s.css"></head><body></body></html>`,
			want: Discovery{Hubs: []string{"https://cdn.example/b/hub"}, Self: "https://blog.example/", HTML: true, Feeds: []string{"https://cdn.example/b/rss.xml"}}},
		{name: "json feed",
			ctype: "application/feed+json",
			body:  `{"version":"https://jsonfeed.org/version/1.1","title":"j","feed_url":"https://blog.example/feed.json","hubs":[{"type":"WebSub","url":"https://hub/"},{"type":"rssCloud","url":"https://cloud/"}]}`,
			want:  Discovery{Hubs: []string{"https://hub/"}, Self: "https://blog.example/feed.json"}},
		{name: "non-http links dropped",
			header: []string{`<javascript:alert(1)>; rel=hub`, `<ftp://x/>; rel=self`},
			body:   `not a document`,
			want:   Discovery{}},
		{name: "garbage", body: "\x00\xff<<<>>>&&&", want: Discovery{}},
	} {
		resp := &fetch.Response{URL: base, Header: http.Header{}, Body: []byte(c.body), StatusCode: 200}
		for _, h := range c.header {
			resp.Header.Add("Link", h)
		}
		if c.ctype != "" {
			resp.Header.Set("Content-Type", c.ctype)
		}
		if got := Discover(resp); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Discover = %#v, want %#v", c.name, got, c.want)
		}
	}
}

func atomString(links ...[2]string) string {
	return string(atomDoc("t", []entry{{ID: "1", Title: "x"}}, links...))
}

func FuzzDiscover(f *testing.F) {
	f.Add(`</hub>; rel="hub", <x>; rel=self`, "text/html", `<html><link rel=hub href=/h></html>`)
	f.Add("", "application/atom+xml", atomString([2]string{"hub", "https://h/"}))
	f.Add(`<a`, "", `{"hubs":[{"url":"x"}]}`)
	f.Fuzz(func(t *testing.T, link, ctype, body string) {
		resp := &fetch.Response{URL: "https://example.com/feed", Header: http.Header{"Link": {link}, "Content-Type": {ctype}}, Body: []byte(body)}
		d := Discover(resp)
		for _, h := range d.Hubs {
			if h == "" {
				t.Fatal("empty hub")
			}
		}
	})
}
