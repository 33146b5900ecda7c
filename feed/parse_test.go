package feed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const topic = "https://example.com/feed.xml"

func mustParse(t *testing.T, body, contentType string) *Document {
	t.Helper()
	doc, err := Parse([]byte(body), contentType)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := checkDocument(doc); err != nil {
		t.Fatal(err)
	}
	if err := checkRoundTrip(topic, doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func titles(doc *Document) []string {
	var out []string
	for _, it := range doc.Items {
		out = append(out, it.Title)
	}
	return out
}

func unixOf(s string) int64 {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.Unix()
}

const rss2 = `<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
  <title>Example &amp; Co</title>
  <link>https://example.com/</link>
  <description>News from Example</description>
  <language>en-us</language>
  <lastBuildDate>Wed, 03 Jan 2024 12:00:00 GMT</lastBuildDate>
  <atom:link rel="hub" href="https://hub.example.com/"/>
  <atom:link rel="self" type="application/rss+xml" href="https://example.com/feed.xml"/>
  <item>
    <title>Second</title>
    <link>/posts/2</link>
    <guid isPermaLink="false">post-2</guid>
    <pubDate>Tue, 02 Jan 2024 10:00:00 GMT</pubDate>
    <description>&lt;p&gt;The second&lt;/p&gt;</description>
    <content:encoded><![CDATA[<p>The <b>second</b> post</p>]]></content:encoded>
    <category>news</category><category>go</category><category>news</category>
    <author>jo@example.com (Jo Doe)</author>
  </item>
  <item>
    <title>First</title>
    <link>https://example.com/posts/1</link>
    <guid>https://example.com/posts/1</guid>
    <pubDate>Mon, 01 Jan 2024 10:00:00 GMT</pubDate>
    <description>The first</description>
    <dc:creator>Al</dc:creator>
  </item>
</channel>
</rss>`

const atom10 = `<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="fr">
  <title type="text">Atom Example</title>
  <subtitle>Sub</subtitle>
  <id>tag:example.org,2024:feed</id>
  <updated>2024-02-02T00:00:00Z</updated>
  <link rel="self" type="application/atom+xml" href="https://example.org/atom.xml"/>
  <link rel="alternate" type="text/html" href="https://example.org/"/>
  <link rel="hub" href="https://pubsubhubbub.appspot.com/"/>
  <link rel="hub" href="https://websub.example.org/"/>
  <author><name>Feed Author</name><uri>https://example.org/about</uri></author>
  <entry>
    <id>tag:example.org,2024:entry-2</id>
    <title>Entry two</title>
    <updated>2024-02-02T00:00:00Z</updated>
    <link href="https://example.org/2"/>
    <link rel="replies" href="https://example.org/2/comments"/>
    <content type="html">&lt;p&gt;Two&lt;/p&gt;</content>
    <category term="x" label="Ex"/>
  </entry>
  <entry>
    <id>tag:example.org,2024:entry-1</id>
    <title>Entry one</title>
    <published>2024-01-01T00:00:00Z</published>
    <updated>2024-01-05T00:00:00+01:00</updated>
    <link rel="alternate" type="text/html" href="https://example.org/1"/>
    <link rel="alternate" type="application/pdf" href="https://example.org/1.pdf"/>
    <summary>One</summary>
    <author><name>Entry Author</name><email>ea@example.org</email></author>
  </entry>
</feed>`

const jsonFeed = `{
  "version": "https://jsonfeed.org/version/1.1",
  "title": "JSON Example",
  "home_page_url": "https://example.net/",
  "feed_url": "https://example.net/feed.json",
  "language": "de",
  "hubs": [{"type": "WebSub", "url": "https://hub.example.net/"}],
  "authors": [{"name": "Net Author", "url": "https://example.net/me"}],
  "items": [
    {"id": "2", "url": "https://example.net/2", "title": "Zwei", "content_html": "<p>2</p>",
     "date_published": "2024-03-02T00:00:00Z", "tags": ["a", "b"]},
    {"id": 1, "url": "https://example.net/1", "content_text": "Eins", "summary": "1",
     "date_published": "2024-03-01T00:00:00Z", "date_modified": "2024-03-01T12:00:00Z",
     "authors": [{"name": "Other"}], "language": "en"}
  ]
}`

func TestParseRSS(t *testing.T) {
	t.Parallel()
	doc := mustParse(t, rss2, "application/rss+xml; charset=utf-8")
	if doc.Format != "rss" {
		t.Errorf("format %q", doc.Format)
	}
	m := doc.Meta
	want := Meta{
		Title: "Example & Co", Subtitle: "News from Example", Language: "en-us",
		Updated: unixOf("2024-01-03T12:00:00Z"), PermalinkURL: "https://example.com/",
		StandardLinks: &Links{
			Alternate: []Link{{Href: "https://example.com/"}},
			Self:      []Link{{Href: "https://example.com/feed.xml", Type: "application/rss+xml"}},
			Hub:       []Link{{Href: "https://hub.example.com/"}},
		},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("meta\n got %+v %+v\nwant %+v %+v", m, m.StandardLinks, want, want.StandardLinks)
	}
	if got := titles(doc); !reflect.DeepEqual(got, []string{"First", "Second"}) {
		t.Fatalf("order %q", got)
	}
	first, second := doc.Items[0], doc.Items[1]
	if first.ID != "https://example.com/posts/1" || second.ID != "post-2" {
		t.Errorf("ids %q %q", first.ID, second.ID)
	}
	if second.PermalinkURL != "https://example.com/posts/2" {
		t.Errorf("relative link resolved to %q", second.PermalinkURL)
	}
	if second.Content != "<p>The <b>second</b> post</p>" || second.Summary != "<p>The second</p>" {
		t.Errorf("content %q summary %q", second.Content, second.Summary)
	}
	if !reflect.DeepEqual(second.Categories, []string{"news", "go"}) {
		t.Errorf("categories %q", second.Categories)
	}
	if a := second.Actor; a == nil || a.DisplayName != "Jo Doe" || a.ID != "jo@example.com" {
		t.Errorf("actor %+v", a)
	}
	if a := first.Actor; a == nil || a.DisplayName != "Al" {
		t.Errorf("dc:creator actor %+v", a)
	}
	if second.Published != unixOf("2024-01-02T10:00:00Z") || second.Language != "en-us" {
		t.Errorf("published %d language %q", second.Published, second.Language)
	}
}

func TestParseAtom(t *testing.T) {
	t.Parallel()
	doc := mustParse(t, atom10, "application/atom+xml")
	m := doc.Meta
	if m.ID != "tag:example.org,2024:feed" || m.Title != "Atom Example" || m.Subtitle != "Sub" || m.Language != "fr" ||
		m.PermalinkURL != "https://example.org/" || m.Updated != unixOf("2024-02-02T00:00:00Z") {
		t.Errorf("meta %+v", m)
	}
	wantLinks := &Links{
		Alternate: []Link{{Href: "https://example.org/", Type: "text/html"}},
		Self:      []Link{{Href: "https://example.org/atom.xml", Type: "application/atom+xml"}},
		Hub:       []Link{{Href: "https://pubsubhubbub.appspot.com/"}, {Href: "https://websub.example.org/"}},
	}
	if !reflect.DeepEqual(m.StandardLinks, wantLinks) {
		t.Errorf("links %+v", m.StandardLinks)
	}
	if got := titles(doc); !reflect.DeepEqual(got, []string{"Entry one", "Entry two"}) {
		t.Fatalf("order %q", got)
	}
	one, two := doc.Items[0], doc.Items[1]
	if one.Published != unixOf("2024-01-01T00:00:00Z") || one.Updated != unixOf("2024-01-04T23:00:00Z") {
		t.Errorf("one dates %d %d", one.Published, one.Updated)
	}
	if two.Published != 0 {
		t.Errorf("two has no published date, got %d", two.Published)
	}
	if len(one.StandardLinks.Alternate) != 2 || one.PermalinkURL != "https://example.org/1" {
		t.Errorf("one links %+v permalink %q", one.StandardLinks, one.PermalinkURL)
	}
	if a := one.Actor; a == nil || *a != (Actor{DisplayName: "Entry Author", ID: "ea@example.org"}) {
		t.Errorf("one actor %+v", a)
	}
	if a := two.Actor; a == nil || *a != (Actor{DisplayName: "Feed Author", PermalinkURL: "https://example.org/about"}) {
		t.Errorf("two inherits the feed author, got %+v", a)
	}
	if !reflect.DeepEqual(two.Categories, []string{"Ex"}) || two.Content != "<p>Two</p>" {
		t.Errorf("two %+v", two)
	}
}

func TestParseJSONFeed(t *testing.T) {
	t.Parallel()
	doc := mustParse(t, jsonFeed, "application/feed+json")
	m := doc.Meta
	if doc.Format != "json" || m.Title != "JSON Example" || m.ID != "https://example.net/feed.json" || m.Language != "de" {
		t.Errorf("meta %+v", m)
	}
	if l := m.StandardLinks; l == nil || len(l.Hub) != 1 || l.Hub[0].Href != "https://hub.example.net/" ||
		len(l.Self) != 1 || l.Self[0].Href != "https://example.net/feed.json" {
		t.Errorf("links %+v", l)
	}
	if got := titles(doc); !reflect.DeepEqual(got, []string{"", "Zwei"}) {
		t.Fatalf("order %q", got)
	}
	one, two := doc.Items[0], doc.Items[1]
	if one.ID != "1" || one.Content != "Eins" || one.Summary != "1" || one.Language != "en" ||
		one.Updated != unixOf("2024-03-01T12:00:00Z") || one.Actor == nil || one.Actor.DisplayName != "Other" {
		t.Errorf("one %+v %+v", one, one.Actor)
	}
	if two.ID != "2" || !reflect.DeepEqual(two.Categories, []string{"a", "b"}) || two.Language != "de" ||
		two.Actor == nil || *two.Actor != (Actor{DisplayName: "Net Author", PermalinkURL: "https://example.net/me"}) {
		t.Errorf("two %+v %+v", two, two.Actor)
	}
}

func TestParseOrder(t *testing.T) {
	t.Parallel()
	item := func(title, date string) string {
		if date != "" {
			date = "<pubDate>" + date + "</pubDate>"
		}
		return "<item><title>" + title + "</title><guid>" + title + "</guid>" + date + "</item>"
	}
	rss := func(items ...string) string {
		return `<rss version="2.0"><channel><title>t</title>` + strings.Join(items, "") + `</channel></rss>`
	}
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"newest first in the document", rss(item("c", "Wed, 03 Jan 2024 00:00:00 GMT"), item("b", "Tue, 02 Jan 2024 00:00:00 GMT"), item("a", "Mon, 01 Jan 2024 00:00:00 GMT")), []string{"a", "b", "c"}},
		{"oldest first in the document", rss(item("a", "Mon, 01 Jan 2024 00:00:00 GMT"), item("b", "Tue, 02 Jan 2024 00:00:00 GMT"), item("c", "Wed, 03 Jan 2024 00:00:00 GMT")), []string{"a", "b", "c"}},
		{"mixed by date", rss(item("b", "Tue, 02 Jan 2024 00:00:00 GMT"), item("c", "Wed, 03 Jan 2024 00:00:00 GMT"), item("a", "Mon, 01 Jan 2024 00:00:00 GMT")), []string{"a", "b", "c"}},
		{"no dates: reverse document order", rss(item("c", ""), item("b", ""), item("a", "")), []string{"a", "b", "c"}},
		{"some dates missing: reverse document order", rss(item("c", "Mon, 01 Jan 2024 00:00:00 GMT"), item("b", ""), item("a", "Wed, 03 Jan 2024 00:00:00 GMT")), []string{"a", "b", "c"}},
		{"equal dates: reverse document order", rss(item("c", "Mon, 01 Jan 2024 00:00:00 GMT"), item("b", "Mon, 01 Jan 2024 00:00:00 GMT"), item("a", "Mon, 01 Jan 2024 00:00:00 GMT")), []string{"a", "b", "c"}},
		{"repeated id keeps the newest", rss(item("c", "Wed, 03 Jan 2024 00:00:00 GMT"), strings.Replace(item("x", "Tue, 02 Jan 2024 00:00:00 GMT"), "<guid>x", "<guid>c", 1), item("a", "Mon, 01 Jan 2024 00:00:00 GMT")), []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := mustParse(t, tt.body, "")
			if got := titles(doc); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseKeepsNewestMaxItems(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(`<rss version="2.0"><channel><title>big</title>`)
	const n = MaxItems + 250
	for i := n; i >= 1; i-- { // newest first, as feeds list them
		fmt.Fprintf(&b, "<item><title>%d</title><guid>g%d</guid></item>", i, i)
	}
	b.WriteString(`</channel></rss>`)
	doc := mustParse(t, b.String(), "")
	if len(doc.Items) != MaxItems {
		t.Fatalf("%d items", len(doc.Items))
	}
	if doc.Items[0].Title != "251" || doc.Items[MaxItems-1].Title != fmt.Sprint(n) {
		t.Errorf("kept %q..%q", doc.Items[0].Title, doc.Items[MaxItems-1].Title)
	}
}

func TestParseDerivedIDs(t *testing.T) {
	t.Parallel()
	body := func(title, link, date string) string {
		return `<rss version="2.0"><channel><title>t</title><item><title>` + title + `</title><link>` + link +
			`</link><pubDate>` + date + `</pubDate><description>d</description></item></channel></rss>`
	}
	base := body("T", "https://e.com/1", "Mon, 01 Jan 2024 00:00:00 GMT")
	id := mustParse(t, base, "").Items[0].ID
	if !strings.HasPrefix(id, DerivedIDPrefix) || checkFullURI(id) != nil {
		t.Fatalf("derived id %q", id)
	}
	if again := mustParse(t, base, "").Items[0].ID; again != id {
		t.Errorf("derived id changed between parses: %q, %q", id, again)
	}
	if other := mustParse(t, strings.Replace(base, "<description>d", "<description>changed", 1), "").Items[0].ID; other != id {
		t.Errorf("derived id depends on the description: %q, %q", id, other)
	}
	for name, b := range map[string]string{
		"title": body("U", "https://e.com/1", "Mon, 01 Jan 2024 00:00:00 GMT"),
		"link":  body("T", "https://e.com/2", "Mon, 01 Jan 2024 00:00:00 GMT"),
		"date":  body("T", "https://e.com/1", "Tue, 02 Jan 2024 00:00:00 GMT"),
	} {
		if other := mustParse(t, b, "").Items[0].ID; other == id {
			t.Errorf("derived id does not depend on the %s", name)
		}
	}
	long := strings.Repeat("x", maxIDLength+1)
	it := mustParse(t, `<rss version="2.0"><channel><item><guid>`+long+`</guid></item></channel></rss>`, "").Items[0]
	if !strings.HasPrefix(it.ID, DerivedIDPrefix) {
		t.Errorf("a %d-byte id was kept", len(long))
	}
}

func TestContentHash(t *testing.T) {
	t.Parallel()
	base := Item{
		ID: "x", Title: "t", Content: "c", Summary: "s", PermalinkURL: "https://e.com/", Published: 1, Updated: 2,
		Categories: []string{"a", "b"}, Actor: &Actor{DisplayName: "n", ID: "i", PermalinkURL: "u"},
		Cursor: 5, Language: "en", StandardLinks: &Links{Hub: []Link{{Href: "h"}}},
	}
	h := base.ContentHash()
	same := base
	same.Cursor, same.Language, same.StandardLinks = 9, "fr", nil
	if same.ContentHash() != h {
		t.Error("cursor, language or links changed the hash")
	}
	changes := map[string]func(*Item){
		"title":          func(it *Item) { it.Title = "T" },
		"content":        func(it *Item) { it.Content = "C" },
		"summary":        func(it *Item) { it.Summary = "S" },
		"link":           func(it *Item) { it.PermalinkURL = "https://e.com/x" },
		"published":      func(it *Item) { it.Published = 3 },
		"updated":        func(it *Item) { it.Updated = 3 },
		"category":       func(it *Item) { it.Categories = []string{"a", "c"} },
		"category order": func(it *Item) { it.Categories = []string{"b", "a"} },
		"categories":     func(it *Item) { it.Categories = []string{"ab"} },
		"author name":    func(it *Item) { it.Actor = &Actor{DisplayName: "m", ID: "i", PermalinkURL: "u"} },
		"author id":      func(it *Item) { it.Actor = &Actor{DisplayName: "n", ID: "j", PermalinkURL: "u"} },
		"author uri":     func(it *Item) { it.Actor = &Actor{DisplayName: "n", ID: "i", PermalinkURL: "v"} },
		"no author":      func(it *Item) { it.Actor = nil },
		"text moved":     func(it *Item) { it.Title, it.Content = "tc", "" },
	}
	seen := map[string]string{h: "base"}
	for name, change := range changes {
		it := base
		it.Categories = append([]string(nil), base.Categories...)
		change(&it)
		got := it.ContentHash()
		if prev, dup := seen[got]; dup {
			t.Errorf("%s hashes like %s", name, prev)
		}
		seen[got] = name
	}

	// Through the parser: the same document hashes the same, an edited one not.
	doc1 := mustParse(t, atom10, "")
	doc2 := mustParse(t, atom10, "")
	for i := range doc1.Items {
		if doc1.Items[i].Hash != doc2.Items[i].Hash || doc1.Items[i].ID != doc2.Items[i].ID {
			t.Errorf("item %d changed between two parses", i)
		}
	}
	edited := mustParse(t, strings.Replace(atom10, "&lt;p&gt;Two", "&lt;p&gt;Deux", 1), "")
	if edited.Items[1].ID != doc1.Items[1].ID || edited.Items[1].Hash == doc1.Items[1].Hash {
		t.Errorf("edited content: id %q→%q hash %q→%q", doc1.Items[1].ID, edited.Items[1].ID, doc1.Items[1].Hash, edited.Items[1].Hash)
	}
	if edited.Items[0].Hash != doc1.Items[0].Hash {
		t.Error("an untouched entry changed hash")
	}
}

func TestParseRepairsText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, contentType string
		title, id               string
	}{
		{"invalid UTF-8", "<rss version=\"2.0\"><channel><item><title>caf\xe9 \xff!</title><guid>id\xc3</guid></item></channel></rss>", "", "caf\uFFFD \uFFFD!", "id\uFFFD"},
		{"C0 controls and NUL", "<rss version=\"2.0\"><channel><item><title>a\x00b\x01c\x1fd</title><guid>i\x00d</guid></item></channel></rss>", "", "abcd", "id"},
		{"CR and LF kept inside", "<rss version=\"2.0\"><channel><item><title>a\r\nb\nc&#13;d</title><guid>x\ny</guid></item></channel></rss>", "", "a\r\nb\nc\rd", "x\ny"},
		{"forbidden character references", "<rss version=\"2.0\"><channel><item><title>a&#0;b&#x1F;c&#xFFFE;d&#1114112;e&#65;</title><guid>g</guid></item></channel></rss>", "", "abcdeA", "g"},
		{"U+FFFE and U+FFFF", "<rss version=\"2.0\"><channel><item><title>a\uFFFEb\uFFFF</title><guid>g</guid></item></channel></rss>", "", "ab", "g"},
		{"JSON escapes", `{"version":"https://jsonfeed.org/version/1","items":[{"id":"a\u0000b\ud800","title":"t\u0001\r\n\u2028x "}]}`, "", "t\r\n\u2028x", "ab\uFFFD"},
		{"charset from Content-Type", "<rss version=\"2.0\"><channel><item><title>caf\xe9</title><guid>g</guid></item></channel></rss>", "application/rss+xml; charset=ISO-8859-1", "café", "g"},
		{"declared charset wins", "<?xml version=\"1.0\" encoding=\"windows-1252\"?><rss version=\"2.0\"><channel><item><title>\x93q\x94</title><guid>g</guid></item></channel></rss>", "text/xml; charset=utf-8", "\u201cq\u201d", "g"},
		{"byte order mark", "\xef\xbb\xbf<rss version=\"2.0\"><channel><item><title>bom</title><guid>g</guid></item></channel></rss>", "", "bom", "g"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc := mustParse(t, tt.body, tt.contentType)
			if len(doc.Items) != 1 {
				t.Fatalf("%d items", len(doc.Items))
			}
			if it := doc.Items[0]; it.Title != tt.title || it.ID != tt.id {
				t.Errorf("title %q id %q, want %q %q", it.Title, it.ID, tt.title, tt.id)
			}
		})
	}
}

