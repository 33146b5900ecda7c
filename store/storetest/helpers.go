package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// waitTimeout bounds every wait for a live batch.
const waitTimeout = 5 * time.Second

// quietWait is how long the suite waits to be sure nothing more arrives.
const quietWait = 100 * time.Millisecond

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newItem builds an item with every field set, derived from id and hash so
// that round trips can be compared.
func newItem(id, hash string) feed.Item {
	return feed.Item{
		ID:           id,
		Title:        "Title of " + id + " " + hash,
		Published:    1700000000,
		Updated:      1700000100,
		Content:      "<p>content of " + id + " version " + hash + "</p>",
		Summary:      "summary " + hash,
		PermalinkURL: "https://example.com/" + id,
		StandardLinks: &feed.Links{
			Alternate: []feed.Link{{Href: "https://example.com/" + id, Type: "text/html", Title: "alt"}},
		},
		Actor:      &feed.Actor{DisplayName: "Ann Author", ID: "ann", PermalinkURL: "https://example.com/ann"},
		Categories: []string{"go", "feeds"},
		Language:   "en",
		Hash:       hash,
	}
}

// items builds items "<prefix>1".."<prefix>n" with hash "h".
func items(prefix string, n int) []feed.Item {
	out := make([]feed.Item, n)
	for i := range out {
		out[i] = newItem(fmt.Sprintf("%s%d", prefix, i+1), "h")
	}
	return out
}

// key names an item by what the store deduplicates on.
func key(it feed.Item) string { return it.ID + "\x00" + it.Hash }

// itemJSON renders an item with its hash, for exact comparisons.
func itemJSON(it feed.Item) string {
	b, err := json.Marshal(it)
	if err != nil {
		return "unencodable: " + err.Error()
	}
	return string(b) + " hash=" + it.Hash
}

// stateJSON renders a topic state for exact comparisons.
func stateJSON(ts *store.TopicState) string {
	if ts == nil {
		return "nil"
	}
	b, err := json.Marshal(ts)
	if err != nil {
		return "unencodable: " + err.Error()
	}
	return string(b)
}

// checkItem reports a difference between an item read back and the item
// appended (with the cursor the store should have assigned).
func checkItem(t *testing.T, what string, got, want feed.Item, cursor feed.Cursor) {
	t.Helper()
	want.Cursor = cursor
	if g, w := itemJSON(got), itemJSON(want); g != w {
		t.Errorf("%s: item differs:\n got %s\nwant %s", what, g, w)
	}
}

func appendItems(t *testing.T, s store.Store, topic string, its ...feed.Item) []feed.Item {
	t.Helper()
	out, err := s.Append(testContext(t), topic, its)
	if err != nil {
		t.Fatalf("Append(%q, %d items): %v", topic, len(its), err)
	}
	return out
}

func read(t *testing.T, s store.Store, topic string, q store.Query) store.Page {
	t.Helper()
	p, err := s.Read(testContext(t), topic, q)
	if err != nil {
		t.Fatalf("Read(%q, %+v): %v", topic, q, err)
	}
	return p
}

func cursors(its []feed.Item) []feed.Cursor {
	out := make([]feed.Cursor, len(its))
	for i, it := range its {
		out[i] = it.Cursor
	}
	return out
}

// span lists cursors from..to inclusive, counting down when from > to.
func span(from, to feed.Cursor) []feed.Cursor {
	var out []feed.Cursor
	if from <= to {
		for c := from; c <= to; c++ {
			out = append(out, c)
		}
		return out
	}
	for c := from; c >= to; c-- {
		out = append(out, c)
	}
	return out
}

// nums renders cursors as plain numbers for messages.
func nums(cs []feed.Cursor) []uint64 {
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = uint64(c)
	}
	return out
}

