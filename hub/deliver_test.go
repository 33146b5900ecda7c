package hub

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mmcdole/gofeed"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/internal/memnet"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/store"
)

// linkRels parses the Link headers of a delivery into rel -> URL.
func linkRels(h http.Header) map[string]string {
	out := map[string]string{}
	for _, l := range ingest.ParseLinkHeader(h.Values("Link")) {
		for _, rel := range l.Rels {
			out[rel] = l.URL
		}
	}
	return out
}

func checkWebSubHeaders(t *testing.T, p post, wantType, secret string) {
	t.Helper()
	if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, wantType) {
		t.Errorf("Content-Type %q, want %s", ct, wantType)
	}
	rels := linkRels(p.Header)
	if rels["self"] != topic || rels["hub"] != testHubURL {
		t.Errorf("Link headers %q: want rel=self %s and rel=hub %s", p.Header.Values("Link"), topic, testHubURL)
	}
	if got := p.Header.Get(HeaderTopic); got != topic {
		t.Errorf("%s %q, want %s", HeaderTopic, got, topic)
	}
	sig := p.Header.Get("X-Hub-Signature")
	switch {
	case secret == "" && sig != "":
		t.Errorf("unsigned subscription got X-Hub-Signature %q", sig)
	case secret != "" && sig != Sign(SignSHA256, secret, p.Body):
		t.Errorf("X-Hub-Signature %q does not sign the body with the secret", sig)
	}
}

func TestDeliveryJSONAndAtom(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		js, atom := e.subscriber(), e.subscriber()
		ctx := ctxT(t)
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", js.url("/cb"), "format", "json", "hub.secret", "k3y")); err != nil {
			t.Fatal(err)
		}
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", atom.url("/cb"))); err != nil {
			t.Fatal(err)
		}
		items := e.publish(topic, 3)

		pj := js.next(5 * time.Second)
		checkWebSubHeaders(t, pj, "application/json", "k3y")
		var n struct {
			Status feed.Status `json:"status"`
			Items  []feed.Item `json:"items"`
		}
		if err := json.Unmarshal(pj.Body, &n); err != nil {
			t.Fatal(err)
		}
		if n.Status.Feed != topic || n.Status.Cursor != items[2].Cursor || n.Status.Gap || len(n.Items) != 3 ||
			n.Items[0].ID != items[2].ID || n.Items[2].ID != items[0].ID || n.Items[0].Title != items[2].Title {
			t.Errorf("JSON delivery %s", pj.Body)
		}
		if pj.Header.Get(HeaderCursor) != items[2].Cursor.String() || pj.Header.Get(HeaderRedelivery) != "" ||
			pj.Header.Get(HeaderRetried) != "" || pj.Header.Get(HeaderCallback) != js.url("/cb") {
			t.Errorf("feedgate headers %v", pj.Header)
		}

		pa := atom.next(5 * time.Second)
		checkWebSubHeaders(t, pa, "application/atom+xml", "")
		f, err := gofeed.NewParser().ParseString(string(pa.Body))
		if err != nil {
			t.Fatalf("Atom delivery does not parse: %v\n%s", err, pa.Body)
		}
		if f.FeedType != "atom" || len(f.Items) != 3 || f.Items[0].Title != items[2].Title {
			t.Errorf("Atom delivery: type %s, %d entries\n%s", f.FeedType, len(f.Items), pa.Body)
		}
		if !bytes.HasPrefix(bytes.TrimSpace(pa.Body), []byte("<?xml")) || !bytes.HasSuffix(bytes.TrimSpace(pa.Body), []byte("</feed>")) {
			t.Errorf("Atom delivery is not a complete document:\n%s", pa.Body)
		}

		// The next batch carries only the new items.
		more := e.publish(topic, 1)
		if got := js.next(5 * time.Second).cursors(t); len(got) != 1 || got[0] != more[0].Cursor {
			t.Fatalf("second delivery cursors %v, want [%v]", got, more[0].Cursor)
		}
		atom.next(5 * time.Second)
		js.none(quiet)
	})
}

