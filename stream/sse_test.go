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
	events   chan sseEvent // closed at the end of the stream
	comments chan string
	retry    chan string
	stop     chan struct{} // closed by close: the reader drops what follows
	done     chan struct{}
	// endedAt is when the stream ended; read it once events is closed.
	endedAt time.Time
}

func (n *node) openSSE(q string, header ...string) *sseClient {
	n.t.Helper()
	header = append([]string{"Accept", "text/event-stream"}, header...)
	resp, cancel := n.open(q, header...)
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
		comments: make(chan string, 1000), retry: make(chan string, 100), stop: make(chan struct{}), done: make(chan struct{})}
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
	defer func() { c.endedAt = time.Now() }()
	sc := bufio.NewScanner(c.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	sc.Split(splitLines)
	var typ, id string
	var data []string
	hasData := false
	put := func(ch chan string, v string) bool {
		select {
		case ch <- v:
			return true
		case <-c.stop:
			return false
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				t := typ
				if t == "" {
					t = "message"
				}
				select {
				case c.events <- sseEvent{typ: t, data: strings.Join(data, "\n"), id: id}:
				case <-c.stop:
					return
				}
			}
			typ, data, hasData = "", nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			if !put(c.comments, strings.TrimPrefix(line, ":")) {
				return
			}
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
			if !put(c.retry, value) {
				return
			}
		}
	}
}

// close ends the stream from the client's side.
func (c *sseClient) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	c.cancel()
	c.resp.Body.Close()
	awaitClosed(c.t, c.done, "the event stream reader to stop after the client closed its stream")
}

// nextEvent returns the next event, whatever its type, failing the test
// after waitFor or at the end of the stream.
func (c *sseClient) nextEvent() sseEvent {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(waitFor):
		c.t.Fatalf("no event within %v", waitFor)
	}
	return sseEvent{}
}

// next returns the next event's notification and id.
func (c *sseClient) next(d time.Duration) (notification, string) {
	c.t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			c.t.Fatal("the event stream ended")
		}
		if ev.typ != "notification" {
			c.t.Fatalf("event type %q (data %q), want notification", ev.typ, ev.data)
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

// nextRetry returns the next retry: field.
func (c *sseClient) nextRetry() string {
	c.t.Helper()
	select {
	case r := <-c.retry:
		return r
	case <-time.After(waitFor):
		c.t.Fatalf("no retry: field within %v", waitFor)
	}
	return ""
}

// ended waits for the server to end the stream and returns the events
// it sent meanwhile, the last one last.
func (c *sseClient) ended(what string) []sseEvent {
	c.t.Helper()
	var evs []sseEvent
	deadline := time.After(waitFor)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		case <-deadline:
			c.t.Fatalf("%s: the event stream did not end within %v", what, waitFor)
		}
	}
}

func TestSSEResumeOneTopic(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{Retry: 1500 * time.Millisecond})
		n.publish(topicA, 3)
		c := n.openSSE(query([]string{topicA}, "count", "2"))
		if r := c.nextRetry(); r != "1500" {
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

		// Resumed from the same id, by header then by query: exactly what
		// followed it, then live items without a repeat.
		want := n.publish(topicA, 3)
		for _, viaQuery := range []bool{false, true} {
			var r *sseClient
			if viaQuery {
				r = n.openSSE(query([]string{topicA}, "lastEventId", id))
			} else {
				r = n.openSSE(query([]string{topicA}), "Last-Event-ID", id)
			}
			got, rid := r.collect(len(want))
			if !equalCursors(got[topicA], want...) || rid != want[len(want)-1].String() {
				t.Fatalf("resumed (query %v): %v id %q, want exactly %v", viaQuery, got, rid, want)
			}
			marker := n.publish(topicA, 1)
			if got, _ := r.collect(1); !equalCursors(got[topicA], marker...) {
				t.Fatalf("resumed (query %v), then live: %v, want exactly %v", viaQuery, got, marker)
			}
			want = append(want, marker...)
			r.close()
		}

		// A token that is not ours is refused, not guessed at.
		resp, _ := n.get(query([]string{topicA}), "Accept", "text/event-stream", "Last-Event-ID", "bogus")
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
		// Nothing repeated: the next event is the next item.
		marker := n.publish(topicA, 1)
		if got, _ := r.collect(1); !equalCursors(got[topicA], marker...) || len(got) != 1 {
			t.Fatalf("resumed, then live: %v, want exactly A %v", got, marker)
		}
		missedA = append(missedA, marker...)

		// A topic the token does not cover starts afresh (its newest items).
		n.publish(topicC, 4)
		r2 := n.openSSE(query([]string{topicA, topicB, topicC}, "count", "1"), "Last-Event-ID", id)
		got, _ = r2.collect(len(missedA) + len(missedB) + 1)
		if !equalCursors(got[topicA], missedA...) || !equalCursors(got[topicB], missedB...) || !equalCursors(got[topicC], 4) {
			t.Fatalf("resumed with a new topic: %v, want A %v, B %v and C [4]", got, missedA, missedB)
		}
	})
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
		// Nothing more: the next event is the next item.
		marker := n.publish(topicA, 1)
		if got, _ := sse.collect(1); !equalCursors(got[topicA], marker...) {
			t.Fatalf("after the hardening items: %v, want exactly %v", got, marker)
		}
	})
}
