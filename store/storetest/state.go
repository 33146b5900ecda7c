package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

func runTopics(t *testing.T, open Opener) {
	t.Run("RoundTrip", func(t *testing.T) {
		s := open(t, store.Options{})
		ctx := testContext(t)
		ts, err := s.Topic(ctx, topicA)
		if err != nil {
			t.Fatalf("Topic(unknown): %v", err)
		}
		if ts.Topic != topicA || ts.Meta != (feed.Meta{}) || ts.Status != (feed.Status{}) {
			t.Errorf("Topic(unknown) = %+v, want zero state with Topic set", ts)
		}
		meta := feed.Meta{
			Title: "Feed A", Subtitle: "sub", ID: "urn:a", Updated: 1700000000,
			PermalinkURL: "https://example.com/", Language: "en",
			StandardLinks: &feed.Links{Hub: []feed.Link{{Href: "https://hub.example.com/"}}},
		}
		status := feed.Status{Code: 200, HTTP: "200 OK", Feed: topicA, Period: 900, LastFetch: 1700000001, NextFetch: 1700000901}
		err = s.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error {
			if ts.Topic != topicA {
				return fmt.Errorf("fn got Topic %q", ts.Topic)
			}
			ts.Meta, ts.Status = meta, status
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateTopic: %v", err)
		}
		ts, err = s.Topic(ctx, topicA)
		if err != nil {
			t.Fatalf("Topic: %v", err)
		}
		if ts.Topic != topicA || ts.Status != status || ts.Meta.Title != meta.Title || ts.Meta.ID != meta.ID ||
			ts.Meta.StandardLinks == nil || len(ts.Meta.StandardLinks.Hub) != 1 {
			t.Errorf("Topic = %+v, want meta %+v status %+v", ts, meta, status)
		}

		// An error from fn is returned and nothing is stored.
		boom := errors.New("boom")
		err = s.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error {
			ts.Status.Code = 500
			return boom
		})
		if !errors.Is(err, boom) {
			t.Errorf("UpdateTopic with failing fn returned %v, want the fn's error", err)
		}
		if ts, _ := s.Topic(ctx, topicA); ts.Status.Code != 200 {
			t.Errorf("failed UpdateTopic changed the state: code %d", ts.Status.Code)
		}
		// Topic state does not leak to other topics.
		if ts, _ := s.Topic(ctx, topicB); ts.Status.Code != 0 || ts.Topic != topicB {
			t.Errorf("Topic(B) = %+v, want zero state", ts)
		}
	})

	t.Run("ConcurrentUpdates", func(t *testing.T) {
		s := open(t, store.Options{})
		ctx := testContext(t)
		const workers, each = 8, 10
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				for range each {
					if err := s.UpdateTopic(ctx, topicA, func(ts *store.TopicState) error {
						ts.Status.Period++
						return nil
					}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("UpdateTopic: %v", err)
		}
		ts, err := s.Topic(ctx, topicA)
		if err != nil {
			t.Fatalf("Topic: %v", err)
		}
		if ts.Status.Period != workers*each {
			t.Errorf("after %d concurrent increments Period = %d", workers*each, ts.Status.Period)
		}
	})
}

