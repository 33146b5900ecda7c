package poll_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/store"
)

// Long-polls through a real listener on both stores. Polls that must not
// time out ask for a timeout (hold, 120 s) longer than any wait of the
// test: an answer within the wait was not a timeout. The exact timing of
// timeouts and wake-ups is checked on the fake clock (clock_test.go).

// TestAnswersAtOnce: when items follow after= (a cursor or an entry id),
// or without after= when the topic has any, the poll is answered with
// them at once, in every format.
func TestAnswersAtOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, config{})
		n.publish(topicA, 3)
		one := feed.Cursor(1).String()
		for _, tc := range []struct {
			name string
			kv   []string
			want []feed.Cursor
		}{
			{"after a cursor", []string{"after", one}, []feed.Cursor{2, 3}},
			{"after a cursor, count", []string{"after", one, "count", "1"}, []feed.Cursor{2}},
			{"after an entry id", []string{"after", "urn:test:2"}, []feed.Cursor{3}},
			{"without after", nil, []feed.Cursor{1, 2, 3}},
			{"without after, count", []string{"count", "2"}, []feed.Cursor{2, 3}},
		} {
			kv := append([]string{"format", "json", "timeout", hold}, tc.kv...)
			a := n.poll(pollQuery(topicA, kv...))
			if r := decode(t, a.body, ""); a.status != http.StatusOK || r.Status.Feed != topicA || !equalCursors(r.cursors(), tc.want...) {
				t.Errorf("%s: %d %s, want 200 with %v", tc.name, a.status, a.body, tc.want)
			}
		}
		a := n.poll(pollQuery(topicA, "callback", "app.onFeed", "timeout", hold, "after", one))
		if r := decode(t, a.body, "app.onFeed"); a.status != http.StatusOK || !equalCursors(r.cursors(), 2, 3) {
			t.Errorf("JSONP: %d %s, want 200 with 2,3", a.status, a.body)
		}
		a = n.poll(pollQuery(topicA, "timeout", hold, "after", one))
		if a.status != http.StatusOK || strings.Count(a.body, "<entry") != 2 || !strings.HasSuffix(strings.TrimSpace(a.body), "</feed>") {
			t.Errorf("Atom: %d %s, want 200 with a feed of 2 entries", a.status, a.body)
		}
	})
}

// TestHoldsThenAnswers: with nothing to answer, the poll is held until
// items arrive and answered with them: any item without after=, the items
// directly following after= (count of them) with it; in every format.
func TestHoldsThenAnswers(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, config{})
		heldBy := func(k float64) {
			t.Helper()
			testkit.Eventually(t, waitFor, fmt.Sprintf("%v held polls", k), func() bool { return n.held() == k })
		}

		// An empty topic, no after: the first items answer.
		p := n.start(pollQuery(topicB, "format", "json", "timeout", hold))
		heldBy(1)
		cs := n.publish(topicB, 2)
		if a := n.wait(p, "empty topic"); a.status != http.StatusOK || !equalCursors(decode(t, a.body, "").cursors(), cs...) {
			t.Fatalf("poll on an empty topic: %d %s, want 200 with %v", a.status, a.body, cs)
		}

		// after= the newest: the next items answer.
		newest := n.publish(topicA, 2)[1]
		p = n.start(pollQuery(topicA, "format", "json", "timeout", hold, "after", newest.String()))
		heldBy(1)
		cs = n.publish(topicA, 1)
		if a := n.wait(p, "after the newest"); a.status != http.StatusOK || !equalCursors(decode(t, a.body, "").cursors(), cs...) {
			t.Fatalf("poll after %s: %d %s, want 200 with %v", newest, a.status, a.body, cs)
		}

		// after= with count=2, three items in one append: the two directly
		// after the cursor; repeating with the newest seen gives the third.
		newest = cs[0]
		p = n.start(pollQuery(topicA, "format", "json", "timeout", hold, "count", "2", "after", newest.String()))
		heldBy(1)
		cs = n.publish(topicA, 3)
		a := n.wait(p, "count=2")
		r := decode(t, a.body, "")
		if a.status != http.StatusOK || !equalCursors(r.cursors(), cs[:2]...) {
			t.Fatalf("poll after %s, count 2: %d %v, want %v (the items directly after the cursor)", newest, a.status, r.cursors(), cs[:2])
		}
		a = n.poll(pollQuery(topicA, "format", "json", "timeout", hold, "after", r.Items[0].Cursor.String()))
		if r := decode(t, a.body, ""); a.status != http.StatusOK || !equalCursors(r.cursors(), cs[2]) {
			t.Fatalf("poll after %s: %d %v, want %v", cs[1], a.status, r.cursors(), cs[2])
		}

		// JSONP and Atom, woken by the same item.
		newest = cs[2]
		jp := n.start(pollQuery(topicA, "callback", "cb", "timeout", hold, "after", newest.String()))
		at := n.start(pollQuery(topicA, "timeout", hold, "after", newest.String()))
		heldBy(2)
		cs = n.publish(topicA, 1)
		if a := n.wait(jp, "JSONP"); a.status != http.StatusOK || !equalCursors(decode(t, a.body, "cb").cursors(), cs...) {
			t.Fatalf("JSONP poll: %d %s, want 200 with %v", a.status, a.body, cs)
		}
		a = n.wait(at, "Atom")
		if a.status != http.StatusOK || strings.Count(a.body, "<entry") != 1 || !strings.Contains(a.body, cs[0].String()) || !strings.HasSuffix(strings.TrimSpace(a.body), "</feed>") {
			t.Fatalf("Atom poll: %d %s, want 200 with a feed of item %s", a.status, a.body, cs[0])
		}
	})
}