func TestParseBounds(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("é", maxContentLength) // 2 bytes each
	cats := ""
	for i := 0; i < maxCategories+10; i++ {
		cats += fmt.Sprintf("<category>c%d</category>", i)
	}
	body := `<rss version="2.0"><channel><item><guid>g</guid><title>` + strings.Repeat("t", maxTitleLength+5) +
		`</title><description>` + huge + `</description>` + cats +
		`<link>https://e.com/` + strings.Repeat("p", maxURLLength) + `</link></item></channel></rss>`
	it := mustParse(t, body, "").Items[0]
	if len(it.Title) != maxTitleLength || len(it.Summary) != maxContentLength || !utf8.ValidString(it.Summary) {
		t.Errorf("title %d bytes, summary %d bytes", len(it.Title), len(it.Summary))
	}
	if len(it.Categories) != maxCategories {
		t.Errorf("%d categories", len(it.Categories))
	}
	if it.PermalinkURL != "" {
		t.Errorf("an over-long link was kept")
	}
}

func TestParseDropsScriptLinks(t *testing.T) {
	t.Parallel()
	body := `<rss version="2.0"><channel><link>javascript:alert(1)</link><item><guid>g</guid><link> JavaScript:alert(1)</link></item>
	<item><guid>h</guid><link>data:text/html,x</link></item></channel></rss>`
	doc := mustParse(t, body, "")
	if doc.Meta.PermalinkURL != "" || doc.Meta.StandardLinks != nil {
		t.Errorf("meta kept %q %+v", doc.Meta.PermalinkURL, doc.Meta.StandardLinks)
	}
	for _, it := range doc.Items {
		if it.PermalinkURL != "" || it.StandardLinks != nil {
			t.Errorf("item %s kept %q", it.ID, it.PermalinkURL)
		}
	}
}

