package redisstore_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

// TestTopicKeysShareSlot checks that every key of a topic carries the same
// hash tag, so the append script runs on Redis Cluster.
func TestTopicKeysShareSlot(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv.URL(), store.Options{})
	defer s.Close()
	ctx := context.Background()
	mustAppend(t, s, testItems("a", 2))
	if err := s.UpdateTopic(ctx, topic, func(ts *store.TopicState) error { ts.Status.Code = 200; return nil }); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Client().Keys(ctx, "fg:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^fg:\{([0-9a-f]{32})\}:(items|ids|seq|meta)$`)
	tags := map[string]bool{}
	kinds := map[string]bool{}
	for _, k := range keys {
		if k == "fg:layout" {
			continue // the layout version
		}
		m := re.FindStringSubmatch(k)
		if m == nil {
			t.Errorf("unexpected key %q", k)
			continue
		}
		tags[m[1]] = true
		kinds[m[2]] = true
	}
	if len(tags) != 1 || len(kinds) != 4 {
		t.Errorf("keys %q: want the 4 keys of one topic under one hash tag", keys)
	}
}

// TestDedupMemoryBounded appends many distinct items with a small dedup
// memory: the ids hash stays bounded, and recent items still deduplicate.
func TestDedupMemoryBounded(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, srv.URL(), store.Options{Retention: 5})
	defer s.Close()
	const keep = 20
	redisstore.SetDedupMemory(s, keep)
	ctx := context.Background()
	all := testItems("d", 400)
	for i := 0; i < len(all); i += 2 {
		mustAppend(t, s, all[i:i+2])
	}
	n, err := s.Client().HLen(ctx, redisstore.IDsKey(s, topic)).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Two fields per item are kept for `keep` items; the sweep lets the
	// hash grow to a little over twice that before it catches up.
	if n > 4*keep+1+2*256 || n < 2*keep {
		t.Errorf("ids hash holds %d fields after 400 items with a memory of %d", n, keep)
	}
	got, err := s.Append(ctx, topic, all[len(all)-keep:])
	if err != nil || len(got) != 0 {
		t.Errorf("re-append of the last %d items stored %d (%v)", keep, len(got), err)
	}
	c, err := s.CursorOf(ctx, topic, all[len(all)-1].ID)
	if err != nil || c != feed.Cursor(len(all)) {
		t.Errorf("CursorOf(newest) = %v, %v; want %d", c, err, len(all))
	}
	// Long-forgotten entries are stored again, as new items.
	got, err = s.Append(ctx, topic, all[:1])
	if err != nil || len(got) != 1 {
		t.Errorf("re-append of the first item, forgotten: stored %d (%v), want 1", len(got), err)
	}
	t.Logf("ids hash: %d fields", n)
}

// TestReadersSeeTheirRetention: a node configured with a smaller retention
// than the node that appended never shows more than its own retention.
func TestReadersSeeTheirRetention(t *testing.T) {
	srv := redistest.Start(t)
	wide := newStore(t, srv.URL(), store.Options{Retention: 10})
	defer wide.Close()
	narrow := newStore(t, srv.URL(), store.Options{Retention: 4})
	defer narrow.Close()
	mustAppend(t, wide, testItems("w", 10))
	ctx := context.Background()
	for _, c := range []struct {
		q     store.Query
		first feed.Cursor
		n     int
		gap   bool
	}{
		{store.Query{From: store.Newest, Count: 50}, 10, 4, false},
		{store.Query{From: store.After, Cursor: 0, Count: 50}, 10, 4, true},
		{store.Query{From: store.After, Cursor: 6, Count: 2}, 8, 2, false},
		{store.Query{From: store.Before, Cursor: 9, Count: 50}, 8, 2, false},
	} {
		p, err := narrow.Read(ctx, topic, c.q)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) != c.n || p.Items[0].Cursor != c.first || p.Gap != c.gap || p.Last != 10 {
			var got []feed.Cursor
			for _, it := range p.Items {
				got = append(got, it.Cursor)
			}
			t.Errorf("%+v: cursors %v gap %v last %v; want %d from %v, gap %v, last 10", c.q, got, p.Gap, p.Last, c.n, c.first, c.gap)
		}
	}
}
