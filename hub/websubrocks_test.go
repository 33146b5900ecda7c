package hub

// The hub tests of websub.rocks (100-106), reproduced against the hub
// service with a loopback subscriber that checks what websub.rocks' test
// subscriber checks: a verification request with hub.mode, the right
// hub.topic, a hub.challenge and (for subscriptions) hub.lease_seconds; a
// notification with a body, rel="hub" and rel="self" Link headers naming
// the hub and the topic, and a valid signature exactly when a secret was
// given.
//
// feedgate is a feed gateway, not a pass-through hub: it delivers the new
// entries of a feed in the subscription's format (Atom or Superfeedr JSON)
// rather than a copy of the topic document. 105 (plain-text topic) and 106
// (JSON topic) are reproduced in that light: a plain-text document is
// refused by ingest with nothing delivered, and its text travels safely
// inside entries; a JSON Feed topic is delivered as JSON and as Atom.

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mmcdole/gofeed"

	"github.com/feedgate/feedgate/feed"
)

// rocksSubscriber answers verification requests like websub.rocks does.
func rocksSubscriber(e *env) *subscriber {
	s := e.subscriber()
	s.setVerify(func(q url.Values) (int, string) {
		switch {
		case q.Get("hub.mode") != "subscribe" && q.Get("hub.mode") != "unsubscribe":
			return 404, "The hub.mode parameter was not set to subscribe or unsubscribe"
		case q.Get("hub.topic") != topic:
			return 404, "The hub.topic parameter was incorrect"
		case q.Get("hub.challenge") == "":
			return 404, "The verification request was missing the hub.challenge parameter"
		case q.Get("hub.mode") == "subscribe" && q.Get("hub.lease_seconds") == "":
			return 404, "The verification request was missing the hub.lease_seconds parameter"
		}
		return 200, q.Get("hub.challenge")
	})
	return s
}

// checkRocksNotification checks a notification as websub.rocks does.
func checkRocksNotification(t *testing.T, p post, secret string) {
	t.Helper()
	if strings.TrimSpace(string(p.Body)) == "" {
		t.Error("empty_payload: the notification has no body")
	}
	rels := linkRels(p.Header)
	if rels["hub"] != testHubURL {
		t.Errorf("link_header: rel=hub is %q, want %q", rels["hub"], testHubURL)
	}
	if rels["self"] != topic {
		t.Errorf("link_header: rel=self is %q, want %q", rels["self"], topic)
	}
	sig := p.Header.Get("X-Hub-Signature")
	if secret == "" && sig != "" {
		t.Error("signature: the hub sent a signature, but the subscriber was not expecting one")
	}
	if secret != "" && sig != Sign(SignSHA256, secret, p.Body) {
		t.Errorf("signature_mismatch: %q", sig)
	}
}

func TestWebSubRocks100TypicalSubscriber(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		sub := rocksSubscriber(e)
		if err := e.hub.Subscribe(ctxT(t), e.principal("ann"), request(t, "hub.mode", "subscribe", "hub.topic", topic, "hub.callback", sub.url("/hub/100/sub/tok"))); err != nil {
			t.Fatalf("the hub did not accept the subscription request: %v", err)
		}
		e.publish(topic, 1)
		p := sub.next(5 * time.Second)
		checkRocksNotification(t, p, "")
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/atom+xml") {
			t.Errorf("content_type: %q for an Atom subscription", ct)
		}
	})
}

func TestWebSubRocks101Secret(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		sub := rocksSubscriber(e)
		const secret = "Ow8nNheyEpTQ3iWf1IGc"
		if err := e.hub.Subscribe(ctxT(t), e.principal("ann"), request(t, "hub.mode", "subscribe", "hub.topic", topic, "hub.callback", sub.url("/hub/101/sub/tok"), "hub.secret", secret)); err != nil {
			t.Fatal(err)
		}
		e.publish(topic, 1)
		checkRocksNotification(t, sub.next(5*time.Second), secret)
	})
}

func TestWebSubRocks102AdditionalParameters(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		sub := rocksSubscriber(e)
		if err := e.hub.Subscribe(ctxT(t), e.principal("ann"), request(t, "hub.mode", "subscribe", "hub.topic", topic, "hub.callback", sub.url("/hub/102/sub/tok"),
			"foo", "bar", "hub.foo", "hub.bar")); err != nil {
			t.Fatalf("unrecognised parameters were not ignored: %v", err)
		}
		e.publish(topic, 1)
		checkRocksNotification(t, sub.next(5*time.Second), "")
	})
}

