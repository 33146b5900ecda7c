package feed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// nasty holds strings that break naive encoders.
var nasty = []string{
	"",
	"plain",
	"quote \" backslash \\ slash /",
	"<script>alert('x')</script> & &amp;",
	"ctl \x00\x01\x07\b\f\n\r\t\x0b\x1b\x1f\x7f end",
	"line\u2028para\u2029sep",
	"invalid \xff \xfe\xfd utf8 \xc3 cut \xe2\x80 cut \xf0\x9f\x98",
	"\xed\xa0\x80 surrogate",
	"emoji 😀 中文 é",
	"nonchars \uFFFE \uFFFF \uFDD0",
	"]]> cdata end",
	"\r\n\r\n",
	strings.Repeat("x", 300) + "\u2028",
}

func nastyItem(i int, s string) Item {
	return Item{
		ID: s, Cursor: Cursor(i + 1), Title: s, Published: int64(i) * 1000, Updated: -int64(i),
		Content: s, Summary: s, PermalinkURL: s,
		StandardLinks: &Links{Alternate: []Link{{Href: s, Type: s, Title: s}}, Hub: []Link{{Href: s}}},
		Actor:         &Actor{DisplayName: s, ID: s, PermalinkURL: s},
		Categories:    []string{s, "", s}, Language: s,
	}
}

func TestAppendJSONItemMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	items := []Item{
		{},
		{ID: "only id"},
		{ID: "x", Categories: []string{}, StandardLinks: &Links{}, Actor: &Actor{}},
		{ID: "x", Actor: &Actor{ID: "i"}},
		{ID: "x", Actor: &Actor{PermalinkURL: "u"}},
		{ID: "x", Actor: &Actor{DisplayName: "n", PermalinkURL: "u"}},
		{ID: "x", StandardLinks: &Links{Self: []Link{{Href: "s"}}, Hub: []Link{{Href: "h", Title: "t"}, {Href: "h2"}}}},
		{ID: "x", Cursor: 1<<64 - 1, Published: -1 << 63, Updated: 1<<63 - 1},
	}
	for i, s := range nasty {
		items = append(items, nastyItem(i, s))
	}
	for i := range items {
		want, err := json.Marshal(&items[i])
		if err != nil {
			t.Fatal(err)
		}
		got := AppendJSONItem(nil, &items[i])
		if !bytes.Equal(got, want) {
			t.Errorf("item %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestAppendJSONStatusMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	statuses := []Status{
		{},
		{Code: 200, HTTP: "ok", Feed: "https://e.com/", Title: "t", Period: 900, LastFetch: 1, LastParse: 2, NextFetch: 3,
			LastMaintenanceAt: 4, EntriesCountSinceLastMaintenance: 5, Cursor: 6, Gap: true},
		{Code: -1, Period: -5, Cursor: 1<<64 - 1},
	}
	for _, s := range nasty {
		statuses = append(statuses, Status{HTTP: s, Feed: s, Title: s})
	}
	for i := range statuses {
		want, _ := json.Marshal(&statuses[i])
		got := appendJSONStatus(nil, &statuses[i])
		if !bytes.Equal(got, want) {
			t.Errorf("status %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestAppendJSON(t *testing.T) {
	t.Parallel()
	var items []Item
	for i, s := range nasty {
		items = append(items, nastyItem(i, s))
	}
	tests := []struct {
		name string
		n    Notification
		want string // exact output, when given
	}{
		{"empty", Notification{Status: Status{LastFetch: 5}},
			`{"status":{"code":0,"http":"","feed":"","period":0,"lastFetch":5,"lastParse":0,"nextFetch":0,"gap":false},` +
				`"title":"","subtitle":"","id":"urn:feedgate:feed:6e340b9cffb37a989ca544e6bb780a2c","updated":5,"permalinkUrl":"","standardLinks":{},"items":[]}`},
		{"full", Notification{
			Status: Status{Code: 200, HTTP: "200 OK", Feed: "https://e.com/f", Period: 900, Cursor: 2, Gap: true},
			Meta: Meta{Title: "T", Subtitle: "S", ID: "urn:xy:z", Updated: 7, PermalinkURL: "https://e.com/", Language: "en",
				StandardLinks: &Links{Alternate: []Link{{Href: "https://e.com/", Type: "text/html"}}, Hub: []Link{{Href: "https://h/"}}}},
			Items: []Item{{ID: "b", Cursor: 2, Title: "B"}, {ID: "a", Cursor: 1}},
		},
			`{"status":{"code":200,"http":"200 OK","feed":"https://e.com/f","period":900,"lastFetch":0,"lastParse":0,"nextFetch":0,"cursor":"0000000000000002","gap":true},` +
				`"title":"T","subtitle":"S","id":"urn:xy:z","updated":7,"permalinkUrl":"https://e.com/",` +
				`"standardLinks":{"alternate":[{"href":"https://e.com/","type":"text/html"}],"hub":[{"href":"https://h/"}]},` +
				`"items":[{"id":"b","cursor":"0000000000000002","title":"B"},{"id":"a","cursor":"0000000000000001"}]}`},
		{"nasty", Notification{
			Status: Status{HTTP: nasty[6], Feed: nasty[4], Title: nasty[5]},
			Meta:   Meta{Title: nasty[4], Subtitle: nasty[5], ID: nasty[6], PermalinkURL: nasty[3]},
			Items:  items,
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := AppendJSON([]byte("prefix"), &tt.n)
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatal("dst was not appended to")
			}
			got = got[len("prefix"):]
			if tt.want != "" && string(got) != tt.want {
				t.Errorf("\n got %s\nwant %s", got, tt.want)
			}
			if err := checkJSON(got, &tt.n); err != nil {
				t.Error(err)
			}
			// JSONP: the body must be a valid JavaScript expression too,
			// which JSON with U+2028/U+2029 escaped is.
			if bytes.ContainsAny(got, "\u2028\u2029") {
				t.Error("raw line separators")
			}
		})
	}
}

func TestAppendJSONDoesNotAllocate(t *testing.T) {
	n := benchNotification(10)
	buf := make([]byte, 0, 64<<10)
	allocs := testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], n) })
	if allocs != 0 {
		t.Errorf("%v allocations per AppendJSON", allocs)
	}
}

