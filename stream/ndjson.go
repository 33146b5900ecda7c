package stream

// ndjsonSink writes wait=stream&format=json: one JSON object per line,
// the first answers then notifications; a blank line is a keep-alive.
type ndjsonSink struct {
	o byteOut
}

func (n *ndjsonSink) begin() error { return n.o.begin() }
func (n *ndjsonSink) flush() error { return n.o.flush() }

func (n *ndjsonSink) send(_ *session, ev *event, _ bool) error {
	return n.o.writeShared(ev.ndjson())
}

func (n *ndjsonSink) direct(_ *session, _ *event) (*rawOut, payload) {
	o, _ := n.o.(*rawOut)
	return o, payloadNDJSON
}

var blankLine = []byte("\n")

func (n *ndjsonSink) keepalive() error { return writeNow(n.o, blankLine) }

// bye ends the response: an NDJSON client reconnects when it ends.
func (n *ndjsonSink) bye(reason) {}
