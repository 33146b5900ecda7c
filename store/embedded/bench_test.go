package embedded

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

func benchStore(b *testing.B, group int) *Store {
	b.Helper()
	old := maxGroup
	maxGroup = group
	defer func() { maxGroup = old }()
	s, err := Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkAppend appends one new item per call from one goroutine: the
// latency of a durable append (one fsync'd transaction each).
func BenchmarkAppend(b *testing.B) {
	s := benchStore(b, maxGroup)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		if _, err := s.Append(ctx, "https://example.com/", testItems(fmt.Sprintf("i%d-", i), 1)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkAppendParallel appends one new item per call from many
// goroutines to a few topics, with and without group commit.
func BenchmarkAppendParallel(b *testing.B) {
	for _, group := range []int{1, 256} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			s := benchStore(b, group)
			ctx := context.Background()
			var n atomic.Int64
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					topic := fmt.Sprintf("https://example.com/%d", i%4)
					if _, err := s.Append(ctx, topic, testItems(fmt.Sprintf("i%d-", i), 1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAppendDuplicates re-appends a feed of 20 entries already stored:
// the common case of a poll that finds nothing new.
func BenchmarkAppendDuplicates(b *testing.B) {
	s := benchStore(b, maxGroup)
	ctx := context.Background()
	its := testItems("e", 20)
	if _, err := s.Append(ctx, "https://example.com/", its); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if got, err := s.Append(ctx, "https://example.com/", its); err != nil || len(got) != 0 {
			b.Fatal(err, len(got))
		}
	}
}

// BenchmarkReadNewest10 reads the newest 10 items (and the topic's state)
// of a topic holding 1000, from parallel readers, as retrieve count=10 does.
func BenchmarkReadNewest10(b *testing.B) {
	s := benchStore(b, maxGroup)
	ctx := context.Background()
	for i := range 10 {
		if _, err := s.Append(ctx, "https://example.com/", testItems(fmt.Sprintf("i%d-", i), 100)); err != nil {
			b.Fatal(err)
		}
	}
	err := s.UpdateTopic(ctx, "https://example.com/", func(ts *store.TopicState) error {
		ts.Meta = feed.Meta{Title: "Example feed", Subtitle: "All the news", ID: "urn:example", Updated: 1700000000,
			PermalinkURL: "https://example.com/", StandardLinks: &feed.Links{
				Alternate: []feed.Link{{Href: "https://example.com/", Type: "text/html"}},
				Self:      []feed.Link{{Href: "https://example.com/feed.xml", Type: "application/atom+xml"}},
				Hub:       []feed.Link{{Href: "https://hub.example.com/"}},
			}}
		ts.Status = feed.Status{Code: 200, HTTP: "200 OK", Feed: "https://example.com/", Period: 900, LastFetch: 1700000000}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := s.Read(ctx, "https://example.com/", store.Query{From: store.Newest, Count: 10})
			if err != nil || len(p.Items) != 10 {
				b.Error(err, len(p.Items))
				return
			}
		}
	})
}

// BenchmarkReadAfter reads 10 items after a cursor in the middle.
func BenchmarkReadAfter(b *testing.B) {
	s := benchStore(b, maxGroup)
	ctx := context.Background()
	for i := range 10 {
		if _, err := s.Append(ctx, "https://example.com/", testItems(fmt.Sprintf("i%d-", i), 100)); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		p, err := s.Read(ctx, "https://example.com/", store.Query{From: store.After, Cursor: 500, Count: 10})
		if err != nil || len(p.Items) != 10 {
			b.Fatal(err, len(p.Items))
		}
	}
}