func TestWebSubRocks103Resubscribe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		sub := rocksSubscriber(e)
		ctx := ctxT(t)
		cb := sub.url("/hub/103/sub/tok")
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", cb, "hub.secret", "first", "hub.lease_seconds", "60")); err != nil {
			t.Fatal(err)
		}
		before, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
		time.Sleep(10 * time.Second) // on the bubble's clock
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", cb, "hub.secret", "second", "hub.lease_seconds", "600")); err != nil {
			t.Fatalf("re-subscription refused: %v", err)
		}
		after, _ := e.hub.List(ctx, p, ListRequest{Page: 1, PerPage: 20})
		if len(after) != 1 {
			t.Fatalf("re-subscription made %d subscriptions, want the one updated", len(after))
		}
		if after[0].Subscription.CreatedAt != before[0].Subscription.CreatedAt || after[0].Subscription.ExpiresAt <= before[0].Subscription.ExpiresAt+500 {
			t.Errorf("re-subscription: before %+v, after %+v (creation kept, lease renewed)", before[0].Subscription, after[0].Subscription)
		}
		e.publish(topic, 1)
		checkRocksNotification(t, sub.next(5*time.Second), "second")
	})
}

func TestWebSubRocks104Unsubscribe(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		sub := rocksSubscriber(e)
		ctx := ctxT(t)
		req := request(t, "hub.topic", topic, "hub.callback", sub.url("/hub/104/sub/tok"))
		if err := e.hub.Subscribe(ctx, p, req); err != nil {
			t.Fatal(err)
		}
		if err := e.hub.Unsubscribe(ctx, p, req); err != nil {
			t.Fatalf("unsubscription: %v", err)
		}
		if v := sub.verifications(); len(v) != 2 || v[1].Get("hub.mode") != "unsubscribe" {
			t.Fatalf("verification requests %v", v)
		}
		e.publish(topic, 1)
		sub.none(quiet)
	})
}

func TestWebSubRocks105PlaintextTopic(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		sub := rocksSubscriber(e)
		ctx := ctxT(t)
		if err := e.hub.Subscribe(ctx, e.principal("ann"), request(t, "hub.topic", topic, "hub.callback", sub.url("/hub/105/sub/tok"))); err != nil {
			t.Fatal(err)
		}
		const text = "Plain text, with <angle brackets> & ampersands\nover two lines"
		// A plain-text document is not a feed: refused, nothing delivered.
		_, err := e.ing.StoreFeed(ctx, topic, []byte(text), "text/plain")
		if !errors.Is(err, feed.ErrNotFeed) {
			t.Fatalf("StoreFeed(text/plain) = %v, want feed.ErrNotFeed", err)
		}
		sub.none(quiet)
		// Plain text inside entries reaches the subscriber intact.
		if _, err := e.st.Append(ctx, topic, []feed.Item{{ID: "t1", Title: text, Content: text, Hash: "h"}}); err != nil {
			t.Fatal(err)
		}
		p := sub.next(5 * time.Second)
		checkRocksNotification(t, p, "")
		f, err := gofeed.NewParser().ParseString(string(p.Body))
		if err != nil || len(f.Items) != 1 || f.Items[0].Title != strings.ReplaceAll(text, "\n", " ") && f.Items[0].Title != text {
			t.Fatalf("plain text did not survive the Atom delivery: %v\n%s", err, p.Body)
		}
	})
}

func TestWebSubRocks106JSONTopic(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newBubbleEnv(t)
		p := e.principal("ann")
		js, atom := rocksSubscriber(e), rocksSubscriber(e)
		ctx := ctxT(t)
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", js.url("/hub/106/sub/json"), "format", "json")); err != nil {
			t.Fatal(err)
		}
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", atom.url("/hub/106/sub/atom"))); err != nil {
			t.Fatal(err)
		}
		doc := `{"version":"https://jsonfeed.org/version/1.1","title":"WebSub Rocks! Test 106",
		  "home_page_url":"https://websub.example/","feed_url":"` + topic + `",
		  "items":[{"id":"q1","content_text":"Quote one","url":"https://websub.example/1"}]}`
		stored, err := e.ing.StoreFeed(ctx, topic, []byte(doc), "application/feed+json")
		if err != nil || len(stored) != 1 {
			t.Fatalf("StoreFeed(JSON Feed) = %v, %v", stored, err)
		}
		pj := js.next(5 * time.Second)
		checkRocksNotification(t, pj, "")
		if ct := pj.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || !strings.Contains(string(pj.Body), `"id":"q1"`) {
			t.Errorf("JSON delivery %q: %s", ct, pj.Body)
		}
		pa := atom.next(5 * time.Second)
		checkRocksNotification(t, pa, "")
		if f, err := gofeed.NewParser().ParseString(string(pa.Body)); err != nil || len(f.Items) != 1 {
			t.Errorf("Atom delivery of a JSON topic: %v\n%s", err, pa.Body)
		}
		if pa.Header.Get("Content-Type") == pj.Header.Get("Content-Type") {
			t.Error("both formats sent with one content type")
		}
	})
}
