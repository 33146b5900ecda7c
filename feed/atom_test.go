package feed

import (
	"bytes"
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func decodeAtom(t *testing.T, b []byte) atomFeed {
	t.Helper()
	var f atomFeed
	if err := xml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return f
}

func TestAppendAtom(t *testing.T) {
	t.Parallel()
	n := &Notification{
		Status: Status{Code: 200, HTTP: "9718 bytes fetched", Feed: "https://e.com/feed", Title: "Status title", Period: 900,
			LastFetch: 1700000000, LastParse: 1700000001, NextFetch: 1700000900, EntriesCountSinceLastMaintenance: 5, Cursor: 12, Gap: true},
		Meta: Meta{Title: "E & Co", Subtitle: "Sub", ID: "tag:e.com,2024:feed", Updated: 1700000000, PermalinkURL: "https://e.com/", Language: "en-GB",
			StandardLinks: &Links{
				Alternate: []Link{{Href: "https://e.com/", Type: "text/html"}, {Href: "https://e.com/de", Type: "text/html"}, {Href: "https://e.com/f.json", Type: "application/feed+json"}},
				Hub:       []Link{{Href: "https://upstream-hub.example/"}},
			}},
		Items: []Item{
			{ID: "https://e.com/2", Cursor: 12, Title: "Two <b>", Published: 1700000000, Updated: 1700000500, Content: "<p>2</p>", Summary: "two",
				PermalinkURL: "https://e.com/2", StandardLinks: &Links{Alternate: []Link{{Href: "https://e.com/2.pdf", Type: "application/pdf"}, {Href: "https://e.com/2", Type: "text/html", Title: "Two"}}},
				Actor: &Actor{DisplayName: "Jo", ID: "jo@e.com", PermalinkURL: "https://e.com/jo"}, Categories: []string{"a", "b c"}, Language: "fr"},
			{ID: "42", Cursor: 11, Title: "One", Summary: "only a summary"},
		},
	}
	b := AppendAtom(nil, n, "https://gw.example/?hub.topic=https%3A%2F%2Fe.com%2Ffeed&format=atom", "https://gw.example/hub")
	if err := checkAtom(b, n); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !bytes.Contains(b, []byte(`<feed xmlns="http://www.w3.org/2005/Atom" xmlns:sf="http://superfeedr.com/xmpp-pubsub-ext" xml:lang="en-GB">`)) {
		t.Errorf("feed element:\n%s", b)
	}
	f := decodeAtom(t, b)
	var rels []string
	for _, l := range f.Links {
		rels = append(rels, l.Rel+" "+l.Href+" "+l.Type)
	}
	want := []string{
		"alternate https://e.com/ text/html",
		"alternate https://e.com/f.json application/feed+json",
		"self https://gw.example/?hub.topic=https%3A%2F%2Fe.com%2Ffeed&format=atom application/atom+xml",
		"hub https://gw.example/hub ",
	}
	if strings.Join(rels, "\n") != strings.Join(want, "\n") {
		t.Errorf("links\n%s\nwant\n%s", strings.Join(rels, "\n"), strings.Join(want, "\n"))
	}
	if f.ID[0] != "tag:e.com,2024:feed" || f.Title[0] != "E & Co" || f.Subtitle != "Sub" || f.Updated[0] != "2023-11-14T22:21:40Z" {
		t.Errorf("feed head %q %q %q %q", f.ID, f.Title, f.Subtitle, f.Updated)
	}
	st := f.Status[0]
	if st.HTTP == nil || st.HTTP.Code != "200" || st.HTTP.Body != "9718 bytes fetched" || st.Period != "900" ||
		st.LastFetch != "2023-11-14T22:13:20Z" || st.LastParse != "2023-11-14T22:13:21Z" || st.NextFetch != "2023-11-14T22:28:20Z" ||
		st.Count != "5" || st.Title != "Status title" || st.Cursor != "0000000000000012" || st.Gap != "true" {
		t.Errorf("status %+v %+v", st, st.HTTP)
	}
	two, one := f.Entries[0], f.Entries[1]
	if two.ID[0] != "https://e.com/2" || two.Lang != "fr" || two.Published[0] != "2023-11-14T22:13:20Z" || two.Updated[0] != "2023-11-14T22:21:40Z" {
		t.Errorf("entry two %+v", two)
	}
	if len(two.Links) != 2 || two.Links[0].Href != "https://e.com/2" || two.Links[0].Title != "Two" || two.Links[1].Type != "application/pdf" {
		t.Errorf("entry two links %+v", two.Links)
	}
	if len(two.Authors) != 1 || *two.Authors[0].Name != "Jo" || two.Authors[0].Email != "jo@e.com" || two.Authors[0].URI != "https://e.com/jo" {
		t.Errorf("entry two author %+v", two.Authors)
	}
	if two.Summary == nil || two.Summary.Body != "two" || two.Content.Body != "<p>2</p>" {
		t.Errorf("entry two text %+v %+v", two.Content, two.Summary)
	}
	// "42" is not an IRI: the entry gets a URN derived from topic and id.
	if !strings.HasPrefix(one.ID[0], "urn:feedgate:entry:") || len(one.Published) != 0 {
		t.Errorf("entry one %+v", one)
	}
	if one.Content == nil || one.Content.Body != "only a summary" || one.Summary != nil {
		t.Errorf("an entry without link or content carries its summary as content: %+v %+v", one.Content, one.Summary)
	}
	// The id alone: an entry without dates is updated "now", which moves.
	entryID := func(topic string) string {
		entry := string(AppendAtomEntry(nil, topic, &n.Items[1]))
		_, rest, ok := strings.Cut(entry, "<id>")
		id, _, ok2 := strings.Cut(rest, "</id>")
		if !ok || !ok2 {
			t.Fatalf("entry of %s has no id: %s", topic, entry)
		}
		return id
	}
	if again := entryID("https://e.com/feed"); again != one.ID[0] {
		t.Errorf("derived entry ids are not stable: %q, then %q", one.ID[0], again)
	}
	if other := entryID("https://other.example/feed"); other == one.ID[0] {
		t.Error("the same guid in two topics gives the same atom:id")
	}
}

func TestAppendAtomFallbacks(t *testing.T) {
	t.Parallel()
	before := time.Now().Add(-time.Second)
	n := &Notification{
		Status: Status{Feed: "https://news.example.org/rss?x=1&y=2"},
		Items:  []Item{{ID: "", Cursor: 1}, {ID: "also not an iri", Cursor: 2, Categories: []string{" ", "x"}, Actor: &Actor{ID: "not an email"}}},
	}
	b := AppendAtom(nil, n, "", "")
	if err := checkAtom(b, n); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	f := decodeAtom(t, b)
	if f.ID[0] != n.Status.Feed || f.Title[0] != "news.example.org" || *f.Authors[0].Name != "news.example.org" {
		t.Errorf("id %q title %q author %q", f.ID, f.Title, *f.Authors[0].Name)
	}
	if len(f.Links) != 2 || f.Links[0].Rel != "alternate" || f.Links[0].Href != n.Status.Feed || f.Links[1].Rel != "self" || f.Links[1].Href != n.Status.Feed {
		t.Errorf("links %+v", f.Links)
	}
	for _, d := range []string{f.Updated[0], f.Entries[0].Updated[0]} {
		if ts, _ := time.Parse(time.RFC3339, d); ts.Before(before) {
			t.Errorf("updated %s is not now", d)
		}
	}
	if len(f.Entries[1].Authors) != 1 || *f.Entries[1].Authors[0].Name != "not an email" || f.Entries[1].Authors[0].Email != "" {
		t.Errorf("author %+v", f.Entries[1].Authors)
	}

	// No topic at all, nothing but garbage.
	n = &Notification{Status: Status{Feed: "\x00 not a url"}, Meta: Meta{ID: "no iri", Updated: 1 << 60}}
	b = AppendAtom(nil, n, "", "")
	if err := checkWellFormed(b); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	f = decodeAtom(t, b)
	if !strings.HasPrefix(f.ID[0], "urn:feedgate:feed:") || checkFullURI(f.ID[0]) != nil || f.Title[0] == "" {
		t.Errorf("id %q title %q", f.ID, f.Title)
	}
	if err := checkDate("updated", f.Updated[0]); err != nil {
		t.Error(err)
	}
}

func TestAppendAtomNastyStrings(t *testing.T) {
	t.Parallel()
	for i, s := range nasty {
		n := &Notification{
			Status: Status{Feed: s, HTTP: s, Title: s},
			Meta:   Meta{Title: s, Subtitle: s, ID: s, PermalinkURL: s, Language: s, StandardLinks: &Links{Alternate: []Link{{Href: s, Type: s, Title: s}}, Self: []Link{{Href: s}}, Hub: []Link{{Href: s}}}},
			Items:  []Item{nastyItem(i, s), {ID: s, Title: s}},
		}
		for _, self := range []string{"", s} {
			b := AppendAtom(nil, n, self, s)
			if err := checkAtom(b, n); err != nil {
				t.Errorf("%q: %v\n%s", s, err, b)
			}
		}
	}
}

func TestAppendAtomStreamPieces(t *testing.T) {
	t.Parallel()
	n := benchNotification(3)
	whole := AppendAtom(nil, n, "https://gw/self", "https://gw/hub")
	b := AppendAtomOpen(nil, n, "https://gw/self", "https://gw/hub")
	if bytes.Contains(b, []byte("<entry>")) || bytes.Contains(b, []byte(AtomClose)) {
		t.Fatal("the header holds entries or is closed")
	}
	for i := range n.Items {
		b = AppendAtomEntry(b, n.Status.Feed, &n.Items[i])
	}
	b = append(b, AtomClose...)
	if !bytes.Equal(b, whole) {
		t.Errorf("pieces differ from the whole:\n%s\n%s", b, whole)
	}
}

func TestValidAtomID(t *testing.T) {
	t.Parallel()
	tests := map[string]bool{
		"https://e.com/a":                               true,
		"http://e.com/a?b=c&d=e#f":                      true,
		"tag:example.org,2024:entry-1":                  true,
		"tag:jo@example.org,2024-01:x/y":                true,
		"urn:uuid:550e8400-e29b-41d4-a716-446655440000": true,
		"urn:isbn:0451450523":                           true,
		DerivedIDPrefix + "0123abcd":                    true,
		"mailto:jo@example.com":                         true,
		"":                                              false,
		"42":                                            false,
		"post-2":                                        false,
		"http:/e.com":                                   false,
		"http:///e.com":                                 false,
		"https://e.com/a b":                             false,
		"https://e.com/é":                               false,
		"tag:Example.org,2024:x":                        false,
		"tag:example.org:x":                             false,
		"urn:uuid:not-a-uuid":                           false,
		"urn:x:":                                        false,
		"urn:a:b":                                       false,
		"urn:ab:c d":                                    false,
		"x:":                                            false,
		":x":                                            false,
		"https://e.com/<x>":                             false,
		"https://e.com/\x00":                            false,
	}
	for id, want := range tests {
		if got := validAtomID(id); got != want {
			t.Errorf("validAtomID(%q) = %v", id, got)
		}
		if want && checkFullURI(id) != nil && !strings.HasPrefix(id, "tag:") {
			t.Errorf("%q is accepted here but not by the validator's pattern", id)
		}
	}
}

func TestAppendAtomEntryAllocations(t *testing.T) {
	n := benchNotification(10)
	buf := make([]byte, 0, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		buf = buf[:0]
		for i := range n.Items {
			buf = AppendAtomEntry(buf, n.Status.Feed, &n.Items[i])
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations for 10 entries", allocs)
	}
}

func BenchmarkAppendAtom(b *testing.B) {
	n := benchNotification(10)
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendAtom(buf[:0], n, "https://gw.example/?hub.topic=x", "https://gw.example/hub")
	}
	b.SetBytes(int64(len(buf)))
}
