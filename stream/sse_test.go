package stream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// sseEvent is one dispatched event, parsed as EventSource does.
type sseEvent struct {
	typ, data, id string
}

// sseClient parses an event stream per the HTML standard: lines end at
// CRLF, LF or CR; comments start with ':'; a blank line dispatches.
type sseClient struct {
	t        *testing.T
	resp     *http.Response
	cancel   context.CancelFunc
	events   chan sseEvent
	comments chan string
	retry    chan string
	done     chan struct{}
}

func (n *node) openSSE(q string, header ...string) *sseClient {
	n.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	header = append([]string{"Accept", "text/event-stream"}, header...)
	resp, err := n.client.Do(n.request(ctx, q, header...))
	if err != nil {
		cancel()
		n.t.Fatalf("open event stream: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		n.t.Fatalf("open event stream: %s: %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		n.t.Errorf("Content-Type = %q, want text/event-stream", ct)
	}
	c := &sseClient{t: n.t, resp: resp, cancel: cancel, events: make(chan sseEvent, 1000),
		comments: make(chan string, 1000), retry: make(chan string, 10), done: make(chan struct{})}
	go c.read()
	n.t.Cleanup(c.close)
	return c
}

func splitLines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 == len(data) && !atEOF {
				return 0, nil, nil // a LF may follow
			}
			if i+1 < len(data) && data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func (c *sseClient) read() {
	defer close(c.done)
	defer close(c.events)
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	sc.Split(splitLines)
	var typ, id string
	var data []string
	hasData := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				t := typ
				if t == "" {
					t = "message"
				}
				c.events <- sseEvent{typ: t, data: strings.Join(data, "\n"), id: id}
			}
			typ, data, hasData = "", nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			c.comments <- strings.TrimPrefix(line, ":")
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			typ = value
		case "data":
			data, hasData = append(data, value), true
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		case "retry":
			c.retry <- value
		}
	}
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
	<-c.done
}

// next returns the next event's notification and id.
func (c *sseClient) next(d time.Duration) (notification, string) {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatal("event stream ended")
		}
		if ev.typ != "notification" {
			c.t.Fatalf("event type %q, want notification", ev.typ)
		}
		var n notification
		if err := json.Unmarshal([]byte(ev.data), &n); err != nil {
			c.t.Fatalf("event data is not a JSON notification (%v): %q", err, ev.data)
		}
		return n, ev.id
	case <-time.After(d):
		c.t.Fatalf("no event within %v", d)
	}
	return notification{}, ""
}

// collect reads events until want items arrived, and returns their
// cursors per topic (oldest first) and the last id.
func (c *sseClient) collect(want int) (map[string][]feed.Cursor, string) {
	c.t.Helper()
	got := map[string][]feed.Cursor{}
	var id string
	for k := 0; k < want; {
		n, eid := c.next(waitFor)
		got[n.Status.Feed] = append(got[n.Status.Feed], n.cursors()...)
		k += len(n.Items)
		id = eid
	}
	return got, id
}