func runUsers(t *testing.T, open Opener) {
	s := open(t, store.Options{})
	ctx := testContext(t)
	created := time.Unix(1700000000, 0).UTC()
	alice := store.User{Login: "alice", CreatedAt: created, Tokens: []store.Token{{
		ID: "t1", Hash: "sha256:abc", Rights: []store.Right{store.RightRetrieve, store.RightList},
		Topics: []string{"https://example.com/"}, CreatedAt: created,
	}}}
	if err := s.AddUser(ctx, alice); err != nil {
		t.Fatalf("AddUser(alice): %v", err)
	}
	if err := s.AddUser(ctx, store.User{Login: "alice"}); !errors.Is(err, store.ErrExists) {
		t.Errorf("AddUser(alice) again = %v, want ErrExists", err)
	}
	u, err := s.User(ctx, "alice")
	if err != nil {
		t.Fatalf("User(alice): %v", err)
	}
	if g, w := userString(u), userString(alice); g != w {
		t.Errorf("User(alice):\n got %s\nwant %s", g, w)
	}

	alice.Tokens = append(alice.Tokens, store.Token{ID: "t2", Hash: "sha256:def", Rights: store.AllRights, CreatedAt: created.Add(time.Hour)})
	if err := s.PutUser(ctx, alice); err != nil {
		t.Fatalf("PutUser(alice): %v", err)
	}
	if u, err := s.User(ctx, "alice"); err != nil || userString(u) != userString(alice) {
		t.Errorf("User(alice) after PutUser = %s, %v; want %s", userString(u), err, userString(alice))
	}
	for _, login := range []string{"carol", "bob"} {
		if err := s.PutUser(ctx, store.User{Login: login, CreatedAt: created}); err != nil {
			t.Fatalf("PutUser(%s): %v", login, err)
		}
	}
	list := func() []string {
		t.Helper()
		us, err := s.ListUsers(ctx)
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		var logins []string
		for _, u := range us {
			logins = append(logins, u.Login)
		}
		return logins
	}
	if got := list(); !sameStrings(got, []string{"alice", "bob", "carol"}) {
		t.Errorf("ListUsers = %q, want alice bob carol", got)
	}
	if err := s.DeleteUser(ctx, "bob"); err != nil {
		t.Fatalf("DeleteUser(bob): %v", err)
	}
	if err := s.DeleteUser(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteUser(bob) again = %v, want ErrNotFound", err)
	}
	if _, err := s.User(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(bob) after delete = %v, want ErrNotFound", err)
	}
	if got := list(); !sameStrings(got, []string{"alice", "carol"}) {
		t.Errorf("ListUsers after delete = %q, want alice carol", got)
	}
}

