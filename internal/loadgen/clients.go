package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// errLate is a connection that completed after the connect phase ended.
var errLate = errors.New("connected after --connect-timeout")

// statusError is a non-200 answer to a client's request.
func statusError(status int, body []byte) error {
	body = bytes.TrimSpace(body)
	if len(body) > 100 {
		body = body[:100]
	}
	return fmt.Errorf("status %d: %s", status, body)
}

// handoff ends a client's connect phase: it stops closing the connection
// with the connect phase, marks the client ready, frees its connect slot
// and closes the connection when the run ends instead. It returns a
// function to call when the client is done, or an error.
func (r *streamRun) handoff(c *client, stopConnect func() bool, release func(), closer func()) (func() bool, error) {
	if !stopConnect() {
		return nil, errLate
	}
	if !r.connected(c) {
		return nil, errLate
	}
	release()
	return context.AfterFunc(r.runCtx, closer), nil
}

// openStream writes req on nc and reads the answer's head: the lines of
// the body of a 200, or an error saying what else came.
func openStream(nc net.Conn, req []byte) (*LineReader, error) {
	if _, err := nc.Write(req); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	h, err := ReadHead(br)
	if err != nil {
		return nil, err
	}
	if h.Status != 200 {
		body, _ := h.ReadBody(br, nil, 4096)
		return nil, statusError(h.Status, body)
	}
	return NewLineReader(h.Body(br), 4096), nil
}

// newDialer spreads clients over sources addresses (0: one per 2000
// clients).
func newDialer(t *Target, sources, clients int) (*Dialer, error) {
	if sources == 0 {
		sources = AutoSources(clients)
	}
	return NewDialer(t.Addr, sources)
}

// streamClient is an NDJSON (wait=stream) or SSE client on the lean HTTP
// client: one goroutine, one connection, lines read with reused buffers.
func (r *streamRun) streamClient(c *client, release func()) error {
	sse := r.cfg.Kind == KindSSE
	q := r.query()
	var extra []string
	if sse {
		extra = []string{"Accept", "text/event-stream"}
	} else {
		q.Set("format", "json")
		q.Set("wait", "stream")
	}
	target, dialer := r.cfg.Target, r.dialer
	if c.node > 0 {
		target, dialer = r.cfg.Also[c.node-1], r.nodes[c.node-1]
	}
	req := BuildGet(target, q, r.cfg.Auth, extra...)
	nc, err := dialer.Dial(r.connCtx)
	if err != nil {
		return err
	}
	defer nc.Close()
	stopConnect := context.AfterFunc(r.connCtx, func() { nc.Close() })
	defer stopConnect()
	lr, err := openStream(nc, req)
	if err != nil {
		return err
	}
	// The first answer (NDJSON: line 1; SSE: the first data line, the
	// retrieve answer as an event) means the client is connected.
	for {
		line, err := lr.Line()
		if err != nil {
			return fmt.Errorf("reading the first answer: %w", err)
		}
		if sse && !bytes.HasPrefix(line, []byte("data:")) {
			continue
		}
		r.deliver(c, line, time.Now().UnixNano())
		break
	}
	stop, err := r.handoff(c, stopConnect, release, func() { nc.Close() })
	if err != nil {
		return err
	}
	defer stop()
	for {
		line, err := lr.Line()
		if err != nil {
			if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("the gateway ended the stream: %w", err)
			}
			return err
		}
		if len(line) == 0 {
			continue // keep-alive, or the end of an SSE event
		}
		if sse && !bytes.HasPrefix(line, []byte("data:")) {
			continue // event:, id:, retry:, comments
		}
		r.deliver(c, line, time.Now().UnixNano())
	}
}

// wsClient is a WebSocket client (gorilla/websocket), authenticated by the
// authorization= query parameter as a browser would be.
func (r *streamRun) wsClient(c *client, release func()) error {
	q := r.query()
	q.Set("format", "json")
	q.Set("authorization", r.cfg.Auth.Param())
	path := r.cfg.WSPath
	if path == "" {
		path = r.cfg.Target.Path
	}
	u := "ws://" + r.cfg.Target.Host + path + "?" + q.Encode()
	d := websocket.Dialer{
		NetDialContext:   r.dialer.DialContext,
		HandshakeTimeout: r.cfg.ConnectTimeout,
		ReadBufferSize:   4096,
		WriteBufferSize:  512,
	}
	conn, resp, err := d.DialContext(r.connCtx, u, nil)
	if err != nil {
		if resp != nil && resp.StatusCode != 101 {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			return statusError(resp.StatusCode, body)
		}
		return err
	}
	defer conn.Close()
	closer := func() { conn.NetConn().Close() }
	stopConnect := context.AfterFunc(r.connCtx, closer)
	defer stopConnect()
	conn.SetReadLimit(64 << 20)
	buf := make([]byte, 0, 4096)
	read := func() ([]byte, error) {
		_, rd, err := conn.NextReader()
		if err != nil {
			return nil, err
		}
		buf = buf[:0]
		for {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			n, err := rd.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if err == io.EOF {
				return buf, nil
			}
			if err != nil {
				return nil, err
			}
		}
	}
	msg, err := read()
	if err != nil {
		return fmt.Errorf("reading the first message: %w", err)
	}
	r.deliver(c, msg, time.Now().UnixNano())
	stop, err := r.handoff(c, stopConnect, release, closer)
	if err != nil {
		return err
	}
	defer stop()
	for {
		msg, err := read()
		if err != nil {
			return err
		}
		r.deliver(c, msg, time.Now().UnixNano())
	}
}

