// Package storetest is the conformance suite every store.Store backend must
// pass. A backend's tests call Run (and RunMultiNode, RunReopen where the
// backend supports them) with a function that opens a store on fresh, empty
// backing data.
//
// The semantics the suite pins down, beyond the interface's doc comments:
//
//   - Dedup is by the pair (ID, Hash): an item is skipped when an item with the
//     same ID and Hash has ever been stored in the topic, even if it has since
//     been trimmed (a feed longer than the retention must not re-store its
//     tail on every fetch). Items of one Append are deduplicated against each
//     other in order, as if appended one by one.
//   - Cursors start at 1 and grow by exactly 1 per stored item, per topic.
//     The Cursor field of appended items is ignored.
//   - Retention is exact as seen by readers: a topic shows at most Retention
//     items, the newest ones, whatever the backend trims physically.
//   - Read After c returns the items c+1 .. c+Count, newest first. When c+1 is
//     older than the oldest item held (items were trimmed, or c is 0 and the
//     first items are gone), Gap is true and the items start at the oldest
//     held. Read Before c returns the items c-Count .. c-1 that are held,
//     newest first. Read Newest returns the newest Count items. Count <= 0
//     reads no items. Page.Last and Page.Topic are always filled.
//   - CursorOf returns the cursor of the newest item stored with that id,
//     also when that item has been trimmed (reading after it then reports a
//     gap); ErrNotFound when no item with that id was ever stored.
//   - Live: once Add returns, every later Append that stores items in an added
//     topic is announced as Batches whose items, concatenated, are exactly
//     the stored items with their cursors, oldest first; an Append that stores
//     nothing announces nothing; after Remove returns no batch of a removed
//     topic is delivered; Close closes the Batches channel. Within one topic
//     batches arrive in cursor order, also when appends race.
//   - Options.Changes hears, before the write returns, of every Append that
//     stored items and every successful UpdateTopic, and of nothing else.
//   - ListSubscriptions orders by topic, then callback, then login.
//   - Users and subscriptions keep times to the second at least (compared
//     with time.Equal at second precision).
package storetest

import (
	"testing"

	"github.com/feedgate/feedgate/store"
)

// Opener opens a store on fresh, empty backing data of its own. The suite
// closes the store at the end of the test; the opener's own t.Cleanup
// functions (removing a directory, stopping a server) run after that.
type Opener func(t *testing.T, opts store.Options) store.Store

// Run runs the conformance suite against the stores open returns.
func Run(t *testing.T, open Opener) {
	t.Helper()
	o := func(t *testing.T, opts store.Options) store.Store {
		t.Helper()
		s := open(t, opts)
		if s == nil {
			t.Fatal("open returned a nil store")
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	t.Run("Items", func(t *testing.T) { runItems(t, o) })
	t.Run("Live", func(t *testing.T) { runLive(t, o) })
	t.Run("Topics", func(t *testing.T) { runTopics(t, o) })
	t.Run("Users", func(t *testing.T) { runUsers(t, o) })
	t.Run("Subscriptions", func(t *testing.T) { runSubscriptions(t, o) })
	t.Run("Concurrency", func(t *testing.T) { runConcurrency(t, o) })
	t.Run("Changes", func(t *testing.T) { runChanges(t, o) })
}

// OpenerPair opens two Store values over the same fresh, empty backing data,
// as two gateway nodes sharing one backend would. The suite closes both.
type OpenerPair func(t *testing.T, opts store.Options) (a, b store.Store)

// RunMultiNode checks that two stores over the same backing data behave as
// one: what one writes the other reads, dedup and cursors hold across them
// when they append concurrently, and a listener on either sees the appends
// made through both.
func RunMultiNode(t *testing.T, open OpenerPair) {
	t.Helper()
	o := func(t *testing.T, opts store.Options) (store.Store, store.Store) {
		t.Helper()
		a, b := open(t, opts)
		if a == nil || b == nil {
			t.Fatal("open returned a nil store")
		}
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		return a, b
	}
	runMultiNode(t, o)
}

// RunReopen checks that everything a store acknowledged survives Close. open
// is called more than once in one test and must return, each time, a Store on
// the same backing data; the suite closes each store before opening the next.
func RunReopen(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	runReopen(t, open)
}
