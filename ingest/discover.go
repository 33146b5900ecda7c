package ingest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/html"

	"github.com/feedgate/feedgate/fetch"
)

// Discovery is what a fetched document says about where its updates are
// published (WebSub §4).
type Discovery struct {
	// Hubs are the advertised hubs, absolute, in document order, without
	// duplicates.
	Hubs []string
	// Self is the topic URL to subscribe with (rel=self), "" when none.
	Self string
	// HTML reports that the document is an HTML page, not a feed.
	HTML bool
	// Feeds are the feeds an HTML page names as its alternates.
	Feeds []string
}

// Discover finds hubs and the self URL of a fetched document: Link headers
// first, then <link>/<atom:link> elements of an Atom, RSS or HTML body (or
// the hubs and feed_url of a JSON Feed). Each relation is taken from the
// headers when they carry it, else from the body. Relative URLs are resolved
// against the URL that answered.
func Discover(resp *fetch.Response) Discovery {
	base, _ := url.Parse(resp.URL)
	var d Discovery
	hubs, self := discoverHeader(resp.Header, base)
	body := discoverBody(resp.Body, resp.ContentType(), base)
	d.HTML, d.Feeds = body.HTML, body.Feeds
	if len(hubs) > 0 {
		d.Hubs = hubs
	} else {
		d.Hubs = body.Hubs
	}
	if self != "" {
		d.Self = self
	} else {
		d.Self = body.Self
	}
	return d
}

// discoverHeader reads the Link headers.
func discoverHeader(h http.Header, base *url.URL) (hubs []string, self string) {
	for _, l := range ParseLinkHeader(h.Values("Link")) {
		for _, rel := range l.Rels {
			switch rel {
			case "hub":
				hubs = appendURL(hubs, base, l.URL)
			case "self":
				if self == "" {
					self = resolve(base, l.URL)
				}
			}
		}
	}
	return hubs, self
}

// HeaderLink is one link of a Link header (RFC 8288).
type HeaderLink struct {
	URL string
	// Rels are the link's relation types, lower case.
	Rels []string
}

// ParseLinkHeader parses Link header values: `<url>; rel="a b"; x=y, <url2>; rel=c`.
// Malformed links are skipped.
func ParseLinkHeader(values []string) []HeaderLink {
	var out []HeaderLink
	for _, v := range values {
		p := linkParser{s: v}
		for {
			l, ok := p.next()
			if !ok {
				break
			}
			if l.URL != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// linkParser scans one Link header value.
type linkParser struct {
	s string
	i int
}

func (p *linkParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// next returns the next link; ok is false at the end of the value.
func (p *linkParser) next() (l HeaderLink, ok bool) {
	for {
		for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
			p.i++
		}
		if p.i >= len(p.s) {
			return l, false
		}
		if p.s[p.i] == '<' {
			break
		}
		p.skipLink() // garbage: resynchronise at the next comma
	}
	end := strings.IndexByte(p.s[p.i:], '>')
	if end < 0 {
		p.i = len(p.s)
		return l, false
	}
	l.URL = strings.TrimSpace(p.s[p.i+1 : p.i+end])
	p.i += end + 1
	for {
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] == ',' {
			return l, true
		}
		if p.s[p.i] != ';' {
			p.skipLink()
			return l, true
		}
		p.i++
		p.skipSpace()
		start := p.i
		for p.i < len(p.s) && !strings.ContainsRune("=;, \t", rune(p.s[p.i])) {
			p.i++
		}
		name := strings.ToLower(p.s[start:p.i])
		p.skipSpace()
		var value string
		if p.i < len(p.s) && p.s[p.i] == '=' {
			p.i++
			p.skipSpace()
			value = p.value()
		}
		if name == "rel" && l.Rels == nil {
			l.Rels = strings.Fields(strings.ToLower(value))
		}
	}
}

// value reads a token or a quoted string.
func (p *linkParser) value() string {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		var b strings.Builder
		p.i++
		for p.i < len(p.s) && p.s[p.i] != '"' {
			if p.s[p.i] == '\\' && p.i+1 < len(p.s) {
				p.i++
			}
			b.WriteByte(p.s[p.i])
			p.i++
		}
		if p.i < len(p.s) {
			p.i++ // the closing quote
		}
		return b.String()
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ';' && p.s[p.i] != ',' {
		p.i++
	}
	return strings.TrimSpace(p.s[start:p.i])
}

// skipLink moves past the next comma that is not inside quotes.
func (p *linkParser) skipLink() {
	quoted := false
	for ; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; {
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			p.i++
			return
		}
	}
}

// discoverBody reads the links of the document itself.
func discoverBody(body []byte, contentType string, base *url.URL) Discovery {
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")), " \t\r\n")
	switch {
	case strings.Contains(contentType, "html") || looksLikeHTML(trimmed):
		d := discoverHTML(body, base)
		d.HTML = true
		return d
	case strings.Contains(contentType, "json") || (len(trimmed) > 0 && trimmed[0] == '{'):
		return discoverJSON(body, base)
	default:
		return discoverXML(body, base)
	}
}

func looksLikeHTML(b []byte) bool {
	head := b[:min(len(b), 512)]
	lower := bytes.ToLower(head)
	return bytes.HasPrefix(lower, []byte("<!doctype html")) || bytes.HasPrefix(lower, []byte("<html")) ||
		(bytes.HasPrefix(lower, []byte("<!--")) && bytes.Contains(lower, []byte("<html")))
}

// discoverHTML reads <link rel=hub|self|alternate> and <base href> of an
// HTML page.
func discoverHTML(body []byte, base *url.URL) Discovery {
	var d Discovery
	z := html.NewTokenizer(bytes.NewReader(body))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return d
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			if (tag != "link" && tag != "base") || !hasAttr {
				if tag == "body" && (len(d.Hubs) > 0 || d.Self != "") {
					// Links belong in the head; a page that has them there
					// need not be read further.
					return d
				}
				continue
			}
			var rel, href, typ string
			for {
				k, v, more := z.TagAttr()
				switch string(k) {
				case "rel":
					rel = strings.ToLower(string(v))
				case "href":
					href = strings.TrimSpace(string(v))
				case "type":
					typ = strings.ToLower(strings.TrimSpace(string(v)))
				}
				if !more {
					break
				}
			}
			if tag == "base" {
				if b, err := base.Parse(href); err == nil && href != "" {
					base = b
				}
				continue
			}
			d.addRels(strings.Fields(rel), href, typ, base)
		}
	}
}

