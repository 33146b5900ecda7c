package retrieve

import (
	"errors"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
)

// TestAccessExpires: a kept answer allows for the TTL, not after; a
// deleted subscription (forget) voids every answer kept, and one read from
// the store before it.
func TestAccessExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAccess(2 * time.Second)
		a.keep("alice", "t1", a.generation())
		if !a.allows("alice", "t1") {
			t.Fatal("a kept answer does not allow")
		}
		if a.allows("bob", "t1") || a.allows("alice", "t2") {
			t.Fatal("an answer allows another user or topic")
		}
		time.Sleep(1999 * time.Millisecond)
		if !a.allows("alice", "t1") {
			t.Fatal("a kept answer stopped allowing before its TTL")
		}
		time.Sleep(time.Millisecond)
		if a.allows("alice", "t1") {
			t.Fatal("a kept answer still allows after its TTL")
		}

		a.keep("alice", "t1", a.generation())
		a.forget()
		if a.allows("alice", "t1") {
			t.Fatal("an answer kept before a deletion still allows")
		}
		// A check in flight across a deletion: read before it, kept after.
		gen := a.generation()
		a.forget()
		a.keep("alice", "t1", gen)
		if a.allows("alice", "t1") {
			t.Fatal("an answer read before a deletion was kept after it")
		}
	})
}

// TestAccessBounded: the answers kept never pass maxAccess.
func TestAccessBounded(t *testing.T) {
	a := newAccess(time.Hour)
	for i := range maxAccess + 10 {
		a.keep("u", string(rune(i)), a.generation())
	}
	if n := len(a.seen); n > maxAccess {
		t.Fatalf("%d answers kept, more than %d", n, maxAccess)
	}
	if !a.allows("u", string(rune(maxAccess+9))) {
		t.Fatal("the newest answer is not kept")
	}
}

// TestAuthorizeKeepsAccess runs two nodes on one Redis: node A keeps that
// a user may read a topic; a subscription deleted through node B is seen
// by A only after the TTL (an hour here, so not at all), one deleted
// through A at once — for a subscriber and for a token scoped to the topic
// (which reads it while anybody subscribes).
func TestAuthorizeKeepsAccess(t *testing.T) {
	url := redistest.Start(t).URL()
	a, b := openRedis(t, url), openRedis(t, url)
	svc := New(a.st, Options{AccessTTL: time.Hour, Changes: a.changes})
	ctx := ctxFor(t)
	const topic = "http://127.0.0.1:9/feed"
	subscribe := func(login string) {
		t.Helper()
		if _, err := a.st.PutSubscription(ctx, store.Subscription{Login: login, Topic: topic, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	unsubscribe := func(n node, login string) {
		t.Helper()
		if _, err := n.st.DeleteSubscription(ctx, login, topic, ""); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, p *auth.Principal, allowed bool) {
		t.Helper()
		err := svc.Authorize(ctx, p, topic)
		if allowed && err != nil {
			t.Fatalf("%s: Authorize = %v, want allowed", what, err)
		}
		var ae *api.Error
		if !allowed && (!errors.As(err, &ae) || ae.Code != http.StatusNotFound) {
			t.Fatalf("%s: Authorize = %v, want a 404", what, err)
		}
	}
	alice := auth.NewPrincipal("alice", []store.Right{store.RightRetrieve, store.RightSubscribe}, nil)
	widget := auth.NewPrincipal("widget", []store.Right{store.RightRetrieve}, []string{topic})

	check("before any subscription", alice, false)
	check("a scoped token before any subscription", widget, false)
	subscribe("alice")
	check("a subscriber", alice, true)
	check("a scoped token", widget, true)

	unsubscribe(b, "alice")
	check("a subscriber, unsubscribed on another node within the TTL", alice, true)
	check("a scoped token, the topic's last subscriber gone on another node within the TTL", widget, true)

	subscribe("alice")
	unsubscribe(a, "alice")
	check("a subscriber, unsubscribed on this node", alice, false)
	check("a scoped token, the topic's last subscriber gone on this node", widget, false)
}