// quiet checks that no event arrives for a moment.
func (c *sseClient) quiet() {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if ok {
			c.t.Fatalf("unexpected event: %+v", ev)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

func equalCursors(a []feed.Cursor, b ...feed.Cursor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSSEResumeOneTopic(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{Retry: 1500 * time.Millisecond})
		n.publish(topicA, 3)
		c := n.openSSE(query([]string{topicA}, "count", "2"))
		if r := <-c.retry; r != "1500" {
			t.Errorf("retry: %s, want 1500", r)
		}
		first, id := c.next(waitFor)
		if !equalCursors(first.cursors(), 2, 3) || id != feed.Cursor(3).String() {
			t.Fatalf("first event: cursors %v id %q, want [2 3] and id %s", first.cursors(), id, feed.Cursor(3))
		}
		n.publish(topicA, 2)
		got, id := c.collect(2)
		if !equalCursors(got[topicA], 4, 5) || id != feed.Cursor(5).String() {
			t.Fatalf("live: %v id %q", got, id)
		}
		c.close()

		missed := n.publish(topicA, 3)
		for _, viaQuery := range []bool{false, true} {
			var r *sseClient
			if viaQuery {
				r = n.openSSE(query([]string{topicA}, "lastEventId", id))
			} else {
				r = n.openSSE(query([]string{topicA}), "Last-Event-ID", id)
			}
			got, rid := r.collect(3)
			if !equalCursors(got[topicA], missed...) || rid != missed[2].String() {
				t.Fatalf("resumed (query %v): %v id %q, want exactly %v", viaQuery, got, rid, missed)
			}
			r.quiet()
			r.close()
		}

		// A token that is not ours is refused, not guessed at.
		resp, err := n.client.Do(n.request(context.Background(), query([]string{topicA}), "Accept", "text/event-stream", "Last-Event-ID", "bogus"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("bogus Last-Event-ID: %s, want 422", resp.Status)
		}
	})
}

func TestSSEResumeSeveralTopics(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		n.publish(topicA, 2)
		n.publish(topicB, 1)
		c := n.openSSE(query([]string{topicA, topicB}, "format", "sse"))
		c.collect(3)
		n.publish(topicA, 1)
		n.publish(topicB, 2)
		_, id := c.collect(3)
		if !strings.HasPrefix(id, "m") {
			t.Fatalf("multi-topic id %q is not a token", id)
		}
		c.close()

		missedA := n.publish(topicA, 2)
		missedB := n.publish(topicB, 1)
		r := n.openSSE(query([]string{topicA, topicB}), "Last-Event-ID", id)
		got, _ := r.collect(3)
		if !equalCursors(got[topicA], missedA...) || !equalCursors(got[topicB], missedB...) {
			t.Fatalf("resumed: %v, want A %v and B %v exactly", got, missedA, missedB)
		}
		r.quiet()

		// A topic the token does not cover starts afresh (its newest items).
		n.publish(topicC, 4)
		r2 := n.openSSE(query([]string{topicA, topicB, topicC}, "count", "1"), "Last-Event-ID", id)
		got, _ = r2.collect(4)
		if !equalCursors(got[topicA], missedA...) || !equalCursors(got[topicB], missedB...) || !equalCursors(got[topicC], 4) {
			t.Fatalf("resumed with a new topic: %v", got)
		}
	})
}

func TestSSEKeepaliveIsAComment(t *testing.T) {
	n := newNode(t, openEmbedded(t), stream.Options{Keepalive: 30 * time.Millisecond})
	c := n.openSSE(query([]string{topicA}))
	c.next(waitFor)
	select {
	case <-c.comments:
	case <-time.After(waitFor):
		t.Fatal("no keep-alive comment")
	}
}

// TestFramingHardening stores ids and titles with CR, LF, NUL and text that
// looks like SSE fields: every event and NDJSON line must still carry
// exactly one notification with the values intact.
func TestFramingHardening(t *testing.T) {
	nasty := []string{
		"line\nbreak", "carriage\rreturn", "crlf\r\nboth", "nul\x00byte",
		"\n\nevent: evil\ndata: {}\n\n", "id: 1\r\rretry: 1", "\u2028\u2029", "</script><!--",
	}
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		err := st.UpdateTopic(context.Background(), topicA, func(ts *store.TopicState) error {
			ts.Meta.Title = "topic\r\ntitle\x00\n\ndata: x"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sse := n.openSSE(query([]string{topicA}))
		nd := n.openNDJSON([]string{topicA})
		sse.next(waitFor)
		nd.next(waitFor)
		for i, s := range nasty {
			n.publish(topicA, 1, func(it *feed.Item) { it.ID, it.Title = s+string(rune('a'+i)), s })
		}
		// Items published one by one may arrive merged into fewer
		// notifications; each one must carry its items intact, oldest
		// last, and an SSE event's id must be its newest cursor.
		type got struct {
			id, title string
		}
		collect := func(next func() (notification, string)) []got {
			var out []got
			for len(out) < len(nasty) {
				n, id := next()
				if len(n.Items) == 0 {
					t.Fatalf("a notification without items")
				}
				if n.Title != "topic\r\ntitle\x00\n\ndata: x" {
					t.Errorf("topic title came back as %q", n.Title)
				}
				if id != "" && id != n.Items[0].Cursor.String() {
					t.Fatalf("event id %q, newest cursor %s", id, n.Items[0].Cursor)
				}
				for k := len(n.Items) - 1; k >= 0; k-- {
					if want := feed.Cursor(len(out) + 1); n.Items[k].Cursor != want {
						t.Fatalf("got cursor %s, want %s", n.Items[k].Cursor, want)
					}
					out = append(out, got{n.Items[k].ID, n.Items[k].Title})
				}
			}
			return out
		}
		fromSSE := collect(func() (notification, string) { return sse.next(waitFor) })
		fromNDJSON := collect(func() (notification, string) { return nd.next(waitFor), "" })
		for _, items := range [][]got{fromSSE, fromNDJSON} {
			for i, s := range nasty {
				if items[i].title != s || items[i].id != s+string(rune('a'+i)) {
					t.Fatalf("item %d: got %+v, want id %q title %q", i, items[i], s+string(rune('a'+i)), s)
				}
			}
		}
		sse.quiet()
	})
}
