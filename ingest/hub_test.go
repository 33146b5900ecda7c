package ingest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
)

// checkSubscribeRequest checks the request the subscriber sent the hub.
func checkSubscribeRequest(t *testing.T, h *testHub, n *node, self string) {
	t.Helper()
	reqs := h.requests("subscribe")
	if len(reqs) == 0 {
		t.Fatal("no subscribe request reached the hub")
	}
	r := reqs[0]
	if got := r.Get("hub.topic"); got != self {
		t.Fatalf("hub.topic = %q, want the self URL %q", got, self)
	}
	cb := r.Get("hub.callback")
	if !strings.HasPrefix(cb, n.url+"/callback/") || len(strings.TrimPrefix(cb, n.url+"/callback/")) < 32 {
		t.Fatalf("hub.callback = %q, want %s/callback/<unguessable id>", cb, n.url)
	}
	if s := r.Get("hub.secret"); len(s) < 32 || len(s) >= 200 {
		t.Fatalf("hub.secret has %d bytes, want a random secret under 200 bytes", len(s))
	}
	if r.Get("hub.lease_seconds") == "" {
		t.Fatal("no hub.lease_seconds in the subscribe request")
	}
}

// exerciseDeliveries checks signed, wrongly signed, unsigned and repeated
// deliveries of an active subscription to topic.
func exerciseDeliveries(t *testing.T, h *testHub, n *node, topic string, before int) {
	t.Helper()
	sub := h.onlyActive(t)
	count := func() int { return len(readAll(t, n.st, topic)) }
	doc := func(ids ...string) []byte {
		var es []entry
		for _, id := range ids {
			es = append(es, entry{ID: id, Title: "pushed " + id, Content: "pushed"})
		}
		return atomDoc("pushed", es)
	}
	// sha256-signed content is stored before the answer.
	if code := h.deliver(sub, doc("urn:push:1"), "sha256"); code != 200 {
		t.Fatalf("signed (sha256) delivery answered %d", code)
	}
	if got := count(); got != before+1 {
		t.Fatalf("after a sha256-signed delivery %d items, want %d", got, before+1)
	}
	// The same delivery twice stores once.
	if code := h.deliver(sub, doc("urn:push:1"), "sha256"); code != 200 {
		t.Fatalf("repeated delivery answered %d", code)
	}
	if got := count(); got != before+1 {
		t.Fatalf("a repeated delivery stored again: %d items", got)
	}
	// sha512 (and sha1, sha384) signatures are accepted.
	if code := h.deliver(sub, doc("urn:push:2", "urn:push:1"), "sha512"); code != 200 {
		t.Fatalf("signed (sha512) delivery answered %d", code)
	}
	if got := count(); got != before+2 {
		t.Fatalf("after a sha512-signed delivery %d items, want %d", got, before+2)
	}
	for i, m := range []string{"sha1", "sha384"} {
		if code := h.deliver(sub, doc(fmt.Sprintf("urn:push:%s", m)), m); code != 200 {
			t.Fatalf("%s-signed delivery answered %d", m, code)
		}
		if got := count(); got != before+3+i {
			t.Fatalf("after a %s-signed delivery %d items", m, got)
		}
	}
	// A wrong signature: 2xx, discarded.
	if code := h.deliver(sub, doc("urn:push:forged"), "bad"); code/100 != 2 {
		t.Fatalf("wrongly signed delivery answered %d, want 2xx", code)
	}
	// No signature: 403, discarded.
	if code := h.deliver(sub, doc("urn:push:unsigned"), ""); code != http.StatusForbidden {
		t.Fatalf("unsigned delivery answered %d, want 403", code)
	}
	if got := count(); got != before+4 {
		t.Fatalf("forged or unsigned content was stored: %d items, want %d", got, before+4)
	}
	for _, it := range readAll(t, n.st, topic) {
		if it.ID == "urn:push:forged" || it.ID == "urn:push:unsigned" {
			t.Fatalf("item %s stored", it.ID)
		}
	}
	// Unparseable content: 2xx, discarded, the status says why.
	if code := h.deliver(sub, []byte("<<<not a feed"), "sha256"); code/100 != 2 {
		t.Fatalf("unparseable delivery answered %d", code)
	}
	if st := topicState(t, n.st, topic).Status; !strings.Contains(st.HTTP, "discarded") {
		t.Fatalf("status after unparseable pushed content: %q", st.HTTP)
	}
	if got := count(); got != before+4 {
		t.Fatalf("unparseable content changed the items: %d", got)
	}
}

