package storetest

import (
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

const topicC = "https://example.com/c.xml"

func runLive(t *testing.T, open Opener) {
	t.Run("Delivers", func(t *testing.T) {
		s := open(t, store.Options{})
		appendItems(t, s, topicA, items("old", 2)...) // before Add: not announced
		l := listen(t, s, topicA)
		if !l.Healthy() {
			t.Error("Healthy() = false on a fresh listener")
		}
		in := items("e", 3)
		stored := appendItems(t, s, topicA, in...)
		got := recvItems(t, l, topicA, 3)
		checkCursors(t, "announced", got, span(3, 5))
		for i := range got {
			checkItem(t, "announced item", got[i], stored[i], stored[i].Cursor)
		}
		// Other topics are not announced; the next batch is topic A's.
		appendItems(t, s, topicB, items("b", 2)...)
		appendItems(t, s, topicA, items("f", 1)...)
		checkCursors(t, "after other topic", recvItems(t, l, topicA, 1), span(6, 6))
		expectQuiet(t, l)
	})

	t.Run("DuplicatesAnnounceNothing", func(t *testing.T) {
		s := open(t, store.Options{})
		l := listen(t, s, topicA)
		appendItems(t, s, topicA, items("e", 2)...)
		recvItems(t, l, topicA, 2)
		appendItems(t, s, topicA, items("e", 2)...) // all duplicates
		appendItems(t, s, topicA, items("e", 3)...) // e3 is new
		got := recvItems(t, l, topicA, 1)
		checkCursors(t, "after duplicates", got, span(3, 3))
		if len(got) == 1 && got[0].ID != "e3" {
			t.Errorf("announced %q, want e3", got[0].ID)
		}
	})

	t.Run("AddRemove", func(t *testing.T) {
		s := open(t, store.Options{})
		ctx := testContext(t)
		l := listen(t, s)
		if err := l.Add(ctx, topicA, topicB); err != nil {
			t.Fatalf("Add: %v", err)
		}
		if err := l.Add(ctx, topicA); err != nil { // adding twice is harmless
			t.Fatalf("Add again: %v", err)
		}
		appendItems(t, s, topicB, items("b", 1)...)
		recvItems(t, l, topicB, 1)
		appendItems(t, s, topicA, items("a", 1)...)
		recvItems(t, l, topicA, 1)

		if err := l.Remove(ctx, topicA); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		appendItems(t, s, topicA, items("a", 2)...)
		appendItems(t, s, topicB, items("b", 2)...)
		checkCursors(t, "after Remove", recvItems(t, l, topicB, 1), span(2, 2))

		if err := l.Remove(ctx, topicC); err != nil { // never added: harmless
			t.Fatalf("Remove of a topic never added: %v", err)
		}
		if err := l.Add(ctx, topicC); err != nil {
			t.Fatalf("Add C: %v", err)
		}
		appendItems(t, s, topicC, items("c", 1)...)
		recvItems(t, l, topicC, 1)
		expectQuiet(t, l)
	})

	t.Run("TwoListeners", func(t *testing.T) {
		s := open(t, store.Options{})
		l1 := listen(t, s, topicA)
		l2 := listen(t, s, topicA, topicB)
		appendItems(t, s, topicA, items("a", 2)...)
		appendItems(t, s, topicB, items("b", 1)...)
		checkCursors(t, "listener 1", recvItems(t, l1, topicA, 2), span(1, 2))
		checkCursors(t, "listener 2 A", recvItems(t, l2, topicA, 2), span(1, 2))
		checkCursors(t, "listener 2 B", recvItems(t, l2, topicB, 1), span(1, 1))
		expectQuiet(t, l1)
	})

	t.Run("Close", func(t *testing.T) {
		s := open(t, store.Options{})
		l := listen(t, s, topicA)
		appendItems(t, s, topicA, items("a", 1)...)
		recvItems(t, l, topicA, 1)
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Appending after Close neither fails nor blocks.
		appendItems(t, s, topicA, items("b", 1)...)
		deadline := time.After(waitTimeout)
		for {
			select {
			case _, ok := <-l.Batches():
				if !ok {
					return
				}
			case <-deadline:
				t.Fatal("Batches not closed after Close")
			}
		}
	})

	t.Run("ManyItems", func(t *testing.T) {
		s := open(t, store.Options{Retention: 50})
		l := listen(t, s, topicA)
		var want []string
		for i := 0; i < 20; i++ {
			stored := appendItems(t, s, topicA, items(string(rune('a'+i)), 6)...)
			for _, it := range stored {
				want = append(want, key(it))
			}
		}
		got := recvItems(t, l, topicA, len(want))
		checkCursors(t, "120 items announced", got, span(1, 120))
		for i := range got {
			if key(got[i]) != want[i] {
				t.Fatalf("announced item %d is %q, want %q", i, key(got[i]), want[i])
			}
		}
	})
}