func sameCursors(a, b []feed.Cursor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func checkCursors(t *testing.T, what string, got []feed.Item, want []feed.Cursor) {
	t.Helper()
	if g := cursors(got); !sameCursors(g, want) {
		t.Errorf("%s: cursors %v, want %v", what, nums(g), nums(want))
	}
}

func checkPage(t *testing.T, what string, p store.Page, want []feed.Cursor, gap bool, last feed.Cursor) {
	t.Helper()
	checkCursors(t, what, p.Items, want)
	if p.Gap != gap {
		t.Errorf("%s: Gap = %v, want %v", what, p.Gap, gap)
	}
	if p.Last != last {
		t.Errorf("%s: Last = %v, want %v", what, p.Last, last)
	}
}

// recv waits for the next batch; it fails the test when none arrives or the
// channel is closed.
func recv(t *testing.T, l store.Listener) store.Batch {
	t.Helper()
	select {
	case b, ok := <-l.Batches():
		if !ok {
			t.Fatal("Batches closed while a batch was expected")
		}
		return b
	case <-time.After(waitTimeout):
		t.Fatalf("no batch within %v", waitTimeout)
	}
	return store.Batch{}
}

// recvItems gathers batches of topic until n items arrived and fails on a
// batch of another topic, an empty batch or a Resync.
func recvItems(t *testing.T, l store.Listener, topic string, n int) []feed.Item {
	t.Helper()
	var got []feed.Item
	for len(got) < n {
		b := recv(t, l)
		if b.Resync {
			t.Fatalf("unexpected Resync batch after %d of %d items", len(got), n)
		}
		if b.Topic != topic {
			t.Fatalf("batch for topic %q (%v), want %q", b.Topic, nums(cursors(b.Items)), topic)
		}
		if len(b.Items) == 0 {
			t.Fatalf("empty batch for topic %q", topic)
		}
		if b.State == nil || b.State.Topic != topic {
			t.Fatalf("batch for topic %q carries state %+v, want the topic's state", topic, b.State)
		}
		got = append(got, b.Items...)
	}
	if len(got) > n {
		t.Fatalf("got %d items (%v), want %d", len(got), nums(cursors(got)), n)
	}
	return got
}

// recvTopics gathers batches until want[topic] items of each topic
// arrived, in whatever order the topics come; it fails on a batch of
// another topic, a Resync, or more items than wanted.
func recvTopics(t *testing.T, l store.Listener, want map[string]int) map[string][]feed.Item {
	t.Helper()
	got := make(map[string][]feed.Item)
	missing := 0
	for _, n := range want {
		missing += n
	}
	for missing > 0 {
		b := recv(t, l)
		n, ok := want[b.Topic]
		switch {
		case b.Resync:
			t.Fatalf("unexpected Resync batch; still waiting for %d items", missing)
		case !ok:
			t.Fatalf("batch for topic %q (%v), want one of %v", b.Topic, nums(cursors(b.Items)), want)
		case b.State == nil || b.State.Topic != b.Topic:
			t.Fatalf("batch for topic %q carries state %s, want the topic's state", b.Topic, stateJSON(b.State))
		case len(got[b.Topic])+len(b.Items) > n:
			t.Fatalf("topic %q: %d items announced, want %d", b.Topic, len(got[b.Topic])+len(b.Items), n)
		}
		got[b.Topic] = append(got[b.Topic], b.Items...)
		missing -= len(b.Items)
	}
	return got
}

// expectQuiet fails if a batch arrives within quietWait.
func expectQuiet(t *testing.T, l store.Listener) {
	t.Helper()
	select {
	case b, ok := <-l.Batches():
		if ok {
			t.Errorf("unexpected batch: topic %q cursors %v resync %v", b.Topic, nums(cursors(b.Items)), b.Resync)
		}
	case <-time.After(quietWait):
	}
}

func listen(t *testing.T, s store.Store, topics ...string) store.Listener {
	t.Helper()
	ctx := testContext(t)
	l, err := s.Listen(ctx)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if len(topics) > 0 {
		if err := l.Add(ctx, topics...); err != nil {
			t.Fatalf("Add(%q): %v", topics, err)
		}
	}
	return l
}

// utcSecond normalises a time for comparison across backends.
func utcSecond(tm time.Time) string {
	if tm.IsZero() {
		return "zero"
	}
	return tm.UTC().Truncate(time.Second).Format(time.RFC3339)
}

func userString(u store.User) string {
	var b strings.Builder
	fmt.Fprintf(&b, "login=%q created=%s tokens=[", u.Login, utcSecond(u.CreatedAt))
	for _, tk := range u.Tokens {
		fmt.Fprintf(&b, "{id=%q hash=%q rights=%v topics=%q created=%s}",
			tk.ID, tk.Hash, tk.Rights, tk.Topics, utcSecond(tk.CreatedAt))
	}
	b.WriteString("]")
	return b.String()
}

func subString(s store.Subscription) string {
	return fmt.Sprintf("login=%q topic=%q callback=%q secret=%q format=%q lease=%d created=%s expires=%s",
		s.Login, s.Topic, s.Callback, s.Secret, s.Format, s.LeaseSeconds, utcSecond(s.CreatedAt), utcSecond(s.ExpiresAt))
}

func subStrings(subs []store.Subscription) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = subString(s)
	}
	return out
}

func sortedStrings(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// recvBatch waits for the next batch and fails unless it announces items
// of topic with the topic's state.
func recvBatch(t *testing.T, l store.Listener, topic string) store.Batch {
	t.Helper()
	b := recv(t, l)
	switch {
	case b.Resync:
		t.Fatalf("unexpected Resync batch (topics %q), want one of %q", b.Topics, topic)
	case b.Topic != topic || len(b.Items) == 0:
		t.Fatalf("batch for topic %q with %d items, want items of %q", b.Topic, len(b.Items), topic)
	case b.State == nil || b.State.Topic != topic:
		t.Fatalf("batch for topic %q carries state %s, want the topic's state", topic, stateJSON(b.State))
	}
	return b
}
