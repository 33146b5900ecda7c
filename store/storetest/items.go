package storetest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

const topicA = "https://example.com/a.xml"
const topicB = "https://example.com/b.xml"

func runItems(t *testing.T, open Opener) {
	t.Run("CursorsAndRoundTrip", func(t *testing.T) {
		s := open(t, store.Options{})
		in := items("e", 3)
		in[1].Cursor = 99 // ignored: the store assigns cursors
		got := appendItems(t, s, topicA, in...)
		checkCursors(t, "first append", got, span(1, 3))
		for i := range got {
			checkItem(t, "Append result", got[i], in[i], feed.Cursor(i+1))
		}
		more := items("f", 2)
		got = appendItems(t, s, topicA, more...)
		checkCursors(t, "second append", got, span(4, 5))

		p := read(t, s, topicA, store.Query{From: store.Newest, Count: 10})
		checkPage(t, "Newest 10", p, span(5, 1), false, 5)
		all := append(append([]feed.Item(nil), in...), more...)
		for i, it := range p.Items {
			c := feed.Cursor(5 - i)
			checkItem(t, fmt.Sprintf("Read item %v", c), it, all[c-1], c)
		}
		if p.Topic.Topic != topicA {
			t.Errorf("Page.Topic.Topic = %q, want %q", p.Topic.Topic, topicA)
		}
	})

	t.Run("AppendNothing", func(t *testing.T) {
		s := open(t, store.Options{})
		if got := appendItems(t, s, topicA); len(got) != 0 {
			t.Errorf("Append of no items returned %v", nums(cursors(got)))
		}
		checkPage(t, "after empty append", read(t, s, topicA, store.Query{Count: 10}), nil, false, 0)
	})

	t.Run("Dedup", func(t *testing.T) {
		s := open(t, store.Options{})
		a1, b1 := newItem("a", "1"), newItem("b", "1")
		appendItems(t, s, topicA, a1, b1)
		if got := appendItems(t, s, topicA, a1, b1); len(got) != 0 {
			t.Errorf("re-append of stored items stored %v", nums(cursors(got)))
		}
		a2 := newItem("a", "2")
		got := appendItems(t, s, topicA, b1, a2)
		checkCursors(t, "update of a", got, span(3, 3))
		if len(got) == 1 && got[0].Hash != "2" {
			t.Errorf("stored update has hash %q, want 2", got[0].Hash)
		}
		// A version seen before is a duplicate even when it is not the newest.
		if got := appendItems(t, s, topicA, a1); len(got) != 0 {
			t.Errorf("re-append of an older version stored %v", nums(cursors(got)))
		}
		// Within one call: exact duplicates collapse, a new version is stored.
		c1, c2, d1 := newItem("c", "1"), newItem("c", "2"), newItem("d", "1")
		got = appendItems(t, s, topicA, c1, c1, d1, c2, d1)
		checkCursors(t, "duplicates within one call", got, span(4, 6))
		if len(got) == 3 {
			checkItem(t, "cursor 4", got[0], c1, 4)
			checkItem(t, "cursor 5", got[1], d1, 5)
			checkItem(t, "cursor 6", got[2], c2, 6)
		}
		p := read(t, s, topicA, store.Query{Count: 50})
		checkPage(t, "after dedup", p, span(6, 1), false, 6)
	})

	t.Run("IndependentTopics", func(t *testing.T) {
		s := open(t, store.Options{})
		appendItems(t, s, topicA, items("e", 2)...)
		got := appendItems(t, s, topicB, items("e", 3)...)
		checkCursors(t, "topic B (same entries as A)", got, span(1, 3))
		got = appendItems(t, s, topicA, newItem("x", "1"))
		checkCursors(t, "topic A again", got, span(3, 3))
		checkPage(t, "topic A", read(t, s, topicA, store.Query{Count: 10}), span(3, 1), false, 3)
		checkPage(t, "topic B", read(t, s, topicB, store.Query{Count: 10}), span(3, 1), false, 3)
	})

	t.Run("Read", func(t *testing.T) {
		s := open(t, store.Options{})
		// Appended in several calls so the reads cross batch boundaries.
		for i := 0; i < 4; i++ {
			appendItems(t, s, topicA, items(fmt.Sprintf("r%d-", i), 5)...)
		}
		cases := []struct {
			name string
			q    store.Query
			want []feed.Cursor
		}{
			{"Newest 5", store.Query{From: store.Newest, Count: 5}, span(20, 16)},
			{"Newest 1", store.Query{From: store.Newest, Count: 1}, span(20, 20)},
			{"Newest more than held", store.Query{From: store.Newest, Count: 50}, span(20, 1)},
			{"Newest 0", store.Query{From: store.Newest, Count: 0}, nil},
			{"After 5 count 3", store.Query{From: store.After, Cursor: 5, Count: 3}, span(8, 6)},
			{"After 0 count 3", store.Query{From: store.After, Cursor: 0, Count: 3}, span(3, 1)},
			{"After 18 count 5", store.Query{From: store.After, Cursor: 18, Count: 5}, span(20, 19)},
			{"After 19 count 1", store.Query{From: store.After, Cursor: 19, Count: 1}, span(20, 20)},
			{"After newest", store.Query{From: store.After, Cursor: 20, Count: 5}, nil},
			{"After future", store.Query{From: store.After, Cursor: 100, Count: 5}, nil},
			{"Before 10 count 3", store.Query{From: store.Before, Cursor: 10, Count: 3}, span(9, 7)},
			{"Before 3 count 5", store.Query{From: store.Before, Cursor: 3, Count: 5}, span(2, 1)},
			{"Before 1", store.Query{From: store.Before, Cursor: 1, Count: 5}, nil},
			{"Before 21 count 2", store.Query{From: store.Before, Cursor: 21, Count: 2}, span(20, 19)},
			{"Before future", store.Query{From: store.Before, Cursor: 100, Count: 2}, span(20, 19)},
		}
		for _, c := range cases {
			checkPage(t, c.name, read(t, s, topicA, c.q), c.want, false, 20)
		}
		// Paging forward with After never skips nor repeats.
		var seen []feed.Cursor
		var cur feed.Cursor
		for range 10 {
			p := read(t, s, topicA, store.Query{From: store.After, Cursor: cur, Count: 3})
			if len(p.Items) == 0 {
				break
			}
			for i := len(p.Items) - 1; i >= 0; i-- {
				seen = append(seen, p.Items[i].Cursor)
			}
			cur = p.Items[0].Cursor
		}
		if !sameCursors(seen, span(1, 20)) {
			t.Errorf("paging with After saw %v, want 1..20", seen)
		}
	})

	t.Run("UnknownTopic", func(t *testing.T) {
		s := open(t, store.Options{})
		appendItems(t, s, topicA, items("e", 2)...)
		for _, q := range []store.Query{
			{From: store.Newest, Count: 10},
			{From: store.After, Cursor: 0, Count: 10},
			{From: store.After, Cursor: 5, Count: 10},
			{From: store.Before, Cursor: 5, Count: 10},
		} {
			p := read(t, s, topicB, q)
			checkPage(t, fmt.Sprintf("unknown topic %+v", q), p, nil, false, 0)
			if p.Topic.Topic != topicB {
				t.Errorf("unknown topic: Page.Topic.Topic = %q, want %q", p.Topic.Topic, topicB)
			}
		}
	})

	t.Run("Retention", func(t *testing.T) {
		s := open(t, store.Options{Retention: 5})
		appendItems(t, s, topicA, items("e", 3)...)
		appendItems(t, s, topicA, items("f", 4)...) // 7 stored, 3..7 held
		got := appendItems(t, s, topicA, items("g", 5)...)
		checkCursors(t, "third append", got, span(8, 12)) // 8..12 held
		cases := []struct {
			name string
			q    store.Query
			want []feed.Cursor
			gap  bool
		}{
			{"Newest 50", store.Query{From: store.Newest, Count: 50}, span(12, 8), false},
			{"Newest 2", store.Query{From: store.Newest, Count: 2}, span(12, 11), false},
			{"After 3 (trimmed)", store.Query{From: store.After, Cursor: 3, Count: 2}, span(9, 8), true},
			{"After 0 (trimmed)", store.Query{From: store.After, Cursor: 0, Count: 10}, span(12, 8), true},
			{"After 6 (trimmed)", store.Query{From: store.After, Cursor: 6, Count: 3}, span(10, 8), true},
			{"After 7 (just before oldest)", store.Query{From: store.After, Cursor: 7, Count: 2}, span(9, 8), false},
			{"After 8", store.Query{From: store.After, Cursor: 8, Count: 2}, span(10, 9), false},
			{"Before 10", store.Query{From: store.Before, Cursor: 10, Count: 5}, span(9, 8), false},
			{"Before 8", store.Query{From: store.Before, Cursor: 8, Count: 5}, nil, false},
			{"Before 3", store.Query{From: store.Before, Cursor: 3, Count: 5}, nil, false},
		}
		for _, c := range cases {
			checkPage(t, c.name, read(t, s, topicA, c.q), c.want, c.gap, 12)
		}
		// Trimmed entries still in the feed are not stored again.
		if got := appendItems(t, s, topicA, items("e", 3)...); len(got) != 0 {
			t.Errorf("re-append of trimmed entries stored %v", nums(cursors(got)))
		}
		// CursorOf still knows a trimmed entry; reading after it is a gap.
		c, err := s.CursorOf(testContext(t), topicA, "f1")
		if err != nil || c != 4 {
			t.Errorf("CursorOf(trimmed f1) = %v, %v; want 4", c, err)
		}
		// One append larger than the retention keeps its newest items.
		got = appendItems(t, s, topicA, items("h", 7)...)
		checkCursors(t, "append larger than retention", got, span(13, 19))
		checkPage(t, "after big append", read(t, s, topicA, store.Query{Count: 50}), span(19, 15), false, 19)
	})

	t.Run("CursorOf", func(t *testing.T) {
		s := open(t, store.Options{})
		ctx := testContext(t)
		appendItems(t, s, topicA, newItem("a", "1"), newItem("b", "1"))
		appendItems(t, s, topicA, newItem("a", "2"), newItem("c", "1"))
		for id, want := range map[string]feed.Cursor{"a": 3, "b": 2, "c": 4} {
			if c, err := s.CursorOf(ctx, topicA, id); err != nil || c != want {
				t.Errorf("CursorOf(%q) = %v, %v; want %v", id, c, err, want)
			}
		}
		if _, err := s.CursorOf(ctx, topicA, "zzz"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CursorOf(unknown id) error = %v, want ErrNotFound", err)
		}
		if _, err := s.CursorOf(ctx, topicB, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CursorOf(unknown topic) error = %v, want ErrNotFound", err)
		}
	})

	t.Run("PageTopic", func(t *testing.T) {
		s := open(t, store.Options{})
		ctx := testContext(t)
		err := s.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error {
			ts.Meta.Title = "Feed A"
			ts.Status.Code = 200
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateTopic: %v", err)
		}
		appendItems(t, s, topicA, items("e", 1)...)
		p := read(t, s, topicA, store.Query{Count: 10})
		if p.Topic.Topic != topicA || p.Topic.Meta.Title != "Feed A" || p.Topic.Status.Code != 200 {
			t.Errorf("Page.Topic = %+v, want topic %q title Feed A code 200", p.Topic, topicA)
		}
	})

	t.Run("OddValues", func(t *testing.T) {
		s := open(t, store.Options{})
		odd := []feed.Item{
			newItem("id with\x00nul", "h"),
			newItem("id with\nnewline and ünïcødé", "h\x00"),
			newItem("", ""),
			newItem("0000000000000001", "h"),
		}
		odd[0].Content = "content with \x00 and \r\n"
		got := appendItems(t, s, topicA, odd...)
		checkCursors(t, "odd ids", got, span(1, 4))
		if got := appendItems(t, s, topicA, odd...); len(got) != 0 {
			t.Errorf("re-append of odd ids stored %v", nums(cursors(got)))
		}
		p := read(t, s, topicA, store.Query{Count: 10})
		for i, it := range p.Items {
			c := feed.Cursor(4 - i)
			checkItem(t, fmt.Sprintf("odd item %v", c), it, odd[c-1], c)
		}
		if c, err := s.CursorOf(testContext(t), topicA, "id with\x00nul"); err != nil || c != 1 {
			t.Errorf("CursorOf(id with NUL) = %v, %v; want 1", c, err)
		}
	})
}