func TestParseWithBase(t *testing.T) {
	t.Parallel()
	body := `<rss version="2.0"><channel><item><guid>g</guid><link>posts/1</link></item></channel></rss>`
	doc, err := ParseWithBase([]byte(body), "", "https://example.com/blog/feed.xml")
	if err != nil {
		t.Fatal(err)
	}
	if got := doc.Items[0].PermalinkURL; got != "https://example.com/blog/posts/1" {
		t.Errorf("resolved to %q", got)
	}
	doc = mustParse(t, body, "")
	if got := doc.Items[0].PermalinkURL; got != "posts/1" {
		t.Errorf("without a base: %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	deep := `<rss version="2.0" xmlns:x="http://x/"><channel><item>` + strings.Repeat("<x:a>", maxDepth+1) + `</item></channel></rss>`
	wide := `<rss version="2.0" xmlns:x="http://x/"><channel><item>` + strings.Repeat("<x:a/>", maxNodes+1) + `</item></channel></rss>`
	many := `<rss version="2.0"><channel>` + strings.Repeat("<item/>", maxEntries+1) + `</channel></rss>`
	deepJSON := `{"version":"https://jsonfeed.org/version/1","items":[` + strings.Repeat("[", maxDepth+1) + `]}`
	tests := []struct {
		name, body, contentType, reason string
	}{
		{"empty", "", "", "it is empty"},
		{"blank", " \r\n\t", "", "it is empty"},
		{"HTML page", "<!DOCTYPE html>\n<html><head><title>x</title></head><body>hi</body></html>", "text/html; charset=utf-8", "looks like an HTML page"},
		{"plain text", "hello", "text/plain", `does not start with an <rss>, <rdf:RDF> or <feed> element or a JSON Feed object (Content-Type "text/plain")`},
		{"other XML", `<?xml version="1.0"?><opml version="2.0"><body/></opml>`, "text/xml", "does not start with an <rss>"},
		{"truncated RSS", `<rss version="2.0"><channel><item><title>a`, "", "looks truncated"},
		{"broken JSON", `{"version": "https://jsonfeed.org/version/1", "items": [`, "", "not well-formed JSON"},
		{"JSON but not a feed", `{"a": 1}`, "application/json", "is JSON but not a JSON Feed"},
		{"too deep", deep, "", "nests elements more than 256 deep"},
		{"too many elements", wide, "", "more than 200000 elements and attributes"},
		{"too many entries", many, "", "more than 10000 entries"},
		{"too deep JSON", deepJSON, "", "nests objects and arrays more than 256 deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			doc, err := Parse([]byte(tt.body), tt.contentType)
			if err == nil {
				t.Fatalf("parsed: %+v", doc)
			}
			if !errors.Is(err, ErrNotFeed) {
				t.Errorf("%v does not match ErrNotFeed", err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("%T is not a *ParseError", err)
			}
			if !strings.HasPrefix(err.Error(), "the body is not an RSS, Atom or JSON feed: ") || !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not say %q", err, tt.reason)
			}
		})
	}
}

func TestParseToleratesUnclosedHTML(t *testing.T) {
	t.Parallel()
	// Lenient parsing closes unclosed tags; they must not count as nesting.
	var b strings.Builder
	b.WriteString(`<rss version="2.0" xmlns:x="http://x/"><channel><title>t</title>`)
	for i := 0; i < maxDepth*2; i++ {
		fmt.Fprintf(&b, "<item><guid>%d</guid><x:note>line<br>more</x:note></item>", i)
	}
	b.WriteString(`</channel></rss>`)
	doc := mustParse(t, b.String(), "")
	if len(doc.Items) != maxDepth*2 {
		t.Errorf("%d items", len(doc.Items))
	}
}

// gofeedTestdata finds the testdata directory of the gofeed module this
// package is built with, the way the go command does.
func gofeedTestdata(t testing.TB) string {
	t.Helper()
	const mod = "github.com/mmcdole/gofeed"
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	var tried []string
	if out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", mod).Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			return filepath.Join(dir, "testdata")
		}
		tried = append(tried, "go list -m: no directory")
	} else {
		tried = append(tried, fmt.Sprintf("go list -m: %v", err))
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		if out, err := exec.Command(goBin, "env", "GOMODCACHE").Output(); err == nil {
			for _, dep := range info.Deps {
				if dep.Path == mod {
					dir := filepath.Join(strings.TrimSpace(string(out)), mod+"@"+dep.Version, "testdata")
					if _, err := os.Stat(dir); err == nil {
						return dir
					}
					tried = append(tried, dir)
				}
			}
		}
	}
	if out, err := exec.Command(goBin, "mod", "download", "-json", mod).Output(); err == nil {
		if i := strings.Index(string(out), `"Dir": "`); i >= 0 {
			rest := string(out)[i+len(`"Dir": "`):]
			return filepath.Join(rest[:strings.IndexByte(rest, '"')], "testdata")
		}
	}
	t.Fatalf("cannot find the testdata of %s (tried %q); run go mod download", mod, tried)
	return ""
}