func runSubscriptions(t *testing.T, open Opener) {
	s := open(t, store.Options{})
	ctx := testContext(t)
	created := time.Unix(1700000000, 0).UTC()
	sub := func(login, topic, callback string) store.Subscription {
		return store.Subscription{Login: login, Topic: topic, Callback: callback, CreatedAt: created}
	}
	put := func(sb store.Subscription, wantCreated bool) {
		t.Helper()
		c, err := s.PutSubscription(ctx, sb)
		if err != nil {
			t.Fatalf("PutSubscription(%s): %v", subString(sb), err)
		}
		if c != wantCreated {
			t.Errorf("PutSubscription(%s) created = %v, want %v", subString(sb), c, wantCreated)
		}
	}
	list := func(login string, offset, limit int) ([]string, int) {
		t.Helper()
		subs, total, err := s.ListSubscriptions(ctx, login, offset, limit)
		if err != nil {
			t.Fatalf("ListSubscriptions(%q, %d, %d): %v", login, offset, limit, err)
		}
		return subStrings(subs), total
	}
	tracked := func() []string {
		t.Helper()
		ts, err := s.TrackedTopics(ctx)
		if err != nil {
			t.Fatalf("TrackedTopics: %v", err)
		}
		return sortedStrings(ts)
	}

	if subs, total := list("alice", 0, 10); len(subs) != 0 || total != 0 {
		t.Errorf("empty store lists %q, total %d", subs, total)
	}
	if got := tracked(); len(got) != 0 {
		t.Errorf("empty store tracks %q", got)
	}

	withLease := sub("alice", topicA, "https://cb.example.com/1")
	withLease.Secret, withLease.Format, withLease.LeaseSeconds = "s3cret", "json", 3600
	withLease.ExpiresAt = created.Add(time.Hour)
	put(withLease, true)
	withLease.Secret = "n3w"
	put(withLease, false) // same (login, topic, callback): replaced
	put(sub("alice", topicA, ""), true)
	put(sub("alice", topicC, ""), true)
	put(sub("alice", topicB, ""), true)
	put(sub("bob", topicA, ""), true)
	put(sub("bob", topicA, "https://cb.example.com/0"), true)

	wantAlice := subStrings([]store.Subscription{
		sub("alice", topicA, ""), withLease, sub("alice", topicB, ""), sub("alice", topicC, ""),
	})
	if got, total := list("alice", 0, 2); !sameStrings(got, wantAlice[:2]) || total != 4 {
		t.Errorf("List(alice, 0, 2) = %q total %d\nwant %q total 4", got, total, wantAlice[:2])
	}
	if got, total := list("alice", 2, 10); !sameStrings(got, wantAlice[2:]) || total != 4 {
		t.Errorf("List(alice, 2, 10) = %q total %d\nwant %q total 4", got, total, wantAlice[2:])
	}
	if got, total := list("alice", 10, 10); len(got) != 0 || total != 4 {
		t.Errorf("List(alice, 10, 10) = %q total %d, want none, total 4", got, total)
	}
	wantAll := subStrings([]store.Subscription{
		sub("alice", topicA, ""), sub("bob", topicA, ""), sub("bob", topicA, "https://cb.example.com/0"), withLease,
		sub("alice", topicB, ""), sub("alice", topicC, ""),
	})
	if got, total := list("", 0, 100); !sameStrings(got, wantAll) || total != 6 {
		t.Errorf("List(all) =\n%q total %d\nwant\n%q total 6", got, total, wantAll)
	}
	if got, total := list("", 1, 2); !sameStrings(got, wantAll[1:3]) || total != 6 {
		t.Errorf("List(all, 1, 2) = %q total %d, want %q", got, total, wantAll[1:3])
	}
	if got, total := list("nobody", 0, 10); len(got) != 0 || total != 0 {
		t.Errorf("List(nobody) = %q total %d", got, total)
	}

	for _, c := range []struct {
		login, topic string
		want         bool
	}{{"alice", topicA, true}, {"alice", topicC, true}, {"bob", topicB, false}, {"carol", topicA, false}} {
		got, err := s.IsSubscribed(ctx, c.login, c.topic)
		if err != nil || got != c.want {
			t.Errorf("IsSubscribed(%s, %s) = %v, %v; want %v", c.login, c.topic, got, err, c.want)
		}
	}

	ts, err := s.TopicSubscriptions(ctx, topicA)
	if err != nil {
		t.Fatalf("TopicSubscriptions: %v", err)
	}
	wantA := sortedStrings(subStrings([]store.Subscription{
		withLease, sub("alice", topicA, ""), sub("bob", topicA, ""), sub("bob", topicA, "https://cb.example.com/0"),
	}))
	if got := sortedStrings(subStrings(ts)); !sameStrings(got, wantA) {
		t.Errorf("TopicSubscriptions(A) =\n%q\nwant\n%q", got, wantA)
	}
	if got := tracked(); !sameStrings(got, sortedStrings([]string{topicA, topicB, topicC})) {
		t.Errorf("TrackedTopics = %q", got)
	}

	del := func(login, topic, callback string, want int) {
		t.Helper()
		n, err := s.DeleteSubscription(ctx, login, topic, callback)
		if err != nil || n != want {
			t.Errorf("DeleteSubscription(%s, %s, %q) = %d, %v; want %d", login, topic, callback, n, err, want)
		}
	}
	del("alice", topicA, "https://cb.example.com/1", 3)
	del("bob", topicA, "", 2)
	if _, err := s.DeleteSubscription(ctx, "bob", topicA, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSubscription of a deleted subscription = %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteSubscription(ctx, "carol", topicC, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteSubscription of a missing subscription = %v, want ErrNotFound", err)
	}
	if ok, _ := s.IsSubscribed(ctx, "bob", topicA); !ok {
		t.Error("IsSubscribed(bob, A) = false while bob keeps a callback subscription")
	}
	del("alice", topicC, "", 0)
	if got := tracked(); !sameStrings(got, sortedStrings([]string{topicA, topicB})) {
		t.Errorf("TrackedTopics after the last subscription of C went = %q", got)
	}
	if ok, _ := s.IsSubscribed(ctx, "alice", topicC); ok {
		t.Error("IsSubscribed(alice, C) = true after delete")
	}
	if ts, _ := s.TopicSubscriptions(ctx, topicC); len(ts) != 0 {
		t.Errorf("TopicSubscriptions(C) after delete = %q", subStrings(ts))
	}
	if got, total := list("alice", 0, 10); total != 2 || len(got) != 2 {
		t.Errorf("List(alice) after deletes = %q total %d, want 2", got, total)
	}
}