// TestRetryUntilSuccess: a failing callback is retried with back-off, on
// the policy's schedule (the bubble's clock), until it answers 2xx.
func TestRetryUntilSuccess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		retry := fastOptions().Retry
		p := e.principal("ann")
		sub := e.subscriber()
		sub.setAnswer(func(n int, _ *http.Request) int {
			if n <= 2 {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
		ctx := ctxT(t)
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "format", "json")); err != nil {
			t.Fatal(err)
		}
		items := e.publish(topic, 2)
		var posts []post
		for range 3 {
			posts = append(posts, sub.next(5*time.Second))
		}
		for i, p := range posts {
			if got := p.cursors(t); len(got) != 2 || got[0] != items[1].Cursor {
				t.Errorf("attempt %d delivered %v", i+1, got)
			}
			// The first attempt carries no retry marker; retry n says n.
			want := ""
			if i > 0 {
				want = strconv.Itoa(i)
			}
			if got := p.Header.Get(HeaderRetried); got != want {
				t.Errorf("attempt %d: %s %q, want %q", i+1, HeaderRetried, got, want)
			}
		}
		if posts[2].Status != 200 {
			t.Fatalf("third attempt answered %d", posts[2].Status)
		}
		// Retry n waits First × Multiplier^(n-1) ± Jitter, found by a poll.
		for n := 1; n <= 2; n++ {
			wait := time.Duration(float64(retry.First) * math.Pow(retry.Multiplier, float64(n-1)))
			lo := time.Duration(float64(wait) * (1 - retry.Jitter))
			hi := time.Duration(float64(wait)*(1+retry.Jitter)) + fastOptions().PollInterval
			if gap := posts[n].At.Sub(posts[n-1].At); gap < lo || gap > hi {
				t.Errorf("retry %d came %s after the previous attempt, want %s to %s", n, gap, lo, hi)
			}
		}
		sub.none(quiet)
		d, err := e.hub.dlv.Delivery(ctx, store.DeliveryKey{Login: "ann", Topic: topic, Callback: sub.url("/cb")})
		if err != nil {
			t.Fatal(err)
		}
		pr := d.Progress
		if pr.Delivered != items[1].Cursor || pr.Attempts != 0 || pr.Failed != 2 || pr.Succeeded != 1 || !strings.Contains(pr.LastError, "500") {
			t.Fatalf("progress %+v", pr)
		}
		for _, c := range []struct {
			metric string
			want   float64
		}{
			{`feedgate_hub_delivery_attempts_total`, 3},
			{`feedgate_hub_deliveries_succeeded_total`, 1},
			{`feedgate_hub_deliveries_failed_total{reason="http_5xx"}`, 2},
			{`feedgate_hub_delivered_items_total`, 2},
			{`feedgate_hub_delivery_retry_age_seconds_count`, 2},
			{`feedgate_hub_verifications_total{mode="subscribe",result="ok"}`, 1},
		} {
			if got := metricValue(t, e.reg, c.metric); got != c.want {
				t.Errorf("%s = %v, want %v", c.metric, got, c.want)
			}
		}
	})
}

// metricValue reads one sample from the registry's text exposition.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found in\n%s", name, buf.String())
	return 0
}

func TestGoneRemovesSubscription(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		gone, other := e.subscriber(), e.subscriber()
		gone.setAnswer(func(int, *http.Request) int { return http.StatusGone })
		ctx := ctxT(t)
		for _, s := range []*subscriber{gone, other} {
			if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", s.url("/cb"))); err != nil {
				t.Fatal(err)
			}
		}
		e.publish(topic, 1)
		gone.next(5 * time.Second)
		other.next(5 * time.Second)
		testkit.Eventually(t, 5*time.Second, "the removal", func() bool {
			list, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
			return len(list) == 1 && list[0].Subscription.Endpoint == other.url("/cb")
		})
		e.publish(topic, 1)
		other.next(5 * time.Second)
		gone.none(quiet)
	})
}

func TestHangingCallbackDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, func(o *Options) { o.DeliveryTimeout = 20 * time.Second })
		p := e.principal("ann")
		hang, healthy := e.subscriber(), e.subscriber()
		unblock := make(chan struct{})
		var hung atomic.Int32
		hang.setAnswer(func(_ int, r *http.Request) int {
			hung.Add(1)
			select {
			case <-unblock:
			case <-r.Context().Done():
			}
			return 200
		})
		defer close(unblock)
		ctx := ctxT(t)
		// The hanging subscriber follows many topics, so it has more due jobs
		// than PerCallback slots.
		for i := range 10 {
			tp := fmt.Sprintf("%s?n=%d", topic, i)
			if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", tp, "hub.callback", hang.url("/cb"))); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", tp, "hub.callback", healthy.url("/cb"), "format", "json")); err != nil {
					t.Fatal(err)
				}
			}
		}
		for round := range 5 {
			for i := range 10 {
				e.publish(fmt.Sprintf("%s?n=%d", topic, i), 1)
			}
			start := time.Now()
			healthy.next(2 * time.Second)
			if d := time.Since(start); d > time.Second {
				t.Errorf("round %d: the healthy callback waited %s", round, d)
			}
		}
		if n := hung.Load(); n > int32(DefaultPerCallback) {
			t.Errorf("%d POSTs hang at once at one callback; at most %d allowed", n, DefaultPerCallback)
		}
	})
}

