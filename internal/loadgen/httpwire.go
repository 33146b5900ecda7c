package loadgen

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"net/url"
	"strconv"
)

// The lean HTTP/1.1 client used by the load runs: requests are built once
// as bytes and written as is; responses are parsed just enough to find
// their status and the end of their body. The load generator shares the
// machine with the gateway, so every cycle it does not spend is a cycle the
// gateway gets; net/http costs several times more per request (two
// goroutines per connection, header maps, allocations per response).

// Auth is HTTP Basic credentials.
type Auth struct {
	Login, Token string
}

// Basic is the value of the Authorization header.
func (a Auth) Basic() string {
	return "Basic " + a.Param()
}

// Param is the value of the authorization= query parameter.
func (a Auth) Param() string {
	return base64.StdEncoding.EncodeToString([]byte(a.Login + ":" + a.Token))
}

// BuildGet returns a complete keep-alive GET request for path?query.
func BuildGet(t *Target, query url.Values, auth Auth, extra ...string) []byte {
	var b bytes.Buffer
	b.WriteString("GET ")
	b.WriteString(t.Path)
	if len(query) > 0 {
		b.WriteByte('?')
		b.WriteString(query.Encode())
	}
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(t.Host)
	b.WriteString("\r\nUser-Agent: feedgate-loadgen\r\n")
	if auth.Login != "" {
		b.WriteString("Authorization: ")
		b.WriteString(auth.Basic())
		b.WriteString("\r\n")
	}
	for i := 0; i+1 < len(extra); i += 2 {
		b.WriteString(extra[i])
		b.WriteString(": ")
		b.WriteString(extra[i+1])
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// Head is what the lean client keeps of a response head.
type Head struct {
	Status int
	// Length is the Content-Length, or -1 when the body is chunked or
	// delimited by the end of the connection.
	Length  int64
	Chunked bool
	Close   bool
}

var (
	hContentLength    = []byte("content-length:")
	hTransferEncoding = []byte("transfer-encoding:")
	hConnection       = []byte("connection:")
)

// ErrMalformed reports a response the lean client cannot read.
var ErrMalformed = errors.New("malformed HTTP response")

// ReadHead reads a response's status line and headers.
func ReadHead(br *bufio.Reader) (Head, error) {
	h := Head{Length: -1}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return h, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return h, fmt.Errorf("%w: status line %q", ErrMalformed, trimCRLF(line))
	}
	st, ok := atoiBytes(line[9:12])
	if !ok {
		return h, fmt.Errorf("%w: status line %q", ErrMalformed, trimCRLF(line))
	}
	h.Status = st
	h.Close = line[7] == '0' // HTTP/1.0
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return h, fmt.Errorf("%w: header line longer than %d bytes", ErrMalformed, br.Size())
			}
			return h, err
		}
		line = trimCRLF(line)
		if len(line) == 0 {
			break
		}
		switch {
		case hasPrefixFold(line, hContentLength):
			n, ok := atoiBytes(bytes.TrimSpace(line[len(hContentLength):]))
			if !ok {
				return h, fmt.Errorf("%w: %q", ErrMalformed, line)
			}
			h.Length = int64(n)
		case hasPrefixFold(line, hTransferEncoding):
			h.Chunked = bytes.Contains(bytes.ToLower(line[len(hTransferEncoding):]), []byte("chunked"))
		case hasPrefixFold(line, hConnection):
			h.Close = bytes.Contains(bytes.ToLower(line[len(hConnection):]), []byte("close"))
		}
	}
	if h.Chunked {
		h.Length = -1
	}
	if h.Status == 204 || h.Status == 304 || h.Status/100 == 1 {
		h.Length = 0
	}
	if h.Length < 0 && !h.Chunked {
		h.Close = true // read until the connection ends
	}
	return h, nil
}

// Body returns a reader of the response body that ends where the body ends.
func (h Head) Body(br *bufio.Reader) io.Reader {
	switch {
	case h.Chunked:
		return &chunkedBody{cr: httputil.NewChunkedReader(br), br: br}
	case h.Length >= 0:
		return io.LimitReader(br, h.Length)
	default:
		return br
	}
}

// chunkedBody reads a chunked body and, at its end, the trailer (which
// httputil's chunked reader leaves unread), so the connection can carry the
// next response.
type chunkedBody struct {
	cr   io.Reader
	br   *bufio.Reader
	done bool
}

func (c *chunkedBody) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	n, err := c.cr.Read(p)
	if err == io.EOF {
		for {
			line, lerr := c.br.ReadSlice('\n')
			if lerr != nil {
				return n, fmt.Errorf("reading the chunked trailer: %w", lerr)
			}
			if len(trimCRLF(line)) == 0 {
				break
			}
		}
		c.done = true
	}
	return n, err
}

// DiscardBody skips the response body and returns its size.
func (h Head) DiscardBody(br *bufio.Reader) (int64, error) {
	if h.Length >= 0 && !h.Chunked {
		n, err := br.Discard(int(h.Length))
		return int64(n), err
	}
	return io.Copy(io.Discard, h.Body(br))
}

// ReadBody appends the response body to buf, refusing bodies above max.
func (h Head) ReadBody(br *bufio.Reader, buf []byte, max int) ([]byte, error) {
	if h.Length > int64(max) {
		return buf, fmt.Errorf("response body of %d bytes is larger than %d", h.Length, max)
	}
	r := h.Body(br)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= max {
				return buf, fmt.Errorf("response body is larger than %d bytes", max)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// LineReader reads lines of a streamed body, reusing its buffers: a line is
// valid until the next call.
type LineReader struct {
	br      *bufio.Reader
	scratch []byte
}

// NewLineReader reads lines from r with a buffer of size bytes.
func NewLineReader(r io.Reader, size int) *LineReader {
	return &LineReader{br: bufio.NewReaderSize(r, size)}
}

// Line returns the next line without its line ending.
func (l *LineReader) Line() ([]byte, error) {
	line, err := l.br.ReadSlice('\n')
	if err == nil {
		return trimCRLF(line), nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	l.scratch = append(l.scratch[:0], line...)
	for {
		line, err = l.br.ReadSlice('\n')
		l.scratch = append(l.scratch, line...)
		if err == nil {
			return trimCRLF(l.scratch), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		if len(l.scratch) > 64<<20 {
			return nil, fmt.Errorf("a line longer than 64 MiB")
		}
	}
}

func trimCRLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

func hasPrefixFold(s, lowerPrefix []byte) bool {
	if len(s) < len(lowerPrefix) {
		return false
	}
	for i, c := range lowerPrefix {
		d := s[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if d != c {
			return false
		}
	}
	return true
}

func atoiBytes(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// statusText names a status for reports.
func statusText(code int) string {
	return strconv.Itoa(code)
}