func gofeedFiles(t testing.TB) []string {
	t.Helper()
	dir := gofeedTestdata(t)
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 500 {
		t.Fatalf("only %d files under %s", len(files), dir)
	}
	return files
}

// TestParseGofeedTestdata parses every file of gofeed's own test corpus: each
// parses (and then encodes to valid JSON and Atom, identically twice) or
// fails with a ParseError; nothing panics.
func TestParseGofeedTestdata(t *testing.T) {
	t.Parallel()
	files := gofeedFiles(t)
	parsed, failed := map[string]int{}, map[string]int{}
	mustFail := map[string]bool{}
	for _, path := range files {
		body, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		kind := filepath.Base(filepath.Dir(path)) + filepath.Ext(path)
		should, shouldNot := gofeedShouldParse(path)
		doc, err := Parse(body, "")
		if shouldNot && err != nil {
			mustFail[path] = true
		}
		if should && err != nil {
			t.Errorf("%s: %v", path, err)
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrNotFeed) {
				t.Errorf("%s: error %T %v", path, err, err)
			}
			if pe != nil && pe.Err != nil && strings.Contains(pe.Err.Error(), "panic") {
				t.Errorf("%s: the parser panicked: %v", path, pe.Err)
			}
			failed[kind]++
			continue
		}
		parsed[kind]++
		if err := checkDocument(doc); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		again, err := Parse(body, "")
		if err != nil || !reflect.DeepEqual(doc, again) {
			t.Errorf("%s: a second parse differs (%v)", path, err)
		}
		if err := checkRoundTrip("https://example.com/"+filepath.Base(path), doc); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	t.Logf("parsed %v; refused %v", parsed, failed)
	if len(mustFail) != 2 {
		t.Errorf("refused %d of the 2 files that are not feeds", len(mustFail))
	}
}