func TestLeaseExpiryRemovesSubscription(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		sub := e.subscriber()
		ctx := ctxT(t)
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "hub.lease_seconds", "1")); err != nil {
			t.Fatal(err)
		}
		e.publish(topic, 1)
		sub.next(5 * time.Second)
		testkit.Eventually(t, 5*time.Second, "the lease to expire", func() bool {
			list, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
			return len(list) == 0
		})
		e.publish(topic, 1)
		sub.none(quiet)
		if tracked, _ := e.st.TrackedTopics(ctx); len(tracked) != 0 {
			t.Errorf("topic still tracked after its last subscription expired: %v", tracked)
		}
	})
}

func TestTrimmedItemsRecordAGap(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := startEnv(t, teststore.Embedded(t, store.Options{Retention: 5}), memnet.New(), func(o *Options) {
			o.Retry.First, o.Retry.Max = 300*time.Millisecond, 300*time.Millisecond
		})
		p := e.principal("ann")
		sub := e.subscriber()
		var down atomic.Bool
		down.Store(true)
		sub.setAnswer(func(int, *http.Request) int {
			if down.Load() {
				return 503
			}
			return 200
		})
		ctx := ctxT(t)
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "format", "json")); err != nil {
			t.Fatal(err)
		}
		first := e.publish(topic, 2)
		sub.next(5 * time.Second) // fails
		items := e.publish(topic, 20)
		down.Store(false)
		var got post
		for {
			got = sub.next(5 * time.Second)
			if got.Status == 200 {
				break
			}
		}
		cs := got.cursors(t)
		if got.Header.Get(HeaderGap) != "true" || len(cs) != 5 || cs[0] != items[19].Cursor || cs[4] != items[15].Cursor {
			t.Fatalf("delivery after trimming: gap header %q, cursors %v", got.Header.Get(HeaderGap), cs)
		}
		if !bytes.Contains(got.Body, []byte(`"gap":true`)) {
			t.Errorf("status.gap not set: %s", got.Body)
		}
		var d store.Delivery
		testkit.Eventually(t, 5*time.Second, "the recorded success", func() bool {
			d, _ = e.hub.dlv.Delivery(ctx, store.DeliveryKey{Login: "ann", Topic: topic, Callback: sub.url("/cb")})
			return d.Progress.Succeeded == 1
		})
		if d.Progress.Gaps != 1 || d.Progress.Trimmed != int64(items[15].Cursor-first[0].Cursor) || d.Progress.Delivered != items[19].Cursor {
			t.Fatalf("progress %+v; want one gap of %d items", d.Progress, items[15].Cursor-first[0].Cursor)
		}
	})
}

func TestGiveUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t, func(o *Options) { o.Retry.MaxAttempts = 3 })
		p := e.principal("ann")
		sub := e.subscriber()
		var fail atomic.Bool
		fail.Store(true)
		sub.setAnswer(func(int, *http.Request) int {
			if fail.Load() {
				return 500
			}
			return 200
		})
		ctx := ctxT(t)
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "format", "json")); err != nil {
			t.Fatal(err)
		}
		e.publish(topic, 2)
		for range 3 {
			sub.next(5 * time.Second)
		}
		sub.none(quiet)
		fail.Store(false)
		later := e.publish(topic, 1)
		if got := sub.next(5 * time.Second).cursors(t); len(got) != 1 || got[0] != later[0].Cursor {
			t.Fatalf("after giving up, delivered %v; want only %v", got, later[0].Cursor)
		}
		list, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
		h := list[0].Subscription.Delivery
		if h.Dropped != 2 || !strings.Contains(h.LastError, "gave up on 2 items after 3 attempts") {
			t.Fatalf("health %+v", h)
		}
	})
}

// TestSweepDeliversWhatNobodyAnnounced: items appended while no node ran
// delivery (a crash right after the append) are found by the start sweep.
func TestSweepDeliversWhatNobodyAnnounced(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		open := func() store.Store {
			st, err := embeddedOpen(dir)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		st := open()
		mn := memnet.New()
		e := startEnv(t, st, mn)
		p := e.principal("ann")
		sub := e.subscriber()
		ctx := ctxT(t)
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "format", "json")); err != nil {
			t.Fatal(err)
		}
		e.stop()
		items := e.publish(topic, 4)
		sub.none(quiet)
		_ = st.Close()

		startEnv(t, open(), mn)
		got := sub.next(5 * time.Second).cursors(t)
		if len(got) != 4 || got[0] != items[3].Cursor {
			t.Fatalf("after restart delivered %v", got)
		}
	})
}