// pollClient repeats wait=poll long-polls with after=<newest cursor seen>,
// over a keep-alive connection it re-opens when the gateway closes it (a
// re-opened connection is counted, not treated as a drop: a long-poll
// client loses nothing by reconnecting).
func (r *streamRun) pollClient(c *client, release func()) error {
	base := r.query()
	base.Set("format", "json")
	base.Set("wait", "poll")
	base.Set("count", "50")
	base.Set("timeout", strconv.Itoa(r.cfg.PollTimeout))
	p := &poller{r: r, c: c, base: base.Encode()}

	// The first answer on the first connection ends the connect phase.
	nc, err := r.dialer.Dial(r.connCtx)
	if err != nil {
		return err
	}
	stopConnect := context.AfterFunc(r.connCtx, func() { nc.Close() })
	br := bufio.NewReaderSize(nc, 4096)
	reopen, err := p.poll(nc, br)
	if err != nil {
		stopConnect()
		nc.Close()
		return err
	}
	conn := nc
	stop, err := r.handoff(c, stopConnect, release, func() { conn.Close() })
	if err != nil {
		nc.Close()
		return err
	}
	defer func() {
		stop()
		nc.Close()
	}()
	for {
		if reopen {
			stop()
			nc.Close()
			next, err := r.dialer.Dial(r.runCtx)
			if err != nil {
				if r.runCtx.Err() != nil {
					return err
				}
				c.reconn++
				sleepCtx(r.runCtx, 50*time.Millisecond)
				continue
			}
			nc = next
			conn := nc
			stop = context.AfterFunc(r.runCtx, func() { conn.Close() })
			br = bufio.NewReaderSize(nc, 4096)
		}
		reopen, err = p.poll(nc, br)
		if err != nil {
			var se *pollStatusError
			if errors.As(err, &se) || r.runCtx.Err() != nil {
				return err
			}
			c.reconn++
			reopen = true
		}
	}
}

// poller is a long-poll client's request state.
type poller struct {
	r      *streamRun
	c      *client
	base   string // encoded query without after
	cursor string
	req    []byte
	body   []byte
}

// pollStatusError is a long-poll answered with a status other than 200.
type pollStatusError struct{ err error }

func (e *pollStatusError) Error() string { return e.err.Error() }

// poll sends one long-poll on nc and reads its answer; it reports whether
// the gateway closes the connection after it.
func (p *poller) poll(nc net.Conn, br *bufio.Reader) (bool, error) {
	t := p.r.cfg.Target
	p.req = append(p.req[:0], "GET "...)
	p.req = append(p.req, t.Path...)
	p.req = append(p.req, '?')
	p.req = append(p.req, p.base...)
	if p.cursor != "" {
		p.req = append(p.req, "&after="...)
		p.req = append(p.req, url.QueryEscape(p.cursor)...)
	}
	p.req = append(p.req, " HTTP/1.1\r\nHost: "...)
	p.req = append(p.req, t.Host...)
	p.req = append(p.req, "\r\nUser-Agent: feedgate-loadgen\r\nAuthorization: "...)
	p.req = append(p.req, p.r.cfg.Auth.Basic()...)
	p.req = append(p.req, "\r\n\r\n"...)
	if _, err := nc.Write(p.req); err != nil {
		return true, err
	}
	h, err := ReadHead(br)
	if err != nil {
		return true, err
	}
	p.body, err = h.ReadBody(br, p.body[:0], 64<<20)
	if err != nil {
		return true, err
	}
	now := time.Now().UnixNano()
	if h.Status != 200 {
		return true, &pollStatusError{statusError(h.Status, p.body)}
	}
	p.r.deliver(p.c, p.body, now)
	if cur := newestCursor(p.body); cur > p.cursor {
		p.cursor = cur
	}
	return h.Close, nil
}

var (
	itemsKey  = []byte(`"items":[`)
	cursorKey = []byte(`"cursor":"`)
)

// newestCursor returns the greatest item cursor of a JSON retrieve answer
// (cursors are fixed-width, so they compare as strings), or "".
func newestCursor(body []byte) string {
	i := bytes.Index(body, itemsKey)
	if i < 0 {
		return ""
	}
	b := body[i:]
	var best []byte
	for {
		j := bytes.Index(b, cursorKey)
		if j < 0 {
			break
		}
		b = b[j+len(cursorKey):]
		k := bytes.IndexByte(b, '"')
		if k < 0 {
			break
		}
		if cur := b[:k]; bytes.Compare(cur, best) > 0 {
			best = cur
		}
		b = b[k:]
	}
	return string(best)
}
