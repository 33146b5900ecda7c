package hub

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/internal/testkit"
)

const topic = "http://93.184.216.34/feed.xml"

func TestSyncVerification(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.principal("ann")
	sub := newSubscriber(t)
	ctx := ctxT(t)
	cb := sub.url("/cb?user=7&x=a%20b")
	if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", cb)); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	gets := sub.verifications()
	if len(gets) != 1 {
		t.Fatalf("%d verification requests, want 1", len(gets))
	}
	q := gets[0]
	if q.Get("hub.mode") != "subscribe" || q.Get("hub.topic") != topic {
		t.Errorf("verification query %v", q)
	}
	if got, want := q.Get("hub.lease_seconds"), "864000"; got != want {
		t.Errorf("hub.lease_seconds = %q, want the default %q", got, want)
	}
	if len(q.Get("hub.challenge")) < 32 {
		t.Errorf("hub.challenge %q is too short to be unguessable", q.Get("hub.challenge"))
	}
	// The callback's own query string is kept as it was written.
	if raw := sub.rawQueries()[0]; !strings.HasPrefix(raw, "user=7&x=a%20b&") {
		t.Errorf("verification query %q does not start with the callback's own query", raw)
	}
	if q.Get("user") != "7" || q.Get("x") != "a b" {
		t.Errorf("callback parameters lost: %v", q)
	}

	// A second subscription gets another challenge.
	if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/other"))); err != nil {
		t.Fatal(err)
	}
	if c2 := sub.verifications()[1].Get("hub.challenge"); c2 == q.Get("hub.challenge") {
		t.Error("two verifications used the same challenge")
	}

	list, err := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %v, %v; want 2 subscriptions", list, err)
	}
	l := list[0].Subscription
	if l.Endpoint != cb || l.Format != "atom" || l.Feed.URL != topic || l.Delivery == nil {
		t.Errorf("listed %+v", l)
	}
	if exp := time.Unix(l.ExpiresAt, 0); exp.Before(time.Now().Add(10*24*time.Hour-time.Minute)) || exp.After(time.Now().Add(10*24*time.Hour+time.Minute)) {
		t.Errorf("expiresAt %v is not ten days away", exp)
	}
}

func TestLeaseClamped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.LeaseMin, o.LeaseMax = time.Minute, time.Hour })
	p := e.principal("ann")
	sub := newSubscriber(t)
	ctx := ctxT(t)
	for _, c := range []struct{ ask, want string }{{"5", "60"}, {"999999999", "3600"}, {"120", "120"}} {
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "hub.lease_seconds", c.ask)); err != nil {
			t.Fatal(err)
		}
		gets := sub.verifications()
		if got := gets[len(gets)-1].Get("hub.lease_seconds"); got != c.want {
			t.Errorf("hub.lease_seconds=%s verified as %s, want %s", c.ask, got, c.want)
		}
	}
	list, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
	if len(list) != 1 {
		t.Fatalf("renewals made %d subscriptions, want 1", len(list))
	}
}

func TestVerificationFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.principal("ann")
	ctx := ctxT(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL + "/cb"
	closed.Close()
	cases := []struct {
		name   string
		verify func(url.Values) (int, string)
		cb     string
		want   string
	}{
		{"wrong echo", func(q url.Values) (int, string) { return 200, "nope" }, "", "not the hub.challenge"},
		{"empty echo", func(q url.Values) (int, string) { return 200, "" }, "", "empty body"},
		{"not found", func(q url.Values) (int, string) { return 404, q.Get("hub.challenge") }, "", "404"},
		{"unreachable", nil, closedURL, "GET to the callback failed"},
	}
	for _, c := range cases {
		sub := newSubscriber(t)
		sub.setVerify(c.verify)
		cb := c.cb
		if cb == "" {
			cb = sub.url("/cb")
		}
		err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", cb))
		if apiCode(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Subscribe = %v; want 422 mentioning %q", c.name, err, c.want)
		}
	}
	list, err := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
	if err != nil || len(list) != 0 {
		t.Fatalf("failed verifications left subscriptions: %v %v", list, err)
	}
	if topics, _ := e.hub.dlv.DeliveryTopics(ctx); len(topics) != 0 {
		t.Fatalf("failed verifications left delivery records for %v", topics)
	}
}

func TestCallbackAddressGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.Fetcher = fetch.New(fetch.Options{}) })
	p := e.principal("ann")
	sub := newSubscriber(t)
	err := e.hub.Subscribe(ctxT(t), p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb")))
	if apiCode(err) != http.StatusUnprocessableEntity || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Subscribe with a loopback callback = %v; want 422 naming the refused address", err)
	}
	if len(sub.verifications()) != 0 {
		t.Fatal("a refused callback was contacted")
	}
}

func TestCallbacksUnsupportedWithoutFetcher(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := New(e.st, e.ing, Options{})
	if h.CallbacksEnabled() {
		t.Fatal("callbacks enabled without a fetcher and a hub URL")
	}
	err := h.Subscribe(ctxT(t), e.principal("ann"), request(t, "hub.topic", topic, "hub.callback", "http://127.0.0.1:9/cb"))
	if err != ErrCallbacksUnsupported {
		t.Fatalf("Subscribe = %v, want ErrCallbacksUnsupported", err)
	}
}

func TestAsyncVerification(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		sub := e.subscriber()
		release := make(chan struct{})
		sub.setVerify(func(q url.Values) (int, string) {
			<-release
			return 200, q.Get("hub.challenge")
		})
		ctx := ctxT(t)
		start := time.Now()
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "hub.verify", "async", "format", "json")); err != nil {
			t.Fatalf("async Subscribe: %v", err)
		}
		if time.Since(start) > time.Second {
			t.Fatal("async Subscribe waited for the verification")
		}
		list, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
		if len(list) != 0 {
			t.Fatal("subscription active before its verification")
		}
		close(release)
		testkit.Eventually(t, 5*time.Second, "the async subscription", func() bool {
			list, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
			return len(list) == 1
		})
		items := e.publish(topic, 2)
		got := sub.next(5 * time.Second).cursors(t)
		if len(got) != 2 || got[0] != items[1].Cursor || got[1] != items[0].Cursor {
			t.Fatalf("delivered cursors %v, want %v and %v newest first", got, items[1].Cursor, items[0].Cursor)
		}

		// An async verification that fails leaves nothing behind.
		bad := e.subscriber()
		bad.setVerify(func(url.Values) (int, string) { return 200, "wrong" })
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", bad.url("/cb"), "hub.verify", "async")); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 5*time.Second, "the failing verification", func() bool { return len(bad.verifications()) == 1 })
		synctest.Wait() // the hub has done all it does with the answer
		list, _ = e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
		if len(list) != 1 {
			t.Fatalf("a failed async verification changed the subscriptions: %d", len(list))
		}
	})
}

func TestUnsubscribeVerifiedStopsDeliveries(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		sub := e.subscriber()
		ctx := ctxT(t)
		req := request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "format", "json")
		if err := e.hub.Subscribe(ctx, p, req); err != nil {
			t.Fatal(err)
		}
		e.publish(topic, 1)
		sub.next(5 * time.Second)

		// The subscriber does not confirm: 422, and deliveries go on.
		sub.setVerify(func(q url.Values) (int, string) {
			if q.Get("hub.mode") == "unsubscribe" {
				return 404, "not me"
			}
			return 200, q.Get("hub.challenge")
		})
		if err := e.hub.Unsubscribe(ctx, p, req); apiCode(err) != http.StatusUnprocessableEntity {
			t.Fatalf("unconfirmed Unsubscribe = %v, want 422", err)
		}
		e.publish(topic, 1)
		sub.next(5 * time.Second)

		sub.setVerify(nil)
		if err := e.hub.Unsubscribe(ctx, p, req); err != nil {
			t.Fatalf("Unsubscribe: %v", err)
		}
		gets := sub.verifications()
		last := gets[len(gets)-1]
		if last.Get("hub.mode") != "unsubscribe" || last.Get("hub.topic") != topic || last.Get("hub.challenge") == "" {
			t.Errorf("unsubscribe verification %v", last)
		}
		e.publish(topic, 3)
		sub.none(quiet)
		list, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
		if len(list) != 0 {
			t.Fatalf("still listed after unsubscribe: %+v", list)
		}
		if err := e.hub.Unsubscribe(ctx, p, req); apiCode(err) != http.StatusNotFound {
			t.Fatalf("second Unsubscribe = %v, want 404", err)
		}
	})
}

func TestListHealthNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.principal("ann")
	sub := newSubscriber(t)
	ctx := ctxT(t)
	const secret = "very-secret-value-123"
	if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", sub.url("/cb"), "hub.secret", secret, "format", "json")); err != nil {
		t.Fatal(err)
	}
	// A retrieve-only subscription lists without delivery health.
	if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", "http://93.184.216.34/other.xml")); err != nil {
		t.Fatal(err)
	}
	sub.setAnswer(func(n int, _ *http.Request) int {
		if n == 1 {
			return 500
		}
		return 200
	})
	e.publish(topic, 3)
	sub.next(5 * time.Second)
	sub.next(5 * time.Second)
	var h *DeliveryHealth
	testkit.Eventually(t, 5*time.Second, "health after the retry", func() bool {
		list, err := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
		if err != nil || len(list) != 2 {
			return false
		}
		h = list[0].Subscription.Delivery
		return h != nil && h.Posts == 1
	})
	if h.Pending != 0 || h.Delivered != 3 || h.Failures != 1 || h.FailedAttempts != 0 || h.LastSuccess == 0 ||
		!strings.Contains(h.LastError, "500") || h.LastErrorAt == 0 {
		t.Errorf("health %+v", h)
	}
	// Pending counts what waits.
	sub.setAnswer(func(int, *http.Request) int { return 503 })
	e.publish(topic, 4)
	sub.next(5 * time.Second)
	list, err := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "pending items", func() bool {
		list, _ = e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
		h := list[0].Subscription.Delivery
		return h.Pending == 4 && h.FailedAttempts >= 1 && h.FailingSince != 0
	})
	if list[1].Subscription.Delivery != nil || list[1].Subscription.Endpoint != "" {
		t.Errorf("retrieve-only subscription listed as %+v", list[1].Subscription)
	}
	b, _ := json.Marshal(list)
	if strings.Contains(string(b), secret) {
		t.Fatalf("list shows the secret: %s", b)
	}
}

func TestListByCallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := e.principal("ann")
	sub := newSubscriber(t)
	ctx := ctxT(t)
	for _, path := range []string{"/push/tech/1", "/push/tech/2", "/push/tech/3", "/push/sport/1"} {
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic+"?"+path, "hub.callback", sub.url(path))); err != nil {
			t.Fatalf("Subscribe %s: %v", path, err)
		}
	}
	if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic)); err != nil {
		t.Fatalf("Subscribe without a callback: %v", err)
	}
	endpoints := func(req ListRequest) []string {
		t.Helper()
		list, err := e.hub.List(ctx, p, req)
		if err != nil {
			t.Fatalf("List(%+v): %v", req, err)
		}
		var out []string
		for _, l := range list {
			out = append(out, strings.TrimPrefix(l.Subscription.Endpoint, sub.url("")))
		}
		return out
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"hub.callback=" + url.QueryEscape(sub.url("/push/tech/%")), []string{"/push/tech/1", "/push/tech/2", "/push/tech/3"}},
		{"hub.callback=" + url.QueryEscape(sub.url("/push/tech/%")) + "&by_page=2&page=2", []string{"/push/tech/3"}},
		{"hub.callback=" + url.QueryEscape(sub.url("/push/tech/%")) + "&by_page=2&page=3", nil},
		{"hub.callback=%25/1", []string{"/push/sport/1", "/push/tech/1"}},
		{"hub.callback=" + url.QueryEscape(sub.url("/push/sport/1")), []string{"/push/sport/1"}},
		{"hub.callback=%25", []string{"/push/sport/1", "/push/tech/1", "/push/tech/2", "/push/tech/3"}},
		{"hub.callback=https://elsewhere.example/%25", nil},
	} {
		q, err := url.ParseQuery(c.query)
		if err != nil {
			t.Fatal(err)
		}
		req, err := ParseList(api.Params{Values: q})
		if err != nil {
			t.Fatalf("ParseList(%s): %v", c.query, err)
		}
		got := endpoints(req)
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("list %s = %q, want %q", c.query, got, c.want)
		}
	}
	if all := endpoints(ListRequest{Page: 1, PerPage: 20}); len(all) != 5 {
		t.Errorf("unfiltered list has %d subscriptions, want 5 (with the retrieve-only one)", len(all))
	}
	if _, err := ParseList(api.Params{Values: url.Values{"hub.callback": {strings.Repeat("x", api.MaxTopicLength+1)}}}); err == nil {
		t.Error("an over-long hub.callback filter was accepted")
	}
}
