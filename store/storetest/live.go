package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
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
		// Batches of different topics may come in any order (on Redis
		// Cluster they come from different shards).
		got := recvTopics(t, l2, map[string]int{topicA: 2, topicB: 1})
		checkCursors(t, "listener 2 A", got[topicA], span(1, 2))
		checkCursors(t, "listener 2 B", got[topicB], span(1, 1))
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

	t.Run("State", func(t *testing.T) {
		s := open(t, store.Options{})
		ctx := testContext(t)
		l := listen(t, s, topicA, topicB)

		// A topic that never had a state announces the zero state.
		appendItems(t, s, topicB, items("b", 1)...)
		b := recvBatch(t, l, topicB)
		if want := (&store.TopicState{Topic: topicB}); stateJSON(b.State) != stateJSON(want) {
			t.Errorf("state of a topic without one: %s, want %s", stateJSON(b.State), stateJSON(want))
		}

		// Each append carries the state of the UpdateTopic made just
		// before it, whole.
		for i := range 5 {
			if err := s.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error {
				ts.Meta = feed.Meta{
					Title: fmt.Sprintf("Feed A, version %d", i), ID: "urn:a", Updated: int64(1700000000 + i),
					StandardLinks: &feed.Links{Alternate: []feed.Link{{Href: "https://example.com/", Type: "text/html"}}},
				}
				ts.Status = feed.Status{Code: 200, HTTP: "200 OK", Feed: topicA, Period: 60 + i, LastFetch: int64(1700000000 + i)}
				return nil
			}); err != nil {
				t.Fatalf("UpdateTopic: %v", err)
			}
			want, err := s.Topic(ctx, topicA)
			if err != nil {
				t.Fatalf("Topic: %v", err)
			}
			appendItems(t, s, topicA, items(fmt.Sprintf("v%d-", i), 2)...)
			b := recvBatch(t, l, topicA)
			if len(b.Items) != 2 {
				t.Fatalf("round %d: batch of %d items, want the 2 appended", i, len(b.Items))
			}
			if g, w := stateJSON(b.State), stateJSON(&want); g != w {
				t.Errorf("round %d: announced state\n got %s\nwant %s", i, g, w)
			}
		}

		// An update after the append does not reach the batch announcing it.
		appendItems(t, s, topicA, items("late", 1)...)
		if err := s.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error {
			ts.Meta.Title = "changed after the append"
			return nil
		}); err != nil {
			t.Fatalf("UpdateTopic: %v", err)
		}
		if b := recvBatch(t, l, topicA); b.State.Meta.Title != "Feed A, version 4" {
			t.Errorf("an append announced the state of a later update: title %q", b.State.Meta.Title)
		}
		expectQuiet(t, l)
	})

	t.Run("StateRaces", func(t *testing.T) {
		// Updates and appends race: every announced state is one that was
		// stored, and never older than the state that preceded the append.
		s := open(t, store.Options{})
		ctx := testContext(t)
		l := listen(t, s, topicA)
		const rounds = 40
		done := make(chan error, 1)
		go func() {
			for i := 1; i <= rounds; i++ {
				if err := s.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error {
					ts.Status.Period = i
					ts.Meta.Title = fmt.Sprintf("title %d", i)
					return nil
				}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		floor := 0
		var got []feed.Item
		for i := range rounds {
			cur, err := s.Topic(ctx, topicA)
			if err != nil {
				t.Fatalf("Topic: %v", err)
			}
			floor = max(floor, cur.Status.Period)
			appendItems(t, s, topicA, items(fmt.Sprintf("r%d-", i), 1)...)
			b := recvBatch(t, l, topicA)
			got = append(got, b.Items...)
			p := b.State.Status.Period
			if p < floor {
				t.Errorf("append %d announced period %d, older than the %d read before it", i, p, floor)
			}
			if want := fmt.Sprintf("title %d", p); p > 0 && b.State.Meta.Title != want {
				t.Errorf("append %d announced a torn state: period %d with title %q", i, p, b.State.Meta.Title)
			}
			floor = p
		}
		if err := <-done; err != nil {
			t.Fatalf("UpdateTopic: %v", err)
		}
		checkCursors(t, "announced", got, span(1, rounds))
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
