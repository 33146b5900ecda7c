package stream

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"
)

// byteOut is where an HTTP stream's bytes go: either the net/http response
// (HTTP/2, or a writer that cannot be hijacked) or, for HTTP/1, the
// connection itself, taken over once the response head is decided so that
// an idle stream holds no more than its own state.
type byteOut interface {
	// begin starts a round of writes: it sets the write deadline.
	begin() error
	// write writes p, which the caller may reuse after the call.
	write(p []byte) error
	// writeShared writes p, which nobody modifies (shared encodings).
	writeShared(p []byte) error
	// flush sends the round.
	flush() error
	// abort makes a write in progress (or the next one) fail now; it may be
	// called from any goroutine.
	abort()
}

// writeNow writes p as a round of its own.
func writeNow(o byteOut, p []byte) error {
	if err := o.begin(); err != nil {
		return err
	}
	if err := o.writeShared(p); err != nil {
		return err
	}
	return o.flush()
}

// httpOut writes through net/http with a deadline on every round.
type httpOut struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	failed  bool
}

func (o *httpOut) begin() error {
	if err := o.rc.SetWriteDeadline(time.Now().Add(o.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (o *httpOut) write(p []byte) error {
	_, err := o.w.Write(p)
	o.failed = o.failed || err != nil
	return err
}

func (o *httpOut) writeShared(p []byte) error { return o.write(p) }

func (o *httpOut) flush() error {
	err := o.rc.Flush()
	o.failed = o.failed || err != nil
	return err
}

func (o *httpOut) abort() { _ = o.rc.SetWriteDeadline(time.Unix(1, 0)) }

// rawOut writes an HTTP/1 response on a hijacked connection: the head once,
// then one chunk per round, gathered with writev from the shared encodings
// without copying them.
type rawOut struct {
	conn    net.Conn
	raw     syscall.RawConn // nil when conn has no file descriptor (TLS)
	timeout time.Duration
	chunked bool // HTTP/1.1; an HTTP/1.0 body simply ends with the connection

	// deadlineAt is when the write deadline was last set; it is moved on
	// when a round starts and an eighth of the timeout has passed, not
	// on every round.
	deadlineAt time.Time
	// carry is what a direct write (fast.go) left unwritten; it goes out
	// first.
	carry []byte

	head    []byte // the response head, sent with the first round
	pending net.Buffers
	size    int
	vec     net.Buffers
	hdr     [18]byte
	failed  bool
}

var crlf = []byte("\r\n")

func (o *rawOut) begin() error {
	now := time.Now()
	if now.Sub(o.deadlineAt) < o.timeout/8 {
		return nil
	}
	o.deadlineAt = now
	return o.conn.SetWriteDeadline(now.Add(o.timeout))
}

func (o *rawOut) write(p []byte) error { return o.writeShared(bytes.Clone(p)) }

func (o *rawOut) writeShared(p []byte) error {
	if len(p) > 0 {
		o.pending = append(o.pending, p)
		o.size += len(p)
	}
	return nil
}

func (o *rawOut) flush() error {
	if o.size == 0 && o.head == nil && o.carry == nil {
		return nil
	}
	v := o.vec[:0]
	if o.carry != nil {
		v = append(v, o.carry)
		o.carry = nil
	}
	if o.head != nil {
		v = append(v, o.head)
		o.head = nil
	}
	if o.size > 0 {
		if o.chunked {
			h := strconv.AppendInt(o.hdr[:0], int64(o.size), 16)
			v = append(v, append(h, '\r', '\n'))
		}
		v = append(v, o.pending...)
		if o.chunked {
			v = append(v, crlf)
		}
	}
	o.vec = v[:0]
	_, err := v.WriteTo(o.conn)
	clear(o.pending) // an idle stream keeps no notification alive
	o.pending, o.size = o.pending[:0], 0
	clear(o.vec[:cap(o.vec)])
	o.failed = o.failed || err != nil
	return err
}

func (o *rawOut) abort() { _ = o.conn.SetWriteDeadline(time.Unix(1, 0)) }

// newRawOut serves an HTTP/1 response on a taken-over connection.
func newRawOut(conn net.Conn, timeout time.Duration, chunked bool, head []byte) *rawOut {
	o := &rawOut{conn: conn, timeout: timeout, chunked: chunked, head: head}
	if sc, ok := conn.(syscall.Conn); ok {
		o.raw, _ = sc.SyscallConn()
	}
	return o
}

// finish ends the response (the last chunk, when it ended on purpose) and
// closes the connection.
func (o *rawOut) finish(graceful bool) {
	if graceful && !o.failed && o.chunked {
		_ = o.conn.SetWriteDeadline(time.Now().Add(o.timeout))
		if o.carry != nil {
			_, _ = o.conn.Write(o.carry)
		}
		_, _ = o.conn.Write([]byte("0\r\n\r\n"))
	}
	_ = o.conn.Close()
}

// responseHead renders a status line and headers.
func responseHead(proto string, h http.Header) []byte {
	var b bytes.Buffer
	b.WriteString(proto)
	b.WriteString(" 200 OK\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return b.Bytes()
}
