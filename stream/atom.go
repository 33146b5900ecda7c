package stream

import (
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/live"
)

// atomSink writes wait=stream in Atom: one <feed> that stays open while
// the stream lives, opened with the first topic's answer; every later item
// is an <entry> written as it arrives. Whitespace is the keep-alive.
type atomSink struct {
	o      byteOut
	hubURL string
	opened bool
	buf    []byte
}

func (a *atomSink) begin() error { return a.o.begin() }
func (a *atomSink) flush() error { return a.o.flush() }

func (a *atomSink) send(_ *session, n *live.Notification, first bool) error {
	if first || !a.opened {
		// A first answer: its entries, newest first as in a retrieve
		// answer, after the feed's head for the stream's first topic.
		a.buf = a.buf[:0]
		if !a.opened {
			a.opened = true
			a.buf = feed.AppendAtomOpen(a.buf, &n.N, n.Topic, a.hubURL)
		}
		for i := range n.N.Items {
			a.buf = feed.AppendAtomEntry(a.buf, n.Topic, &n.N.Items[i])
		}
		return a.o.write(a.buf)
	}
	return a.o.writeShared(n.Bytes(live.AtomEntries))
}

func (a *atomSink) direct(_ *session, _ *live.Notification) (*rawOut, live.Encoding) {
	if !a.opened {
		return nil, 0
	}
	o, _ := a.o.(*rawOut)
	return o, live.AtomEntries
}

var atomSpace = []byte("\n")

func (a *atomSink) keepalive() error { return writeNow(a.o, atomSpace) }

// bye closes the feed document, so that what was received parses as a
// whole, and ends the response.
func (a *atomSink) bye(live.Reason) {
	if a.opened {
		_ = writeNow(a.o, []byte(feed.AtomClose))
	}
}