// TestTimeoutAnswersNoItems: a poll nothing answers is answered at its
// timeout (not before) with 200 and an empty items list, in JSON, Atom
// and JSONP (which still calls back).
func TestTimeoutAnswersNoItems(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, config{})
		after := n.publish(topicA, 1)[0].String()
		sent := time.Now()
		js := n.start(pollQuery(topicA, "format", "json", "timeout", "1", "after", after))
		at := n.start(pollQuery(topicA, "timeout", "1", "after", after))
		jp := n.start(pollQuery(topicA, "callback", "app.onFeed", "timeout", "1", "after", after))
		for _, p := range []struct {
			name string
			ch   <-chan answer
			ok   func(a answer) bool
		}{
			{"JSON", js, func(a answer) bool {
				r := decode(t, a.body, "")
				return strings.Contains(a.body, `"items":[]`) && r.Status.Feed == topicA && r.Status.Cursor.String() == after
			}},
			{"Atom", at, func(a answer) bool {
				return strings.Contains(a.body, "<feed") && !strings.Contains(a.body, "<entry") && strings.HasSuffix(strings.TrimSpace(a.body), "</feed>")
			}},
			{"JSONP", jp, func(a answer) bool {
				r := decode(t, a.body, "app.onFeed")
				return strings.Contains(a.body, `"items":[]`) && r.Status.Feed == topicA
			}},
		} {
			a := n.wait(p.ch, p.name+" timeout")
			if a.status != http.StatusOK || !p.ok(a) {
				t.Errorf("%s timeout: %d %s, want 200 with no items", p.name, a.status, a.body)
			}
			if d := a.at.Sub(sent); d < time.Second {
				t.Errorf("%s: answered after %v, before its 1 s timeout", p.name, d)
			}
		}
	})
}

