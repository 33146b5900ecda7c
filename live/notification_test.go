package live

import (
	"fmt"
	"strings"
	"testing"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

func TestAppendSSEField(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":1}`, "data: {\"a\":1}\n"},
		{"", "data: \n"},
		{"a\nb", "data: a\ndata: b\n"},
		{"a\rb", "data: a\ndata: b\n"},
		{"a\r\nb", "data: a\ndata: b\n"},
		{"a\n\nb", "data: a\ndata: \ndata: b\n"},
		{"a\r", "data: a\ndata: \n"},
		{"nul\x00", "data: nul\x00\n"},
	} {
		if got := string(AppendSSEField(nil, "data", []byte(tc.in))); got != tc.want {
			t.Errorf("AppendSSEField(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNotificationSince(t *testing.T) {
	items := []feed.Item{{ID: "a", Cursor: 5}, {ID: "b", Cursor: 6}, {ID: "c", Cursor: 7}}
	n := NewNotification("https://a.example/", store.TopicState{Meta: feed.Meta{Title: "A"}}, items, "https://hub.example/")
	if n.First != 5 || n.Last != 7 || n.N.Items[0].ID != "c" || n.N.Status.Cursor != 7 || n.N.Status.Title != "A" {
		t.Fatalf("notification: first %d last %d newest %q status %+v", n.First, n.Last, n.N.Items[0].ID, n.N.Status)
	}
	if n.Since(4) != n {
		t.Error("Since before the first item made a copy")
	}
	cp := n.Since(5)
	if cp == n || cp.First != 6 || cp.Last != 7 || len(cp.N.Items) != 2 {
		t.Errorf("Since(5): first %d last %d items %d", cp.First, cp.Last, len(cp.N.Items))
	}
	if string(cp.Bytes(NDJSON)) == string(n.Bytes(NDJSON)) {
		t.Error("the copy shares the encoding of the whole notification")
	}
	if got := string(n.Bytes(SSEEvent)); !strings.HasPrefix(got, "event: notification\ndata: {") || !strings.HasSuffix(got, "\nid: "+feed.Cursor(7).String()+"\n\n") {
		t.Errorf("SSE event %q", got)
	}
	if c := n.Chunk(NDJSON); !strings.HasPrefix(string(c), fmt.Sprintf("%x\r\n", len(n.Bytes(NDJSON)))) || !strings.HasSuffix(string(c), "\r\n") {
		t.Errorf("chunk %q", c)
	}
}

// BenchmarkEncode is the cost paid once per notification and form.
func BenchmarkEncode(b *testing.B) {
	items := make([]feed.Item, 3)
	for i := range items {
		items[i] = feed.Item{ID: fmt.Sprint("urn:", i), Cursor: feed.Cursor(i + 1), Title: "Title", Content: strings.Repeat("<p>Some content.</p>", 40)}
	}
	state := store.TopicState{Topic: "https://example.com/feed.xml", Meta: feed.Meta{Title: "Bench"}}
	for _, e := range []struct {
		name string
		enc  Encoding
	}{{"ndjson", NDJSON}, {"sse", SSEData}, {"atom", AtomEntries}} {
		b.Run(e.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				NewNotification(state.Topic, state, items, "https://hub.example/").Bytes(e.enc)
			}
		})
	}
}
