package live

import (
	"strconv"
	"sync"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// Notification is one notification for one topic: new items, newest first,
// with the topic's status. The hub makes one per append (or per run of
// appends merged while fan-out was busy) and hands the same value to every
// consumer of the topic; transports make their own from store reads for
// history. It is never modified once handed out. Each encoding is made
// once, on first use, and the same bytes are written to every client that
// wants that form.
type Notification struct {
	Topic string
	N     feed.Notification
	// First and Last are the cursors of the oldest and newest item (zero
	// when there are none).
	First, Last feed.Cursor

	hubURL string
	enc    [numEncodings]encoded
	chunk  [numEncodings]encoded
}

type encoded struct {
	once sync.Once
	b    []byte
}

// Encoding names one shared encoding of a notification.
type Encoding int

const (
	// NDJSON is the notification's JSON object and '\n'.
	NDJSON Encoding = iota
	// SSEData is "event: notification\ndata: <JSON>\n": the fields of a
	// Server-Sent Event but its id and end.
	SSEData
	// SSEEvent is the whole event of a one-topic stream, whose id is the
	// newest cursor.
	SSEEvent
	// AtomEntries are the items as Atom entries, oldest first (the order
	// they arrived in).
	AtomEntries
	// AtomDocument is the notification as a complete Atom document.
	AtomDocument
	numEncodings
)

// NewNotification builds the notification of items (oldest first,
// contiguous cursors) appended to topic, whose state is state.
func NewNotification(topic string, state store.TopicState, items []feed.Item, hubURL string) *Notification {
	newest := make([]feed.Item, len(items))
	for i := range items {
		newest[len(items)-1-i] = items[i]
	}
	st := state.Status
	st.Feed = topic
	st.Title = state.Meta.Title
	st.Gap = false
	if len(items) > 0 {
		st.Cursor = items[len(items)-1].Cursor
	}
	n := &Notification{Topic: topic, N: feed.Notification{Status: st, Meta: state.Meta, Items: newest}, hubURL: hubURL}
	if len(items) > 0 {
		n.First, n.Last = items[0].Cursor, items[len(items)-1].Cursor
	}
	return n
}

// FromFeed wraps a notification read from the store (items newest first).
func FromFeed(fn *feed.Notification, hubURL string) *Notification {
	n := &Notification{Topic: fn.Status.Feed, N: *fn, hubURL: hubURL}
	if len(fn.Items) > 0 {
		n.First = fn.Items[len(fn.Items)-1].Cursor
		n.Last = fn.Items[0].Cursor
	}
	return n
}

// Since returns the notification restricted to items after cursor c: n
// itself when all are, else a private copy (encoded for one client).
func (n *Notification) Since(c feed.Cursor) *Notification {
	if n.First > c {
		return n
	}
	k := 0
	for k < len(n.N.Items) && n.N.Items[k].Cursor > c {
		k++
	}
	cp := &Notification{Topic: n.Topic, N: n.N, hubURL: n.hubURL, Last: n.Last}
	cp.N.Items = n.N.Items[:k]
	if k > 0 {
		cp.First = cp.N.Items[k-1].Cursor
	}
	return cp
}

// Bytes returns encoding e of the notification, made once and shared: the
// caller must not modify it.
func (n *Notification) Bytes(e Encoding) []byte {
	x := &n.enc[e]
	x.once.Do(func() { x.b = n.encode(e) })
	return x.b
}

// Chunk returns encoding e framed as an HTTP/1.1 chunk, made once and
// shared.
func (n *Notification) Chunk(e Encoding) []byte {
	x := &n.chunk[e]
	x.once.Do(func() {
		p := n.Bytes(e)
		b := make([]byte, 0, len(p)+12)
		b = strconv.AppendInt(b, int64(len(p)), 16)
		b = append(b, '\r', '\n')
		b = append(b, p...)
		x.b = append(b, '\r', '\n')
	})
	return x.b
}

// JSON returns the notification's JSON object (shared).
func (n *Notification) JSON() []byte {
	b := n.Bytes(NDJSON)
	return b[:len(b)-1]
}

func (n *Notification) encode(e Encoding) []byte {
	switch e {
	case NDJSON:
		return append(feed.AppendJSON(make([]byte, 0, 512), &n.N), '\n')
	case SSEData:
		js := n.JSON()
		b := make([]byte, 0, len(js)+40)
		b = append(b, "event: notification\n"...)
		return AppendSSEField(b, "data", js)
	case SSEEvent:
		data := n.Bytes(SSEData)
		b := make([]byte, 0, len(data)+24)
		b = append(b, data...)
		b = append(b, "id: "...)
		b = append(b, n.Last.String()...)
		return append(b, "\n\n"...)
	case AtomEntries:
		b := make([]byte, 0, 1024*len(n.N.Items))
		for i := len(n.N.Items) - 1; i >= 0; i-- {
			b = feed.AppendAtomEntry(b, n.Topic, &n.N.Items[i])
		}
		return b
	case AtomDocument:
		return feed.AppendAtom(make([]byte, 0, 2048), &n.N, n.Topic, n.hubURL)
	}
	return nil
}

// AppendSSEField appends "name: value\n", splitting value at CR, LF and
// CRLF into one field per line, as EventSource joins them back with LF: a
// line break in value can never end the event early.
func AppendSSEField(dst []byte, name string, value []byte) []byte {
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