// gofeedShouldParse says whether a file of gofeed's corpus is a feed: every
// XML file but two, and the JSON Feeds (not the expected-output files).
func gofeedShouldParse(path string) (should, shouldNot bool) {
	base := filepath.Base(path)
	switch {
	case base == "empty_feed.xml" || base == "unknown_feed.xml":
		return false, true
	case filepath.Ext(path) == ".xml":
		return true, false
	case strings.Contains(path, "/parser/json/") && !strings.Contains(path, "/invalid/") && !strings.HasSuffix(base, "_expected.json"):
		return true, false
	}
	return false, false
}

func BenchmarkParse(b *testing.B) {
	var body strings.Builder
	body.WriteString(`<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>t</title><link>https://example.com/</link><atom:link rel="hub" href="https://hub.example.com/"/>`)
	for i := 50; i > 0; i-- {
		fmt.Fprintf(&body, `<item><title>Post %d</title><link>https://example.com/posts/%d</link><guid>https://example.com/posts/%d</guid><pubDate>Mon, 01 Jan 2024 10:%02d:00 GMT</pubDate><description>%s</description><category>go</category></item>`,
			i, i, i, i, strings.Repeat("&lt;p&gt;Lorem ipsum dolor sit amet &amp;amp; more.&lt;/p&gt;", 20))
	}
	body.WriteString(`</channel></rss>`)
	data := []byte(body.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data, "application/rss+xml"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseHubDiscovery(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body string }{
		{"RSS atom:link", `<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><atom:link rel="hub" href="https://hub.example/"/><atom:link rel="self" href="https://e.com/feed"/></channel></rss>`},
		{"RSS default namespace", `<rss version="2.0"><channel><link rel="hub" href="https://hub.example/" xmlns="http://www.w3.org/2005/Atom"/><link rel="self" href="https://e.com/feed" xmlns="http://www.w3.org/2005/Atom"/></channel></rss>`},
		{"RSS FeedBurner atom10", `<rss version="2.0" xmlns:atom10="http://www.w3.org/2005/Atom"><channel><atom10:link rel="hub" href="https://hub.example/"/><atom10:link rel="self" href="https://e.com/feed"/></channel></rss>`},
		{"RSS 1.0", `<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>t</title><atom:link rel="hub" href="https://hub.example/"/><atom:link rel="self" href="https://e.com/feed"/></channel></rdf:RDF>`},
		{"Atom", `<feed xmlns="http://www.w3.org/2005/Atom"><link rel="hub" href="https://hub.example/"/><link rel="self" href="https://e.com/feed"/></feed>`},
		{"Atom relative to self", `<feed xmlns="http://www.w3.org/2005/Atom"><link rel="self" href="https://e.com/feed"/><link rel="hub" href="//hub.example/"/></feed>`},
		{"JSON Feed", `{"version":"https://jsonfeed.org/version/1.1","feed_url":"https://e.com/feed","hubs":[{"type":"WebSub","url":"https://hub.example/"}],"items":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := mustParse(t, tt.body, "").Meta.StandardLinks
			if l == nil || len(l.Hub) != 1 || l.Hub[0].Href != "https://hub.example/" || len(l.Self) != 1 || l.Self[0].Href != "https://e.com/feed" {
				t.Errorf("links %+v", l)
			}
		})
	}
}

// TestParseLongProlog: how long the prolog (comments, processing
// instructions) before the root element is does not decide acceptance.
func TestParseLongProlog(t *testing.T) {
	t.Parallel()
	rss := `<rss version="2.0"><channel><title>T</title><link>https://p.example/</link><item><guid>p-1</guid><title>One</title></item></channel></rss>`
	atom := `<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><id>urn:p</id><updated>2026-01-01T00:00:00Z</updated><entry><id>p-1</id><title>One</title><updated>2026-01-01T00:00:00Z</updated></entry></feed>`
	for _, n := range []int{100, 4000, 8000, 64000} {
		comment := "<!-- " + strings.Repeat("x", n) + " -->\n"
		for name, body := range map[string]string{
			"rss":           `<?xml version="1.0" encoding="utf-8"?>` + "\n" + comment + rss,
			"atom, several": comment + `<?xml-stylesheet type="text/xsl" href="s.xsl"?>` + comment + atom,
		} {
			doc, err := Parse([]byte(body), "application/xml")
			if err != nil {
				t.Errorf("%s after a %d-byte prolog: %v", name, n, err)
				continue
			}
			if len(doc.Items) != 1 || doc.Items[0].ID != "p-1" {
				t.Errorf("%s after a %d-byte prolog: items %+v", name, n, doc.Items)
			}
		}
	}
}
