package stream

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
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
		if got := string(appendSSEField(nil, "data", []byte(tc.in))); got != tc.want {
			t.Errorf("appendSSEField(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestResumeToken(t *testing.T) {
	topics := []string{"https://a.example/", "https://b.example/", "https://c.example/"}
	s := &session{last: map[string]feed.Cursor{topics[0]: 7, topics[1]: 0, topics[2]: 1 << 40}, order: topics}
	tok := string(s.appendToken(nil))
	if strings.ContainsAny(tok, "\r\n\x00 :") {
		t.Fatalf("token %q has characters an SSE id cannot carry", tok)
	}
	got, err := parseResumeToken(tok, []string{topics[2], topics[0], "https://new.example/", topics[1]})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]feed.Cursor{topics[0]: 7, topics[1]: 0, topics[2]: 1 << 40}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("round trip: %v, want %v", got, want)
	}
	one := &session{last: map[string]feed.Cursor{topics[0]: 42}, order: topics[:1]}
	if tok := string(one.appendToken(nil)); tok != feed.Cursor(42).String() {
		t.Errorf("single-topic token %q, want the cursor", tok)
	}
	for _, bad := range []string{"x", "m!!", "m" + "AAAA", feed.Cursor(1).String()} {
		if _, err := parseResumeToken(bad, topics); err == nil {
			t.Errorf("token %q for 3 topics accepted", bad)
		}
	}
}

// BenchmarkFanout measures one notification reaching N in-memory clients:
// the broker queues it for each, and every client takes it and writes its
// NDJSON encoding (made once, shared) to io.Discard.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("clients=%d", n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, clients int) {
	st, err := embedded.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const topicName = "https://example.com/bench.xml"
	br, err := New(st, retrieve.New(st, "https://hub.example/", retrieve.Limits{}), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	var consumers sync.WaitGroup
	cs := make([]*client, clients)
	for i := range cs {
		c, err := br.attach(nil, kindNDJSON, DefaultClientQueue)
		if err != nil {
			b.Fatal(err)
		}
		if err := br.subscribe(ctx, c, topicName); err != nil {
			b.Fatal(err)
		}
		cs[i] = c
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			for {
				select {
				case ev := <-c.q:
					_, _ = io.Discard.Write(ev.ndjson())
					wg.Done()
				case <-c.gone:
					return
				}
			}
		}()
	}
	t := br.lookup(topicName)
	state := store.TopicState{Topic: topicName, Meta: feed.Meta{Title: "Bench"}}
	item := feed.Item{ID: "urn:bench", Title: "An item of typical size", Content: strings.Repeat("<p>Some content.</p>", 40), PermalinkURL: "https://example.com/post"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		item.Cursor = feed.Cursor(i + 1)
		wg.Add(clients)
		br.announce(t, state, []feed.Item{item})
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*clients), "ns/delivery")
	for _, c := range cs {
		c.drop(reasonShutdown)
	}
	consumers.Wait()
	for _, c := range cs {
		br.detach(c)
	}
}

// BenchmarkEncode is the cost paid once per notification and format.
func BenchmarkEncode(b *testing.B) {
	items := make([]feed.Item, 3)
	for i := range items {
		items[i] = feed.Item{ID: fmt.Sprint("urn:", i), Cursor: feed.Cursor(i + 1), Title: "Title", Content: strings.Repeat("<p>Some content.</p>", 40)}
	}
	state := store.TopicState{Topic: "https://example.com/feed.xml", Meta: feed.Meta{Title: "Bench"}}
	for _, f := range []struct {
		name string
		do   func(*event)
	}{
		{"ndjson", func(ev *event) { ev.ndjson() }},
		{"sse", func(ev *event) { ev.sseData() }},
		{"atom", func(ev *event) { ev.atomEntries() }},
		{"websocket", func(ev *event) { _, _ = ev.wsMessage() }},
	} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				f.do(newEvent(state.Topic, state, items, "https://hub.example/"))
			}
		})
	}
}