// benchNotification is a typical retrieve answer: count items of a blog
// feed with a kilobyte or so of HTML each.
func benchNotification(count int) *Notification {
	n := &Notification{
		Status: Status{Code: 200, HTTP: "9718 bytes fetched in 0.12s: 2 new entries", Feed: "https://blog.example.com/feed.xml",
			Period: 900, LastFetch: 1700000000, LastParse: 1700000000, NextFetch: 1700000900, Cursor: Cursor(count)},
		Meta: Meta{Title: "The Example Blog", Subtitle: "Notes on things", ID: "https://blog.example.com/", Updated: 1700000000,
			PermalinkURL: "https://blog.example.com/",
			StandardLinks: &Links{
				Alternate: []Link{{Href: "https://blog.example.com/", Type: "text/html"}},
				Self:      []Link{{Href: "https://blog.example.com/feed.xml", Type: "application/rss+xml"}},
				Hub:       []Link{{Href: "https://pubsubhubbub.appspot.com/"}},
			}},
	}
	body := strings.Repeat(`<p>Lorem ipsum dolor sit amet, “consectetur” adipiscing elit &amp; sed do <a href="https://example.com/x?a=1&amp;b=2">eiusmod</a> tempor.</p>`+"\n", 8)
	for i := count; i >= 1; i-- {
		n.Items = append(n.Items, Item{
			ID: fmt.Sprintf("https://blog.example.com/posts/%d", i), Cursor: Cursor(i),
			Title:     fmt.Sprintf("Post number %d: a title of some length", i),
			Published: 1700000000 - int64(i)*3600, Updated: 1700000000 - int64(i)*3600,
			Content: body, Summary: "Lorem ipsum dolor sit amet, consectetur adipiscing elit.",
			PermalinkURL:  fmt.Sprintf("https://blog.example.com/posts/%d", i),
			StandardLinks: &Links{Alternate: []Link{{Href: fmt.Sprintf("https://blog.example.com/posts/%d", i), Type: "text/html"}}},
			Actor:         &Actor{DisplayName: "Jo Writer", ID: "jo@example.com", PermalinkURL: "https://blog.example.com/jo"},
			Categories:    []string{"notes", "go"}, Language: "en",
		})
	}
	return n
}

func BenchmarkAppendJSON(b *testing.B) {
	n := benchNotification(10)
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], n)
	}
	b.SetBytes(int64(len(buf)))
}

// BenchmarkMarshalJSON is encoding/json on the same notification, for
// comparison.
func BenchmarkMarshalJSON(b *testing.B) {
	n := benchNotification(10)
	v := struct {
		Status Status `json:"status"`
		Meta
		Items []Item `json:"items"`
	}{n.Status, n.Meta, n.Items}
	b.ReportAllocs()
	for b.Loop() {
		out, _ := json.Marshal(&v)
		b.SetBytes(int64(len(out)))
	}
}
