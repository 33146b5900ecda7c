package stream

// ndjsonSink writes wait=stream&format=json: one JSON object per line,
// the first answers then notifications; a blank line is a keep-alive.
type ndjsonSink struct {
	*httpOut
}

func (n *ndjsonSink) send(_ *session, ev *event, _ bool) error {
	return n.write(ev.ndjson())
}

var blankLine = []byte("\n")

func (n *ndjsonSink) keepalive() error { return n.writeNow(blankLine) }

// bye ends the response: an NDJSON client reconnects when it ends.
func (n *ndjsonSink) bye(reason) {}
