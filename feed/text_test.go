package feed_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
)

// The text-integrity checks below read the gateway's output with the
// standard library's XML decoder and golang.org/x/net/html, and compare it
// with what the source document said: text that was text reads as the same
// text, markup that was markup keeps its text, and no element appears that
// the source did not have.

// xmlText escapes s as XML character data (as a feed's author would).
func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// xmlable replaces what XML 1.0 cannot carry (invalid UTF-8, forbidden
// characters) by U+FFFD, as xml.EscapeText does.
func xmlable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// cleaned is s as the gateway keeps text: valid UTF-8 without the
// characters XML 1.0 forbids, without surrounding white space, at most n
// bytes.
func cleaned(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = s[:n]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		s = strings.TrimSpace(s)
	}
	return s
}

// htmlRead parses an HTML fragment as a browser inserting it into a <div>
// would, and returns its text and the names of its elements.
func htmlRead(t *testing.T, s string) (string, []string) {
	t.Helper()
	ctx := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	nodes, err := html.ParseFragment(strings.NewReader(s), ctx)
	if err != nil {
		t.Fatalf("HTML parser: %v", err)
	}
	var text strings.Builder
	var names []string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.TextNode:
			text.WriteString(n.Data)
		case html.ElementNode:
			names = append(names, n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	for _, n := range nodes {
		walk(n)
	}
	slices.Sort(names)
	return text.String(), slices.Compact(names)
}

// htmlNewlines is what an HTML parser makes of line ends.
var htmlNewlines = strings.NewReplacer("\r\n", "\n", "\r", "\n")

const (
	maxTitle   = 2048
	maxContent = 256 << 10
)

// sourceDocs renders the three strings in an Atom, an RSS and a JSON Feed
// document, each in the roles its format has: title as text, plain as
// text content (Atom type="text", the default, and xhtml; JSON Feed
// content_text and summary), markup as HTML (Atom type="html", RSS
// description).
func sourceDocs(title, plain, markup string) map[string]string {
	atomDoc := `<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><id>urn:f</id><updated>2026-11-22T10:00:00Z</updated>` +
		`<entry><id>urn:e:1</id><title type="text">` + xmlText(title) + `</title><updated>2026-11-22T10:00:01Z</updated><link href="https://e.example/1"/>` +
		`<content type="text">` + xmlText(plain) + `</content><summary type="html">` + xmlText(markup) + `</summary></entry>` +
		`<entry><id>urn:e:2</id><title>` + xmlText(title) + `</title><updated>2026-11-22T10:00:02Z</updated><link href="https://e.example/2"/>` +
		`<summary>` + xmlText(plain) + `</summary><content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">` + xmlText(plain) + `</div></content></entry></feed>`
	rssDoc := `<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>F</title><link>https://e.example/</link>` +
		`<item><guid>urn:e:1</guid><title>` + xmlText(title) + `</title><link>https://e.example/1</link><description>` + xmlText(markup) + `</description></item></channel></rss>`
	jf, _ := json.Marshal(map[string]any{
		"version": "https://jsonfeed.org/version/1.1", "title": "F",
		"items": []map[string]any{{"id": "urn:e:1", "url": "https://e.example/1", "title": title, "content_text": plain, "summary": plain}},
	})
	return map[string]string{"atom": atomDoc, "rss": rssDoc, "json": string(jf)}
}

// roles says, per source format and entry id, which input each field held:
// "plain", "markup", "xhtml" (plain written as the text of XHTML content)
// or "" (not given).
var roles = map[string]map[string][2]string{ // id -> {content, summary}
	"atom": {"urn:e:1": {"plain", "markup"}, "urn:e:2": {"xhtml", "plain"}},
	"rss":  {"urn:e:1": {"", "markup"}},
	"json": {"urn:e:1": {"plain", "plain"}},
}

type outItem struct {
	id, title, content, summary string
}

// readAtom decodes an Atom answer's entries; content and summary must be
// type="html" (or absent).
func readAtom(t *testing.T, b []byte) []outItem {
	t.Helper()
	var doc struct {
		Entries []struct {
			ID      string `xml:"id"`
			Title   string `xml:"title"`
			Content struct {
				Type string `xml:"type,attr"`
				Body string `xml:",chardata"`
			} `xml:"content"`
			Summary struct {
				Type string `xml:"type,attr"`
				Body string `xml:",chardata"`
			} `xml:"summary"`
		} `xml:"http://www.w3.org/2005/Atom entry"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the Atom answer is not XML: %v\n%s", err, b)
	}
	var out []outItem
	for _, e := range doc.Entries {
		for _, typ := range []string{e.Content.Type, e.Summary.Type} {
			if typ != "" && typ != "html" {
				t.Fatalf("Atom content or summary of type %q; want html", typ)
			}
		}
		out = append(out, outItem{e.ID, e.Title, e.Content.Body, e.Summary.Body})
	}
	return out
}

func readJSON(t *testing.T, b []byte) []outItem {
	t.Helper()
	var n struct {
		Items []struct{ ID, Title, Content, Summary string } `json:"items"`
	}
	if err := json.Unmarshal(b, &n); err != nil {
		t.Fatalf("the JSON answer does not decode: %v\n%s", err, b)
	}
	var out []outItem
	for _, it := range n.Items {
		out = append(out, outItem{it.ID, it.Title, it.Content, it.Summary})
	}
	return out
}

// checkText holds one output item to the source strings.
func checkText(t *testing.T, where string, it outItem, role [2]string, title, plain, markup string) {
	t.Helper()
	if want := cleaned(title, maxTitle); it.title != want {
		t.Errorf("%s %s: title %q, want the text %q", where, it.id, it.title, want)
	}
	// What an author's markup shows, read the same way (surrounding white
	// space aside: the gateway trims content).
	markupText, markupElems := htmlRead(t, cleaned(markup, maxContent))
	markupText = strings.TrimSpace(markupText)
	for i, got := range []string{it.content, it.summary} {
		field := [2]string{"content", "summary"}[i]
		text, elems := htmlRead(t, got)
		switch role[i] {
		case "plain":
			if want := htmlNewlines.Replace(cleaned(plain, maxContent)); text != want {
				t.Errorf("%s %s: %s %q shows %q, want the text %q", where, it.id, field, got, text, want)
			}
			if len(elems) > 0 {
				t.Errorf("%s %s: %s %q has elements %v; the source was text", where, it.id, field, got, elems)
			}
		case "xhtml":
			// Markup whose only content is the text: white space around it
			// is insignificant, the rest must read the same.
			want := htmlNewlines.Replace(cleaned(plain, maxContent))
			if text = strings.TrimSpace(htmlNewlines.Replace(text)); text != want {
				t.Errorf("%s %s: %s %q shows %q, want the text %q", where, it.id, field, got, text, want)
			}
			if len(elems) > 0 {
				t.Errorf("%s %s: %s %q has elements %v; the source was text", where, it.id, field, got, elems)
			}
		case "markup":
			if text = strings.TrimSpace(text); text != markupText {
				t.Errorf("%s %s: %s %q shows %q, the source markup %q", where, it.id, field, got, text, markupText)
			}
			for _, e := range elems {
				if !slices.Contains(markupElems, e) {
					t.Errorf("%s %s: %s %q has a <%s> the source markup %q has not", where, it.id, field, got, e, markup)
				}
			}
		}
	}
}

// textRun parses the source documents, stores their items in a real store,
// reads them back and renders them as Atom and JSON, then checks both.
type textRun struct {
	st  store.Store
	seq atomic.Int64
}

func newTextRun(t testing.TB) *textRun {
	st, err := embedded.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &textRun{st: st}
}

func (r *textRun) check(t *testing.T, title, plain, markup string) {
	// The sources say what XML can carry: xml.EscapeText writes other
	// characters as U+FFFD, and so does every format here.
	title, plain, markup = xmlable(title), xmlable(plain), xmlable(markup)
	ctx := context.Background()
	for format, doc := range sourceDocs(title, plain, markup) {
		topic := fmt.Sprintf("https://text.example/%s/%d", format, r.seq.Add(1))
		d, err := feed.ParseWithBase([]byte(doc), "", topic)
		if err != nil {
			t.Fatalf("%s source does not parse: %v\n%s", format, err, doc)
		}
		if _, err := r.st.Append(ctx, topic, d.Items); err != nil {
			t.Fatal(err)
		}
		page, err := r.st.Read(ctx, topic, store.Query{From: store.Newest, Count: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != len(roles[format]) {
			t.Fatalf("%s: %d items stored, want %d", format, len(page.Items), len(roles[format]))
		}
		n := &feed.Notification{Status: feed.Status{Feed: topic}, Meta: d.Meta, Items: page.Items}
		for out, items := range map[string][]outItem{
			"Atom": readAtom(t, feed.AppendAtom(nil, n, topic, "https://hub.example/")),
			"JSON": readJSON(t, feed.AppendJSON(nil, n)),
		} {
			for _, it := range items {
				checkText(t, format+" source, "+out, it, roles[format][it.id], title, plain, markup)
			}
		}
	}
}

// TestTextStaysText is the example and its kin, end to end.
func TestTextStaysText(t *testing.T) {
	t.Parallel()
	r := newTextRun(t)
	for _, c := range [][3]string{
		{"a <b>bold</b> title", "a <b>bold</b>", "a <b>bold</b>"},
		{`Tom & "Jerry" <3 'em`, `if (a < b && c > d) { alert("x") }`, `<p>Tom &amp; Jerry</p>`},
		{"&lt;escaped&gt; &amp;amp;", "&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script><i>x</i>"},
		{"plain", "line one\r\nline two\ttabbed", "<img src=x onerror=alert(1)>"},
	} {
		r.check(t, c[0], c[1], c[2])
	}
}

// FuzzTextStaysText runs random text and markup through parse, store and
// both encoders.
//
//	go test -run '^$' -fuzz FuzzTextStaysText ./feed
func FuzzTextStaysText(f *testing.F) {
	for _, s := range []string{"", "<>&\"'", "a <b>bold</b>", "&amp;lt;", "<![CDATA[x]]>", "]]>", "<!-- c -->", "\r\n\t x \u00a0", "<div>a</div>", "&#x26;", "<p>a<p>b"} {
		f.Add(s, s, s)
	}
	r := newTextRun(f)
	f.Fuzz(func(t *testing.T, title, plain, markup string) {
		r.check(t, title, plain, markup)
	})
}

// TestTextKinds reads each mark of text and HTML the formats have.
func TestTextKinds(t *testing.T) {
	t.Parallel()
	doc := `<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">
<title type="html">News &amp;lt;b&amp;gt;here&amp;lt;/b&amp;gt;</title><subtitle>a &lt;i&gt;b&lt;/i&gt;</subtitle><id>urn:f</id>
<entry><id>urn:1</id><title type="html">a &lt;b&gt;bold&lt;/b&gt;&lt;br&gt;move</title><media:title type="plain">x</media:title>
<content type="text">a &lt;b&gt;bold&lt;/b&gt;</content><summary>1 &lt; 2 &amp; 3</summary></entry>
<entry><id>urn:2</id><title>&lt;3</title><content type="html">a &lt;b&gt;bold&lt;/b&gt;</content><summary type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><b>b</b></div></summary>
<source><title type="html">&lt;i&gt;src&lt;/i&gt;</title></source></entry>
</feed>`
	d, err := feed.Parse([]byte(doc), "application/atom+xml")
	if err != nil {
		t.Fatal(err)
	}
	if d.Meta.Title != "News <b>here</b>" || d.Meta.Subtitle != "a <i>b</i>" {
		t.Errorf("feed title %q, subtitle %q", d.Meta.Title, d.Meta.Subtitle)
	}
	byID := map[string]feed.Item{}
	for _, it := range d.Items {
		byID[it.ID] = it
	}
	for _, c := range []struct{ id, title, content, summary string }{
		{"urn:1", "a bold move", "a &lt;b&gt;bold&lt;/b&gt;", "1 &lt; 2 &amp; 3"},
		{"urn:2", "<3", "a <b>bold</b>", "<b>b</b>"},
	} {
		it := byID[c.id]
		if it.Title != c.title || it.Content != c.content || it.Summary != c.summary {
			t.Errorf("%s: title %q content %q summary %q, want %q %q %q", c.id, it.Title, it.Content, it.Summary, c.title, c.content, c.summary)
		}
	}
	jf := `{"version":"https://jsonfeed.org/version/1.1","title":"J","items":[
{"id":"1","content_text":"a <b>bold</b>","summary":"x & y"},{"id":"2","content_html":"a <b>bold</b>","content_text":"ignored"}]}`
	if d, err = feed.Parse([]byte(jf), "application/feed+json"); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]string{}
	for _, it := range d.Items {
		got[it.ID] = [2]string{it.Content, it.Summary}
	}
	if got["1"] != [2]string{"a &lt;b&gt;bold&lt;/b&gt;", "x &amp; y"} || got["2"][0] != "a <b>bold</b>" {
		t.Errorf("JSON Feed content and summary %q", got)
	}
}
