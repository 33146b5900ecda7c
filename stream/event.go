package stream

import (
	"sync"

	"github.com/gorilla/websocket"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// event is one notification for one topic: the items a batch announced
// (or a client read to fill a hole), newest first. Shared events go to
// every client of the topic; each encoding is made once, on first use, and
// the same bytes are written to every client that wants that format.
// An event is never modified after it is handed to clients.
type event struct {
	topic  string
	n      feed.Notification
	first  feed.Cursor // oldest item's cursor
	last   feed.Cursor // newest item's cursor
	hubURL string

	jsonOnce sync.Once
	json     []byte // notification JSON and '\n' (an NDJSON line)
	sseOnce  sync.Once
	sse      []byte // "event: notification\ndata: ...\n" without id and end of event
	sse1Once sync.Once
	sse1     []byte // the whole event with "id: <newest cursor>", for one-topic streams
	atomOnce sync.Once
	atom     []byte // the items as Atom entries, oldest first (arrival order)
	docOnce  sync.Once
	doc      []byte // a complete Atom document (long-poll answers)
	wsOnce   sync.Once
	ws       *websocket.PreparedMessage
	wsErr    error
	chunks   [payloads]chunkOnce // shared encodings as HTTP/1.1 chunks
}

// newEvent builds the notification of items (oldest first, contiguous
// cursors) for topic with the topic's state.
func newEvent(topic string, state store.TopicState, items []feed.Item, hubURL string) *event {
	newest := make([]feed.Item, len(items))
	for i := range items {
		newest[len(items)-1-i] = items[i]
	}
	st := state.Status
	st.Feed = topic
	st.Title = state.Meta.Title
	st.Cursor = items[len(items)-1].Cursor
	st.Gap = false
	return &event{
		topic:  topic,
		n:      feed.Notification{Status: st, Meta: state.Meta, Items: newest},
		first:  items[0].Cursor,
		last:   items[len(items)-1].Cursor,
		hubURL: hubURL,
	}
}

// eventOf wraps a notification read from the store (items newest first).
func eventOf(n *feed.Notification, hubURL string) *event {
	ev := &event{topic: n.Status.Feed, n: *n, hubURL: hubURL}
	if len(n.Items) > 0 {
		ev.first = n.Items[len(n.Items)-1].Cursor
		ev.last = n.Items[0].Cursor
	}
	return ev
}

// since returns the event restricted to items after cursor c: the event
// itself when all are, else a private copy (encoded for one client).
func (ev *event) since(c feed.Cursor) *event {
	if ev.first > c {
		return ev
	}
	k := 0
	for k < len(ev.n.Items) && ev.n.Items[k].Cursor > c {
		k++
	}
	cp := &event{topic: ev.topic, n: ev.n, hubURL: ev.hubURL, last: ev.last}
	cp.n.Items = ev.n.Items[:k]
	if k > 0 {
		cp.first = cp.n.Items[k-1].Cursor
	}
	return cp
}

// ndjson is the notification as one NDJSON line.
func (ev *event) ndjson() []byte {
	ev.jsonOnce.Do(func() {
		ev.json = append(feed.AppendJSON(make([]byte, 0, 512), &ev.n), '\n')
	})
	return ev.json
}

// jsonBytes is the notification's JSON object.
func (ev *event) jsonBytes() []byte {
	b := ev.ndjson()
	return b[:len(b)-1]
}

// sseData is the event's SSE fields but the id: the event name and the JSON
// as data lines. A JSON encoding has no raw line breaks, but should one
// appear it becomes another data line instead of breaking the framing.
func (ev *event) sseData() []byte {
	ev.sseOnce.Do(func() {
		js := ev.jsonBytes()
		b := make([]byte, 0, len(js)+40)
		b = append(b, "event: notification\n"...)
		ev.sse = appendSSEField(b, "data", js)
	})
	return ev.sse
}

// sseFrame is the whole event as a one-topic stream sends it: its id is
// the newest cursor.
func (ev *event) sseFrame() []byte {
	ev.sse1Once.Do(func() {
		data := ev.sseData()
		b := make([]byte, 0, len(data)+24)
		b = append(b, data...)
		b = append(b, "id: "...)
		b = append(b, ev.last.String()...)
		ev.sse1 = append(b, "\n\n"...)
	})
	return ev.sse1
}

// atomEntries is the event's items as Atom entries in arrival order.
func (ev *event) atomEntries() []byte {
	ev.atomOnce.Do(func() {
		b := make([]byte, 0, 1024*len(ev.n.Items))
		for i := len(ev.n.Items) - 1; i >= 0; i-- {
			b = feed.AppendAtomEntry(b, ev.topic, &ev.n.Items[i])
		}
		ev.atom = b
	})
	return ev.atom
}

// atomDoc is the notification as a complete Atom document.
func (ev *event) atomDoc() []byte {
	ev.docOnce.Do(func() {
		ev.doc = feed.AppendAtom(make([]byte, 0, 2048), &ev.n, ev.topic, ev.hubURL)
	})
	return ev.doc
}

// wsMessage is the notification as a WebSocket text message, framed once
// for every connection that shares its settings.
func (ev *event) wsMessage() (*websocket.PreparedMessage, error) {
	ev.wsOnce.Do(func() {
		ev.ws, ev.wsErr = websocket.NewPreparedMessage(websocket.TextMessage, ev.jsonBytes())
	})
	return ev.ws, ev.wsErr
}

// appendSSEField appends "name: value\n", splitting value at CR, LF and
// CRLF into one field per line, as EventSource joins them back with LF.
func appendSSEField(dst []byte, name string, value []byte) []byte {
	for {
		dst = append(dst, name...)
		dst = append(dst, ':', ' ')
		i := 0
		for i < len(value) && value[i] != '\n' && value[i] != '\r' {
			i++
		}
		dst = append(dst, value[:i]...)
		dst = append(dst, '\n')
		if i == len(value) {
			return dst
		}
		if value[i] == '\r' && i+1 < len(value) && value[i+1] == '\n' {
			i++
		}
		value = value[i+1:]
	}
}
