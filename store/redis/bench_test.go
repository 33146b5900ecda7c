package redisstore_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

// benchItem is an entry of a typical size (about 1 KiB of content).
func benchItem(i int) feed.Item {
	it := fullItem()
	it.ID = fmt.Sprintf("https://example.com/posts/%d", i)
	it.Hash = fmt.Sprintf("%x", i)
	it.Content = strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit. ", 18)
	return it
}

// BenchmarkAppend stores one new item per operation.
func BenchmarkAppend(b *testing.B) {
	srv := redistest.Start(b)
	s := newStore(b, srv.URL(), store.Options{})
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Append(ctx, topic, []feed.Item{benchItem(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// readSetup starts Redis with a topic of 100 items.
func readSetup(b *testing.B) (*redistest.Server, *redisstore.Store) {
	b.Helper()
	srv := redistest.Start(b)
	s := newStore(b, srv.URL(), store.Options{})
	b.Cleanup(func() { s.Close() })
	its := make([]feed.Item, 100)
	for i := range its {
		its[i] = benchItem(i)
	}
	if _, err := s.Append(context.Background(), topic, its); err != nil {
		b.Fatal(err)
	}
	err := s.UpdateTopic(context.Background(), topic, func(ts *store.TopicState) error {
		ts.Meta = feed.Meta{Title: "Example feed", Subtitle: "All the news", ID: "urn:example", Updated: 1700000000,
			PermalinkURL: "https://example.com/", Language: "en",
			StandardLinks: &feed.Links{Alternate: []feed.Link{{Href: "https://example.com/", Type: "text/html"}},
				Self: []feed.Link{{Href: topic, Type: "application/atom+xml"}}}}
		ts.Status = feed.Status{Code: 200, HTTP: "200 OK", Feed: topic, Period: 900, LastFetch: 1700000000, NextFetch: 1700000900}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return srv, s
}

// BenchmarkReadNewest10 is the retrieve path: the newest 10 items with the
// topic's state, decoded, from many goroutines.
func BenchmarkReadNewest10(b *testing.B) {
	_, s := readSetup(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(25) // 50 concurrent readers on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := s.Read(ctx, topic, store.Query{From: store.Newest, Count: 10})
			if err != nil || len(p.Items) != 10 {
				b.Errorf("Read: %d items, %v", len(p.Items), err)
				return
			}
		}
	})
}

// BenchmarkRawXRevRange10 is the floor to compare BenchmarkReadNewest10
// with: a bare XREVRANGE COUNT 10 on the same data through the same
// client, nothing decoded.
func BenchmarkRawXRevRange10(b *testing.B) {
	_, s := readSetup(b)
	rdb := s.Client()
	key := redisstore.ItemsKey(s, topic)
	ctx := context.Background()
	var bad atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(25)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			msgs, err := rdb.XRevRangeN(ctx, key, "+", "-", 10).Result()
			if err != nil || len(msgs) != 10 {
				bad.Add(1)
			}
		}
	})
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d raw reads failed", n)
	}
}

// BenchmarkReadVsRaw interleaves the two reads above in every goroutine,
// so both see the same load on a shared machine, and reports how fast Read
// is relative to the bare XREVRANGE (throughput ratio; 1 = as fast).
func BenchmarkReadVsRaw(b *testing.B) {
	_, s := readSetup(b)
	rdb := s.Client()
	key := redisstore.ItemsKey(s, topic)
	ctx := context.Background()
	var readNs, rawNs, bad atomic.Int64
	b.SetParallelism(25)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t0 := time.Now()
			p, err := s.Read(ctx, topic, store.Query{From: store.Newest, Count: 10})
			t1 := time.Now()
			msgs, rerr := rdb.XRevRangeN(ctx, key, "+", "-", 10).Result()
			t2 := time.Now()
			if err != nil || rerr != nil || len(p.Items) != 10 || len(msgs) != 10 {
				bad.Add(1)
			}
			readNs.Add(int64(t1.Sub(t0)))
			rawNs.Add(int64(t2.Sub(t1)))
		}
	})
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d reads failed", n)
	}
	b.ReportMetric(float64(rawNs.Load())/float64(readNs.Load()), "read/raw")
}
