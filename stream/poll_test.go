package stream_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// poll sends a wait=poll retrieve and returns status, body and duration.
func (n *node) poll(q string) (int, string, time.Duration) {
	n.t.Helper()
	start := time.Now()
	resp, err := n.client.Do(n.request(context.Background(), q))
	if err != nil {
		n.t.Fatalf("poll: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), time.Since(start)
}

func decode(t *testing.T, body string) notification {
	t.Helper()
	var n notification
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatalf("not a JSON answer (%v): %s", err, body)
	}
	return n
}

func TestPoll(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})

		t.Run("TimeoutAnswersNoItems", func(t *testing.T) {
			code, body, d := n.poll(query([]string{topicA}, "wait", "poll", "format", "json", "timeout", "1"))
			if code != 200 || d < time.Second || d > 3*time.Second {
				t.Fatalf("poll on an empty topic: %d after %v, want 200 after about 1s", code, d)
			}
			if a := decode(t, body); len(a.Items) != 0 || a.Status.Feed != topicA || !strings.Contains(body, `"items":[]`) {
				t.Fatalf("timeout answer %s, want an empty items list", body)
			}
		})

		t.Run("WakesOnAppend", func(t *testing.T) {
			go func() {
				time.Sleep(300 * time.Millisecond)
				n.publish(topicA, 2)
			}()
			code, body, d := n.poll(query([]string{topicA}, "wait", "poll", "format", "json", "timeout", "10"))
			if a := decode(t, body); code != 200 || !equalCursors(a.cursors(), 1, 2) || d > 3*time.Second {
				t.Fatalf("poll woken by an append: %d %v after %v, want items 1,2 at once", code, a.cursors(), d)
			}
		})

		t.Run("AnswersAtOnceWhenItemsFollow", func(t *testing.T) {
			code, body, d := n.poll(query([]string{topicA}, "wait", "poll", "format", "json", "after", feed.Cursor(1).String()))
			if a := decode(t, body); code != 200 || !equalCursors(a.cursors(), 2) || d > time.Second {
				t.Fatalf("poll after 1: %d %v after %v, want item 2 at once", code, a.cursors(), d)
			}
			// Without after, any item answers at once.
			code, body, _ = n.poll(query([]string{topicA}, "wait", "poll", "format", "json", "count", "1"))
			if a := decode(t, body); code != 200 || !equalCursors(a.cursors(), 2) {
				t.Fatalf("poll without after: %v", a.cursors())
			}
		})

		t.Run("AfterWaitsForWhatFollows", func(t *testing.T) {
			go func() {
				time.Sleep(200 * time.Millisecond)
				n.publish(topicA, 3)
			}()
			code, body, _ := n.poll(query([]string{topicA}, "wait", "poll", "format", "json", "count", "2", "after", feed.Cursor(2).String()))
			if a := decode(t, body); code != 200 || !equalCursors(a.cursors(), 3, 4) {
				t.Fatalf("poll after 2 with count 2: %v, want 3,4 (the items directly after the cursor)", a.cursors())
			}
			// Repeating with the newest cursor seen loses nothing.
			code, body, _ = n.poll(query([]string{topicA}, "wait", "poll", "format", "json", "after", feed.Cursor(4).String()))
			if a := decode(t, body); code != 200 || !equalCursors(a.cursors(), 5) {
				t.Fatalf("poll after 4: %v, want 5", a.cursors())
			}
		})

		t.Run("JSONP", func(t *testing.T) {
			code, body, _ := n.poll(query([]string{topicA}, "wait", "poll", "callback", "app.onFeed", "timeout", "1", "after", feed.Cursor(5).String()))
			if code != 200 || !strings.HasPrefix(body, "/**/app.onFeed({") || !strings.HasSuffix(body, "});\n") {
				t.Fatalf("JSONP timeout: %d %q", code, body)
			}
			go func() {
				time.Sleep(200 * time.Millisecond)
				n.publish(topicA, 1)
			}()
			code, body, _ = n.poll(query([]string{topicA}, "wait", "poll", "callback", "cb", "timeout", "10", "after", feed.Cursor(5).String()))
			inner, ok := strings.CutPrefix(body, "/**/cb(")
			inner, ok2 := strings.CutSuffix(inner, ");\n")
			if code != 200 || !ok || !ok2 {
				t.Fatalf("JSONP wake: %d %q", code, body)
			}
			if a := decode(t, inner); !equalCursors(a.cursors(), 6) {
				t.Fatalf("JSONP wake items %v, want 6", a.cursors())
			}
		})

		t.Run("Atom", func(t *testing.T) {
			go func() {
				time.Sleep(200 * time.Millisecond)
				n.publish(topicA, 1)
			}()
			code, body, _ := n.poll(query([]string{topicA}, "wait", "poll", "timeout", "10", "after", feed.Cursor(6).String()))
			if code != 200 || !strings.Contains(body, "<feed") || strings.Count(body, "<entry") != 1 || !strings.HasSuffix(body, "</feed>") {
				t.Fatalf("Atom poll: %d %s", code, body)
			}
		})
	})
}

// TestPollLoopLosesNothing has clients long-poll in a loop, each time after
// the newest cursor seen, while items are appended: each sees every item
// once, and no poll sleeps through an append (it would wait for its 5 s
// timeout).
func TestPollLoopLosesNothing(t *testing.T) {
	const total = 150
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		go func() {
			for i := 0; i < total; i++ {
				if _, err := publish(st, topicA, 1, &n.seq); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Duration(i%4) * time.Millisecond)
			}
		}()
		errs := make(chan string, 5)
		for k := 0; k < 5; k++ {
			go func() {
				var seq sequence
				seq.next = 1
				for after := feed.Cursor(0); after < total; {
					start := time.Now()
					resp, err := n.client.Do(n.request(context.Background(), query([]string{topicA}, "wait", "poll", "format", "json", "timeout", "5", "count", "50", "after", after.String())))
					if err != nil {
						errs <- err.Error()
						return
					}
					var a notification
					err = json.NewDecoder(resp.Body).Decode(&a)
					resp.Body.Close()
					if err != nil {
						errs <- err.Error()
						return
					}
					if len(a.Items) == 0 {
						errs <- "a poll after " + after.String() + " timed out after " + time.Since(start).String() + " although items were being appended"
						return
					}
					seq.add(a.cursors())
					if seq.err != nil {
						errs <- seq.err.Error()
						return
					}
					after = a.Items[0].Cursor
				}
				errs <- ""
			}()
		}
		for k := 0; k < 5; k++ {
			if e := <-errs; e != "" {
				t.Error(e)
			}
		}
	})
}
