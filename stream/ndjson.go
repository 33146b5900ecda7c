package stream

import "github.com/feedgate/feedgate/live"

// ndjsonSink writes wait=stream&format=json: one JSON object per line,
// the first answers then notifications; a blank line is a keep-alive.
type ndjsonSink struct {
	o byteOut
}

func (n *ndjsonSink) begin() error { return n.o.begin() }
func (n *ndjsonSink) flush() error { return n.o.flush() }

func (n *ndjsonSink) send(_ *session, nt *live.Notification, _ bool) error {
	return n.o.writeShared(nt.Bytes(live.NDJSON))
}

func (n *ndjsonSink) direct(_ *session, _ *live.Notification) (*rawOut, live.Encoding) {
	o, _ := n.o.(*rawOut)
	return o, live.NDJSON
}

var blankLine = []byte("\n")

func (n *ndjsonSink) keepalive() error { return writeNow(n.o, blankLine) }

// bye ends the response: an NDJSON client reconnects when it ends.
func (n *ndjsonSink) bye(live.Reason) {}
