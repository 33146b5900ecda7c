package feed

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse parses anything, and encodes whatever parses as JSON and Atom:
// Parse must refuse with a ParseError or return clean, bounded items, the
// same on a second parse, whose encodings are valid.
//
//	go test -run '^$' -fuzz FuzzParse ./feed
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		rss2, atom10, jsonFeed, "", "<", "{", "<rss", "<feed>", `{"items":[{}]}`,
		"<rss version=\"2.0\"><channel><item><title>a\x00\xff&#0;</title></item></channel></rss>",
		`<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel><title>caf` + "\xe9" + `</title></channel></rss>`,
		`<!DOCTYPE rss [<!ENTITY x "y">]><rss version="2.0"><channel><item><title>&x;</title></item></channel></rss>`,
		`<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"><item><title>t</title><link>l</link></item></rdf:RDF>`,
		`<feed xmlns="http://purl.org/atom/ns#" version="0.3"><entry><id>x</id><content type="application/xhtml+xml" mode="xml"><div>a<b>b</b></div></content></entry></feed>`,
	} {
		f.Add([]byte(s), "")
	}
	f.Add([]byte("<rss version=\"2.0\"><channel><item><title>caf\xe9</title></item></channel></rss>"), "text/xml; charset=latin1")
	// A sample of real-world feeds.
	files := gofeedFiles(f)
	for i := 0; i < len(files); i += 20 {
		if body, err := os.ReadFile(files[i]); err == nil && len(body) < 64<<10 {
			f.Add(body, mimeOf(files[i]))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		doc, err := Parse(body, contentType)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrNotFeed) {
				t.Fatalf("error %T %v", err, err)
			}
			if pe.Err != nil && strings.Contains(pe.Err.Error(), "feed parser panic") {
				t.Fatalf("the parser panicked: %v", pe.Err)
			}
			if !utf8.ValidString(err.Error()) || pe.Reason == "" {
				t.Fatalf("error message %q", err)
			}
			return
		}
		if err := checkDocument(doc); err != nil {
			t.Fatal(err)
		}
		again, err := Parse(body, contentType)
		if err != nil || !reflect.DeepEqual(doc, again) {
			t.Fatalf("a second parse differs (%v)", err)
		}
		if err := checkRoundTrip(topic, doc); err != nil {
			t.Fatal(err)
		}
	})
}

func mimeOf(path string) string {
	if filepath.Ext(path) == ".json" {
		return "application/feed+json"
	}
	return "application/xml"
}

// FuzzEncode renders arbitrary items and statuses: the JSON must be what
// encoding/json makes of them, the Atom well-formed and valid.
//
//	go test -run '^$' -fuzz FuzzEncode ./feed
func FuzzEncode(f *testing.F) {
	for i, s := range nasty {
		f.Add(s, s, s, s, s, topic, int64(i))
	}
	f.Add("title", "tag:e.com,2024:x", "<p>c</p>", "https://e.com/x", "cat", "", int64(-62135596801))
	f.Add("", "urn:uuid:550e8400-e29b-41d4-a716-446655440000", "", "", "", "https://e.com/f", int64(253402300800))
	f.Fuzz(func(t *testing.T, title, id, content, link, category, feedURL string, date int64) {
		cursor := Cursor(uint64(date) % 1e16) // cursors have 16 digits
		it := Item{
			ID: id, Cursor: cursor, Title: title, Published: date, Updated: -date, Content: content, Summary: title,
			PermalinkURL: link, Categories: []string{category, title},
			StandardLinks: &Links{Alternate: []Link{{Href: link, Type: category, Title: title}, {Href: id, Type: content}}, Self: []Link{{Href: category}}},
			Actor:         &Actor{DisplayName: title, ID: category, PermalinkURL: link},
			Language:      category,
		}
		n := &Notification{
			Status: Status{Code: int(date), HTTP: content, Feed: feedURL, Title: title, Period: int(date), NextFetch: date, Cursor: cursor, Gap: date%2 == 0},
			Meta:   Meta{Title: title, Subtitle: content, ID: id, Updated: date, PermalinkURL: link, Language: category, StandardLinks: it.StandardLinks},
			Items:  []Item{it, {ID: title}, {}},
		}
		if err := checkJSON(AppendJSON(nil, n), n); err != nil {
			t.Fatalf("json: %v", err)
		}
		if b := AppendAtom(nil, n, link, category); checkAtom(b, n) != nil {
			t.Fatalf("atom: %v\n%s", checkAtom(b, n), b)
		}
	})
}