// TestRepeatingLosesNothing has many clients long-poll in a loop, each
// time after the newest cursor seen and for a few items, while several
// publishers append one item at a time: every client sees every item
// exactly once, in order.
func TestRepeatingLosesNothing(t *testing.T) {
	const (
		clients    = 8
		publishers = 4
		each       = 50 // items per publisher
		total      = publishers * each
	)
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, config{})
		var wg sync.WaitGroup
		errs := make(chan error, clients+publishers)
		for range publishers {
			wg.Go(func() {
				for range each {
					if _, err := publish(st, topicA, 1, &n.seq); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		for k := range clients {
			wg.Go(func() { errs <- repeat(n, k, total) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// repeat polls after the newest cursor seen (the zero cursor first) until
// the item with cursor upTo, checking that cursors follow each other.
func repeat(n *node, k int, upTo feed.Cursor) error {
	count := fmt.Sprint(1 + k%7)
	var after feed.Cursor
	for after < upTo {
		a := <-n.start(pollQuery(topicA, "format", "json", "timeout", hold, "count", count, "after", after.String()))
		if a.err != nil {
			return fmt.Errorf("client %d: a poll after %s was not answered within %v (items were being appended): %v", k, after, waitFor, a.err)
		}
		var r result
		if err := jsonUnmarshal(a.body, &r); err != nil || a.status != http.StatusOK {
			return fmt.Errorf("client %d: poll after %s: %d %s", k, after, a.status, a.body)
		}
		cs := r.cursors()
		if len(cs) == 0 {
			return fmt.Errorf("client %d: a poll after %s answered no items", k, after)
		}
		for _, c := range cs {
			if c != after+1 {
				return fmt.Errorf("client %d: after %s got %v: cursor %s lost or repeated", k, after, cs, after+1)
			}
			after = c
		}
	}
	return nil
}

// TestShutdownAnswersHeldPolls: a node shutting down answers its held
// polls (200, no new items) at once, and refuses new ones with 503.
func TestShutdownAnswersHeldPolls(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, config{})
		after := n.publish(topicA, 1)[0].String()
		js := n.start(pollQuery(topicA, "format", "json", "timeout", hold, "after", after))
		jp := n.start(pollQuery(topicA, "callback", "cb", "timeout", hold, "after", after))
		at := n.start(pollQuery(topicA, "timeout", hold, "after", after))
		testkit.Eventually(t, waitFor, "three held polls", func() bool { return n.held() == 3 })

		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := n.hub.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown did not see every poll answered within %v: %v", waitFor, err)
		}
		if a := n.wait(js, "JSON at shutdown"); a.status != http.StatusOK || len(decode(t, a.body, "").Items) != 0 {
			t.Errorf("JSON poll at shutdown: %d %s, want 200 with no items", a.status, a.body)
		}
		if a := n.wait(jp, "JSONP at shutdown"); a.status != http.StatusOK || len(decode(t, a.body, "cb").Items) != 0 {
			t.Errorf("JSONP poll at shutdown: %d %s, want 200 with no items", a.status, a.body)
		}
		if a := n.wait(at, "Atom at shutdown"); a.status != http.StatusOK || strings.Contains(a.body, "<entry") || !strings.HasSuffix(strings.TrimSpace(a.body), "</feed>") {
			t.Errorf("Atom poll at shutdown: %d %s, want 200 with an empty feed", a.status, a.body)
		}
		if a := n.poll(pollQuery(topicA, "format", "json", "timeout", hold, "after", after)); a.status != http.StatusServiceUnavailable {
			t.Errorf("a poll during shutdown: %d %s, want 503", a.status, a.body)
		}
	})
}

// TestPerUserLimit: a user holds at most MaxConnsPerUser polls (429 with
// a message beyond); other users are not counted against it, and an
// answered poll frees its slot.
func TestPerUserLimit(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, config{live: live.Options{MaxConnsPerUser: 2}})
		after := n.publish(topicA, 1)[0].String()
		q := pollQuery(topicA, "format", "json", "timeout", hold, "after", after)
		first, second := n.start(q), n.start(q)
		testkit.Eventually(t, waitFor, "two held polls", func() bool { return n.held() == 2 })
		a := n.poll(q)
		if r := decode(t, a.body, ""); a.status != http.StatusTooManyRequests || r.Error == nil || !strings.Contains(r.Error.Message, "live connections") {
			t.Fatalf("a third poll: %d %s, want 429 with a message", a.status, a.body)
		}
		bob := n.addUser("bob")
		if a := n.poll(pollQuery(topicA, "format", "json", "timeout", hold), "Authorization", basicAuth(bob)); a.status != http.StatusOK {
			t.Errorf("another user's poll: %d %s, want 200", a.status, a.body)
		}

		cs := n.publish(topicA, 1)
		for _, p := range []<-chan answer{first, second} {
			if a := n.wait(p, "held poll"); a.status != http.StatusOK || !equalCursors(decode(t, a.body, "").cursors(), cs...) {
				t.Errorf("held poll: %d %s, want 200 with %v", a.status, a.body, cs)
			}
		}
		testkit.Eventually(t, waitFor, "the answered polls to free their slots", func() bool { return n.held() == 0 })
		if a := n.poll(pollQuery(topicA, "format", "json", "timeout", hold)); a.status != http.StatusOK {
			t.Errorf("a poll once the others were answered: %d %s, want 200", a.status, a.body)
		}
	})
}
