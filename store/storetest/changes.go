package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

// runChanges checks that the store tells Options.Changes of its writes: an
// Append that stored items, a successful UpdateTopic and a deleted
// subscription, each before it returns; an Append of duplicates only, a
// failed UpdateTopic and a new subscription do not.
func runChanges(t *testing.T, open Opener) {
	var mu sync.Mutex
	var got []string
	hook := new(store.ChangeHook)
	hook.OnChange(func(topic string) {
		mu.Lock()
		got = append(got, topic)
		mu.Unlock()
	})
	hook.OnUnsubscribe(func(login, topic string) {
		mu.Lock()
		got = append(got, "unsubscribed "+login+" "+topic)
		mu.Unlock()
	})
	s := open(t, store.Options{Changes: hook})
	ctx := testContext(t)
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	check := func(what string, want ...string) {
		t.Helper()
		if g := take(); !slices.Equal(g, want) {
			t.Errorf("%s: changes reported %q, want %q", what, g, want)
		}
	}

	if _, err := s.Append(ctx, "https://example.com/a", items("a", 2)); err != nil {
		t.Fatal(err)
	}
	check("append of new items", "https://example.com/a")
	if _, err := s.Append(ctx, "https://example.com/a", items("a", 2)); err != nil {
		t.Fatal(err)
	}
	check("append of duplicates")
	err := s.UpdateTopic(ctx, "https://example.com/b", func(ts *store.TopicState) error {
		ts.Meta.Title = "B"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check("update of topic", "https://example.com/b")
	refused := errors.New("refused")
	if err := s.UpdateTopic(ctx, "https://example.com/b", func(*store.TopicState) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("UpdateTopic with a failing fn = %v, want its error", err)
	}
	check("failed update of topic")
	if _, err := s.Read(ctx, "https://example.com/a", store.Query{From: store.Newest, Count: 10}); err != nil {
		t.Fatal(err)
	}
	check("read")

	if _, err := s.PutSubscription(ctx, store.Subscription{Login: "alice", Topic: "https://example.com/c", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	check("new subscription")
	if _, err := s.DeleteSubscription(ctx, "alice", "https://example.com/c", ""); err != nil {
		t.Fatal(err)
	}
	check("deleted subscription", "unsubscribed alice https://example.com/c")
}