// TestTwoNodesDeliverEachItemOnce runs two hubs on one Redis: every item
// reaches every callback exactly once, whichever node delivers it.
func TestTwoNodesDeliverEachItemOnce(t *testing.T) {
	t.Parallel()
	srv := redisStart(t)
	a := newEnvOn(t, teststore.Redis(t, srv, store.Options{}))
	b := newEnvOn(t, teststore.Redis(t, srv, store.Options{}))
	p := a.principal("ann")
	ctx := ctxT(t)
	const callbacks, items = 10, 30
	seen := map[string]int{} // "callback/cursor" -> receipts
	subs := make([]*subscriber, callbacks)
	for i := range subs {
		subs[i] = newSubscriber(t)
		node := a
		if i%2 == 1 {
			node = b
		}
		if err := node.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", subs[i].url("/cb"), "format", "json")); err != nil {
			t.Fatal(err)
		}
	}
	var last feed.Cursor
	for range items {
		last = a.publish(topic, 1)[0].Cursor
	}
	for i, s := range subs {
		got := 0
		for got < items {
			for _, c := range s.next(10 * time.Second).cursors(t) {
				seen[fmt.Sprintf("%d/%d", i, c)]++
				got++
			}
		}
	}
	// Stopped, the nodes have finished every POST they started; each
	// subscription's progress says the newest item was delivered, so no
	// node would deliver anything again. Whatever arrived since is counted.
	a.stop()
	b.stop()
	for i, s := range subs {
		d, err := a.hub.dlv.Delivery(ctx, store.DeliveryKey{Login: "ann", Topic: topic, Callback: s.url("/cb")})
		if err != nil || d.Progress.Delivered != last {
			t.Errorf("callback %d: delivered up to %v (%v), want the newest item %v", i, d.Progress.Delivered, err, last)
		}
	drain:
		for {
			select {
			case p := <-s.postCh:
				for _, c := range p.cursors(t) {
					seen[fmt.Sprintf("%d/%d", i, c)]++
				}
			default:
				break drain
			}
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	if len(seen) != callbacks*items {
		t.Fatalf("%d distinct deliveries, want %d", len(seen), callbacks*items)
	}
}

// TestSignatureMethods signs deliveries with each configured method; the
// subscriber checks the HMAC with the method the header names.
func TestSignatureMethods(t *testing.T) {
	t.Parallel()
	news := map[string]func() hash.Hash{"sha1": sha1.New, "sha256": sha256.New, "sha384": sha512.New384, "sha512": sha512.New}
	for _, method := range SignatureMethods {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *Options) { o.Signature = method })
			p := e.principal("ann")
			sub := newSubscriber(t)
			if err := e.hub.Subscribe(ctxT(t), p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "hub.secret", "s3cret")); err != nil {
				t.Fatal(err)
			}
			e.publish(topic, 1)
			got := sub.next(5 * time.Second)
			mac := hmac.New(news[method], []byte("s3cret"))
			mac.Write(got.Body)
			if want := method + "=" + hex.EncodeToString(mac.Sum(nil)); got.Header.Get("X-Hub-Signature") != want {
				t.Fatalf("X-Hub-Signature %q, want %q", got.Header.Get("X-Hub-Signature"), want)
			}
		})
	}
}

// TestSyncKeepsATopicBeingActivated: a callback subscription is listened to
// before its delivery record is stored (so that nothing appended in between
// is skipped); the periodic sync of the listened topics with the records
// must not drop it in that window, or the topic's next appends are not
// announced to the hub and wait for the sweep.
func TestSyncKeepsATopicBeingActivated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.TopicRefresh, o.SweepInterval = time.Hour, time.Hour })
	ctx := ctxT(t)
	testkit.Eventually(t, 10*time.Second, "the hub's delivery listener", func() bool { return e.hub.liveHub.Load() != nil })
	h := e.hub.liveHub.Load()
	listening := func() bool {
		e.hub.sched.mu.Lock()
		defer e.hub.sched.mu.Unlock()
		return e.hub.sched.topics[topic]
	}
	unpin := e.hub.listenTopic(ctx, topic)
	if err := e.hub.syncTopics(ctx, h); err != nil {
		t.Fatal(err)
	}
	if !listening() {
		t.Fatal("a sync dropped the topic of a subscription being activated")
	}
	unpin()
	if err := e.hub.syncTopics(ctx, h); err != nil {
		t.Fatal(err)
	}
	if listening() {
		t.Fatal("a topic without delivery records, no longer being activated, is still listened to")
	}
}
