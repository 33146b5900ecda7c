package ingest

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
)

// BenchmarkCallbackPush measures hub content deliveries stored end to end:
// each operation is one signed POST of a 10-entry Atom feed (ten new
// entries) to /callback/:id over loopback HTTP, verified, parsed and
// appended before the 200. Topics: 256, deliveries spread over them.
//
//	go test -run XXX -bench CallbackPush -benchtime 5s ./ingest
func BenchmarkCallbackPush(b *testing.B) {
	b.Run("redis", func(b *testing.B) { benchCallbackPush(b, openRedis(b)) })
	b.Run("embedded", func(b *testing.B) { benchCallbackPush(b, openEmbedded(b)) })
}

func benchCallbackPush(b *testing.B, st backend) {
	n := startNode(b, st, testOptions(), false)
	const topics = 256
	ctx := ctxT(b)
	type target struct{ url, secret string }
	targets := make([]target, topics)
	for i := range targets {
		u := store.Upstream{
			ID: randomToken(24), Topic: fmt.Sprintf("http://bench.example/%d", i), HubTopic: fmt.Sprintf("http://bench.example/%d", i),
			Hub: "http://hub.example/", Secret: randomToken(secretBytes), State: store.UpstreamActive, VerifiedAt: time.Now(),
		}
		if err := st.PutUpstream(ctx, u); err != nil {
			b.Fatal(err)
		}
		targets[i] = target{n.url + "/callback/" + u.ID, u.Secret}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var seq atomic.Int64
	var failures atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf bytes.Buffer
		for pb.Next() {
			k := seq.Add(1)
			tg := targets[k%topics]
			buf.Reset()
			buf.WriteString(`<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>bench</title><id>urn:bench</id><updated>2026-01-01T00:00:00Z</updated>`)
			for e := range 10 {
				id := strconv.FormatInt(k, 10) + "-" + strconv.Itoa(e)
				buf.WriteString(`<entry><id>urn:bench:` + id + `</id><title>Entry ` + id + `</title><updated>2026-01-01T00:00:00Z</updated><content type="html">&lt;p&gt;Some content for entry ` + id + ` long enough to look like a post.&lt;/p&gt;</content></entry>`)
			}
			buf.WriteString(`</feed>`)
			body := buf.Bytes()
			req, _ := http.NewRequest(http.MethodPost, tg.url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/atom+xml")
			req.Header.Set("X-Hub-Signature", Sign("sha256", tg.secret, body))
			resp, err := client.Do(req)
			if err != nil {
				failures.Add(1)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failures.Add(1)
			}
		}
	})
	b.StopTimer()
	if f := failures.Load(); f > 0 {
		b.Fatalf("%d deliveries failed", f)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
	b.ReportMetric(float64(10*b.N)/b.Elapsed().Seconds(), "items/s")
	// Every delivery stored its ten entries.
	total := 0
	for i := range topics {
		p, err := st.Read(ctx, fmt.Sprintf("http://bench.example/%d", i), store.Query{From: store.Newest, Count: 1})
		if err != nil {
			b.Fatal(err)
		}
		total += int(p.Last)
	}
	if total != 10*int(seq.Load()) {
		b.Fatalf("%d items stored for %d deliveries, want %d", total, seq.Load(), 10*seq.Load())
	}
}

// BenchmarkPoll1000 measures polling: each operation tracks 1000 new
// topics on a loopback feed server (10 entries each) and waits until every
// one has been fetched, parsed and stored, with the default concurrency
// (16 fetches at once). "refetch" pings the same 1000 topics again, which
// answer 304 to the stored ETag.
//
//	go test -run XXX -bench Poll1000 -benchtime 3x ./ingest
func BenchmarkPoll1000(b *testing.B) {
	b.Run("redis", func(b *testing.B) { benchPoll(b, openRedis(b)) })
	b.Run("embedded", func(b *testing.B) { benchPoll(b, openEmbedded(b)) })
}

func benchPoll(b *testing.B, st backend) {
	const topics = 1000
	var es []entry
	for i := range 10 {
		es = append(es, entry{ID: fmt.Sprintf("urn:poll:%d", i), Title: fmt.Sprintf("Entry %d", i), Content: "Some content long enough to look like a post."})
	}
	doc := atomDoc("poll", es)
	var hits atomic.Int64
	feeds := serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/atom+xml")
		_, _ = w.Write(doc)
	}))
	opts := testOptions()
	opts.Concurrency = DefaultConcurrency
	opts.PollInterval = 20 * time.Millisecond
	n := startNode(b, st, opts, true)
	ctx := ctxT(b)
	// waitHits polls (finely: this is what is measured) until the feed
	// server has seen want fetches.
	waitHits := func(want int64) {
		deadline := time.Now().Add(time.Minute)
		for hits.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("the feed server saw %d fetches after a minute, want %d", hits.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	var last []string
	round := 0
	b.Run("first", func(b *testing.B) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapBefore := ms.HeapAlloc
		b.ResetTimer()
		for range b.N {
			i := round
			round++
			last = last[:0]
			want := hits.Load() + topics
			for j := range topics {
				topic := fmt.Sprintf("%s/feed/%d/%d", feeds.URL, i, j)
				last = append(last, topic)
				if err := n.svc.Track(ctx, topic); err != nil {
					b.Fatal(err)
				}
			}
			waitHits(want)
		}
		b.StopTimer()
		b.ReportMetric(float64(topics*b.N)/b.Elapsed().Seconds(), "fetches/s")
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(int64(ms.HeapAlloc)-int64(heapBefore))/float64(topics*b.N), "heap-B/topic")
		testkit.Eventually(b, settle, "the last topic's 10 items", func() bool { return len(readAll(b, st, last[len(last)-1])) == 10 })
	})

	b.Run("refetch", func(b *testing.B) {
		for range b.N {
			want := hits.Load() + topics
			if err := n.svc.Ping(ctx, last); err != nil {
				b.Fatal(err)
			}
			waitHits(want)
		}
		b.ReportMetric(float64(topics*b.N)/b.Elapsed().Seconds(), "fetches/s")
	})
}