func TestHubByLinkHeader(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		h := newTestHub(t)
		f := newTestFeed("linked", 2)
		srv := serve(t, f)
		self := srv.URL + "/self-feed"
		f.header = []string{fmt.Sprintf(`<%s>; rel="hub"`, h.URL()), fmt.Sprintf(`<%s>; rel="self"`, self)}
		n := startNode(t, open(t), testOptions(), true)
		topic := srv.URL + "/feed"
		subscribe(t, n, topic)
		testkit.Eventually(t, settle, "the subscription to be verified", func() bool { return len(h.active()) == 1 })
		checkSubscribeRequest(t, h, n, self)
		if codes := h.verificationCodes("subscribe"); len(codes) != 1 || codes[0] != 200 {
			t.Fatalf("verification answers %v, want [200] with the challenge echoed", codes)
		}
		testkit.Eventually(t, settle, "the hubbed status", func() bool {
			return topicState(t, n.st, topic).Status.Period == 3600
		})
		if got := len(readAll(t, n.st, topic)); got != 2 {
			t.Fatalf("%d items from the first fetch, want 2", got)
		}
		exerciseDeliveries(t, h, n, topic, 2)
	})
}

func TestHubByHTMLLink(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		h := newTestHub(t)
		f := newTestFeed("page", 1)
		mux := http.NewServeMux()
		mux.Handle("/feed.atom", f)
		var pageHits atomic.Int64
		mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
			pageHits.Add(1)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!DOCTYPE html><html><head><title>A page</title>
<link rel="hub" href="%s">
<link rel="self" href="/feed.atom">
<link rel="alternate" type="application/atom+xml" href="/feed.atom">
</head><body><p>Hello</p></body></html>`, h.URL())
		})
		srv := serve(t, mux)
		n := startNode(t, open(t), testOptions(), true)
		topic := srv.URL + "/page"
		subscribe(t, n, topic)
		testkit.Eventually(t, settle, "the subscription to be verified", func() bool { return len(h.active()) == 1 })
		checkSubscribeRequest(t, h, n, srv.URL+"/feed.atom")
		testkit.Eventually(t, settle, "the alternate feed's entries", func() bool { return len(readAll(t, n.st, topic)) == 1 })
		testkit.Eventually(t, settle, "the fetch URL to become the page's alternate feed", func() bool {
			ist, _ := n.st.IngestState(ctxT(t), topic)
			return ist.FetchURL == srv.URL+"/feed.atom"
		})
		exerciseDeliveries(t, h, n, topic, 1)
	})
}

// TestLeaseRenewed: a hub granting a lease sees the subscription renewed a
// fifth of the lease before it ends (on the bubble's clock), with the same
// callback and secret.
func TestLeaseRenewed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		h := b.newHub()
		const lease = time.Hour
		h.lease = int(lease / time.Second)
		f := newTestFeed("lease", 1)
		topic := b.serve(f) + "/feed"
		f.header = []string{fmt.Sprintf(`<%s>; rel="hub"`, h.URL())}
		opts := testOptions()
		opts.PollInterval = time.Minute // Track wakes the scheduler at once
		n := b.startNode(openEmbedded(t), opts, true)
		subscribe(t, n, topic)
		synctest.Wait()
		if a := h.active(); len(a) != 1 || a[0].verified != 1 {
			t.Fatalf("verified subscriptions at the hub once the node went idle after Track: %+v, want one", a)
		}
		verified := h.active()[0].verifiedAt[0]
		renewAt := verified.Add(lease * 4 / 5)
		b.idleFor(renewAt.Add(-time.Millisecond).Sub(time.Now()))
		if a := h.active(); len(a) != 1 || a[0].verified != 1 {
			t.Fatalf("renewed at %s, before four fifths of the lease had passed", time.Since(verified))
		}
		b.idleFor(opts.PollInterval + time.Millisecond)
		a := h.active()
		if len(a) != 1 || a[0].verified != 2 {
			t.Fatalf("not renewed %s after the verification of a %s lease: %+v", time.Since(verified), lease, a)
		}
		reqs := h.requests("subscribe")
		if len(reqs) != 2 || reqs[0].Get("hub.callback") != reqs[1].Get("hub.callback") || reqs[0].Get("hub.secret") != reqs[1].Get("hub.secret") {
			t.Fatalf("renewal requests differ in callback or secret: %v", reqs)
		}
		if reqs[0].Get("hub.topic") != topic {
			t.Fatalf("hub.topic = %q, want the topic itself (no rel=self)", reqs[0].Get("hub.topic"))
		}
		if st := topicState(t, n.st, topic).Status; st.LastMaintenanceAt == 0 {
			t.Fatalf("status.lastMaintenanceAt not set after a renewal: %+v", st)
		}
	})
}

// TestRenewalAfterRestart: the renewal is due in the store, so a node that
// starts after the one that subscribed renews, on time.
func TestRenewalAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t)
		h := b.newHub()
		const lease = time.Hour
		h.lease = int(lease / time.Second)
		f := newTestFeed("restart", 1)
		topic := b.serve(f) + "/feed"
		f.header = []string{fmt.Sprintf(`<%s>; rel="hub"`, h.URL())}
		st := openEmbedded(t)

		// Both "processes" answer at the same public URL.
		var current atomic.Pointer[Service]
		mux := http.NewServeMux()
		mux.HandleFunc("/callback/{id}", func(w http.ResponseWriter, r *http.Request) { current.Load().Callback(w, r) })
		opts := testOptions()
		opts.PublicURL = b.serve(mux)
		opts.PollInterval = time.Minute // Track wakes the scheduler at once
		opts.Fetch.Dial = b.net.Dial
		start := func() (*Service, func()) {
			o := opts
			o.Registerer = prometheus.NewRegistry()
			svc, err := New(st, st, o)
			if err != nil {
				t.Fatal(err)
			}
			current.Store(svc)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			return svc, func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
				svc.Fetcher().Close()
			}
		}
		svc1, stop1 := start()
		if _, err := st.PutSubscription(ctxT(t), store.Subscription{Login: "a", Topic: topic}); err != nil {
			t.Fatal(err)
		}
		if err := svc1.Track(ctxT(t), topic); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if a := h.active(); len(a) != 1 {
			t.Fatalf("%d verified subscriptions once the first node went idle, want 1", len(a))
		}
		verified := h.active()[0].verifiedAt[0]
		stop1()
		_, stop2 := start()
		defer stop2()
		b.idleFor(verified.Add(lease * 4 / 5).Add(opts.PollInterval).Sub(time.Now()))
		if a := h.active(); len(a) != 1 || a[0].verified != 2 {
			t.Fatalf("not renewed by the restarted node %s after the verification of a %s lease: %+v", time.Since(verified), lease, a)
		}
	})
}

// TestUnsubscribeUpstream: when the topic is untracked, the subscriber
// unsubscribes at the hub and confirms the hub's verification.
func TestUnsubscribeUpstream(t *testing.T) {
	eachBackend(t, func(t *testing.T, open opener) {
		h := newTestHub(t)
		f := newTestFeed("unsub", 1)
		srv := serve(t, f)
		f.header = []string{fmt.Sprintf(`<%s>; rel="hub"`, h.URL())}
		n := startNode(t, open(t), testOptions(), true)
		topic := srv.URL + "/feed"
		subscribe(t, n, topic)
		sub := h.onlyActive(t)
		if err := n.svc.Untrack(ctxT(t), topic); err != nil {
			t.Fatalf("Untrack: %v", err)
		}
		testkit.Eventually(t, settle, "the unsubscription at the hub", func() bool { return len(h.active()) == 0 })
		if codes := h.verificationCodes("unsubscribe"); len(codes) != 1 || codes[0] != 200 {
			t.Fatalf("unsubscribe verification answers %v, want [200]", codes)
		}
		if ups, _ := n.st.TopicUpstreams(ctxT(t), topic); len(ups) != 0 {
			t.Fatalf("upstream records left after unsubscribing: %+v", ups)
		}
		// Late deliveries to the old callback are told to stop.
		if code := h.deliver(sub, atomDoc("late", nil), "sha256"); code != http.StatusGone {
			t.Fatalf("delivery after unsubscription answered %d, want 410", code)
		}
		// A subscribe verification for it is refused too.
		resp, err := http.Get(sub.callback + "?hub.mode=subscribe&hub.challenge=x&hub.topic=" + topic)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("verification for a dropped subscription answered %d, want 404", resp.StatusCode)
		}
	})
}

// TestAsyncVerificationAndDenial: a hub that verifies after answering 202;
// later it denies the subscription, which is recorded and the topic is
// polled again.
func TestAsyncVerificationAndDenial(t *testing.T) {
	h := newTestHub(t)
	h.async = true
	f := newTestFeed("denied", 1)
	srv := serve(t, f)
	f.header = []string{fmt.Sprintf(`<%s>; rel="hub"`, h.URL())}
	n := startNode(t, openEmbedded(t), testOptions(), true)
	topic := srv.URL + "/feed"
	subscribe(t, n, topic)
	sub := h.onlyActive(t)
	ctx := ctxT(t)
	ups, _ := n.st.TopicUpstreams(ctx, topic)
	if len(ups) != 1 || ups[0].State != store.UpstreamActive || ups[0].LeaseSeconds != 3600 {
		t.Fatalf("upstream after async verification: %+v", ups)
	}
	hits := f.hits.Load()
	resp, err := http.Get(sub.callback + "?hub.mode=denied&hub.reason=not+today&hub.topic=" + topic)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("denial answered %d", resp.StatusCode)
	}
	ups, _ = n.st.TopicUpstreams(ctx, topic)
	if len(ups) != 1 || ups[0].State != store.UpstreamDenied || !strings.Contains(ups[0].Reason, "not today") {
		t.Fatalf("upstream after denial: %+v", ups)
	}
	testkit.Eventually(t, settle, "a poll after the denial", func() bool { return f.hits.Load() > hits })
	testkit.Eventually(t, settle, "the unhubbed period", func() bool { return topicState(t, n.st, topic).Status.Period < 3600 })
}

// TestHubRefuses: a hub that answers 4xx leaves a failed record with the
// reason, and the topic is polled normally.
func TestHubRefuses(t *testing.T) {
	hub := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "topic not allowed here", http.StatusBadRequest)
	}))
	f := newTestFeed("refused", 1)
	srv := serve(t, f)
	f.header = []string{fmt.Sprintf(`<%s>; rel="hub"`, hub.URL)}
	n := startNode(t, openEmbedded(t), testOptions(), true)
	topic := srv.URL + "/feed"
	subscribe(t, n, topic)
	testkit.Eventually(t, settle, "the failed subscription", func() bool {
		ups, _ := n.st.TopicUpstreams(ctxT(t), topic)
		return len(ups) == 1 && ups[0].State == store.UpstreamFailed
	})
	ups, _ := n.st.TopicUpstreams(ctxT(t), topic)
	if !strings.Contains(ups[0].Reason, "400") || !strings.Contains(ups[0].Reason, "topic not allowed here") {
		t.Fatalf("reason = %q", ups[0].Reason)
	}
	testkit.Eventually(t, settle, "the status", func() bool { return topicState(t, n.st, topic).Status.Code == 200 })
	if p := topicState(t, n.st, topic).Status.Period; p >= 3600 {
		t.Fatalf("period %d: a topic whose hub refused must be polled normally", p)
	}
}

func TestSignatures(t *testing.T) {
	body := []byte("hello")
	for _, m := range []string{"sha1", "sha256", "sha384", "sha512"} {
		sig := Sign(m, "secret", body)
		if !strings.HasPrefix(sig, m+"=") || !ValidSignature("secret", sig, body) {
			t.Fatalf("%s: %q does not verify", m, sig)
		}
		if ValidSignature("other", sig, body) || ValidSignature("secret", sig, []byte("hellO")) {
			t.Fatalf("%s: a wrong secret or body verifies", m)
		}
		if !ValidSignature("secret", strings.ToUpper(m)+"="+strings.TrimPrefix(sig, m+"="), body) {
			t.Fatalf("%s: method names are case-insensitive", m)
		}
	}
	for _, bad := range []string{"", "sha256", "sha256=", "sha256=zz", "md5=" + strings.Repeat("0", 32), "sha256=" + strings.Repeat("0", 64)} {
		if ValidSignature("secret", bad, body) {
			t.Fatalf("%q verifies", bad)
		}
	}
}