func (d *Discovery) addRels(rels []string, href, typ string, base *url.URL) {
	if href == "" {
		return
	}
	for _, r := range rels {
		switch r {
		case "hub":
			d.Hubs = appendURL(d.Hubs, base, href)
		case "self":
			if d.Self == "" {
				d.Self = resolve(base, href)
			}
		case "alternate":
			switch typ {
			case "application/atom+xml", "application/rss+xml", "application/feed+json", "application/rdf+xml":
				d.Feeds = appendURL(d.Feeds, base, href)
			}
		}
	}
}

const (
	atomNS   = "http://www.w3.org/2005/Atom"
	atom03NS = "http://purl.org/atom/ns#"
)

// discoverXML reads the feed-level <link> (Atom) and <atom:link> (RSS)
// elements, stopping at the first entry.
func discoverXML(body []byte, base *url.URL) Discovery {
	var d Discovery
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = false
	dec.Entity = xml.HTMLEntity
	// Link URLs are ASCII in every encoding a feed uses; reading the bytes
	// as they are is enough to find them.
	dec.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	depth := 0
	for n := 0; n < 10000; n++ {
		tok, err := dec.Token()
		if err != nil {
			return d
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch strings.ToLower(t.Name.Local) {
			case "entry", "item":
				return d
			case "link":
				// Feed-level links: children of <feed> (depth 2) or of
				// <channel> (depth 3). RSS's own <link> has no rel and no
				// href and is skipped by addRels.
				if depth > 3 || !atomSpace(t.Name.Space) {
					continue
				}
				var rel, href, typ string
				for _, a := range t.Attr {
					switch strings.ToLower(a.Name.Local) {
					case "rel":
						rel = strings.ToLower(a.Value)
					case "href":
						href = strings.TrimSpace(a.Value)
					case "type":
						typ = strings.ToLower(a.Value)
					}
				}
				if rel == "" && href != "" {
					rel = "alternate"
				}
				d.addRels(strings.Fields(rel), href, typ, base)
			}
		case xml.EndElement:
			depth--
		}
	}
	return d
}

// atomSpace reports whether a link element's namespace is Atom's (or
// none, or an undeclared "atom" prefix, as sloppy RSS feeds write it).
func atomSpace(ns string) bool {
	switch ns {
	case "", atomNS, atom03NS, "atom":
		return true
	}
	return false
}

// discoverJSON reads a JSON Feed's hubs and feed_url.
func discoverJSON(body []byte, base *url.URL) Discovery {
	var jf struct {
		FeedURL string `json:"feed_url"`
		Hubs    []struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"hubs"`
	}
	var d Discovery
	if json.Unmarshal(body, &jf) != nil {
		return d
	}
	for _, h := range jf.Hubs {
		if t := strings.ToLower(h.Type); t == "websub" || t == "pubsubhubbub" || t == "" {
			d.Hubs = appendURL(d.Hubs, base, h.URL)
		}
	}
	if jf.FeedURL != "" {
		d.Self = resolve(base, jf.FeedURL)
	}
	return d
}

// resolve makes ref absolute against base; "" when it is not an http(s) URL.
func resolve(base *url.URL, ref string) string {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return ""
	}
	var u *url.URL
	var err error
	if base != nil {
		u, err = base.Parse(ref)
	} else {
		u, err = url.Parse(ref)
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	u.Fragment = ""
	return u.String()
}

func appendURL(list []string, base *url.URL, ref string) []string {
	u := resolve(base, ref)
	if u == "" {
		return list
	}
	for _, x := range list {
		if x == u {
			return list
		}
	}
	return append(list, u)
}
