package loadgen

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Marker makes and recognises the entry ids of one run:
// urn:fglg:<run>:<seq>:<publish time, Unix ns>. Embedding the publish time
// lets every client compute publish→receive latency from the item alone;
// the run part keeps items of earlier runs (still in the topic's history)
// out of the count.
type Marker struct {
	run    string
	prefix []byte
}

// NewRunID returns a random run id (8 hex digits).
func NewRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// NewMarker returns the marker of run (letters, digits and '-' only).
func NewMarker(run string) Marker {
	return Marker{run: run, prefix: []byte("urn:fglg:" + run + ":")}
}

// ID is the entry id of item seq published at pub.
func (m Marker) ID(seq int, pub time.Time) string {
	return string(m.AppendID(nil, seq, pub.UnixNano()))
}

// AppendID appends the entry id of item seq published at pubNanos.
func (m Marker) AppendID(dst []byte, seq int, pubNanos int64) []byte {
	dst = append(dst, m.prefix...)
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, ':')
	return strconv.AppendInt(dst, pubNanos, 10)
}

// Scan calls fn for every id of this run found in b, in order.
func (m Marker) Scan(b []byte, fn func(seq int, pubNanos int64)) {
	for {
		i := bytes.Index(b, m.prefix)
		if i < 0 {
			return
		}
		b = b[i+len(m.prefix):]
		seq, n := leadingInt(b)
		if n == 0 || n >= len(b) || b[n] != ':' {
			continue
		}
		b = b[n+1:]
		pub, n := leadingInt(b)
		if n == 0 {
			continue
		}
		b = b[n:]
		fn(int(seq), pub)
	}
}

func leadingInt(b []byte) (int64, int) {
	var v int64
	n := 0
	for n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	return v, n
}

// BodyFormat is the document type of fat pings.
type BodyFormat string

// Fat ping body formats.
const (
	BodyAtom BodyFormat = "atom"
	BodyJSON BodyFormat = "json"
)

// ContentType is the fat ping's Content-Type.
func (f BodyFormat) ContentType() string {
	if f == BodyJSON {
		return "application/feed+json"
	}
	return "application/atom+xml"
}

// Entry is one entry of a generated feed document.
type Entry struct {
	Seq      int
	PubNanos int64
}

// FeedBody appends a feed document holding entries (ids made by m) to dst.
// Every entry carries a text content of about size bytes.
func FeedBody(dst []byte, f BodyFormat, m Marker, entries []Entry, size int) []byte {
	pad := padding(size)
	if f == BodyJSON {
		dst = append(dst, `{"version":"https://jsonfeed.org/version/1.1","title":"feedgate loadgen","items":[`...)
		for i, e := range entries {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"id":"`...)
			dst = m.AppendID(dst, e.Seq, e.PubNanos)
			dst = append(dst, `","title":"loadgen item `...)
			dst = strconv.AppendInt(dst, int64(e.Seq), 10)
			dst = append(dst, `","date_published":"`...)
			dst = time.Unix(0, e.PubNanos).UTC().AppendFormat(dst, time.RFC3339)
			dst = append(dst, `","content_text":"`...)
			dst = append(dst, pad...)
			dst = append(dst, `"}`...)
		}
		return append(dst, "]}\n"...)
	}
	now := time.Now().UTC()
	if len(entries) > 0 {
		now = time.Unix(0, entries[len(entries)-1].PubNanos).UTC()
	}
	dst = append(dst, `<?xml version="1.0" encoding="utf-8"?>`+"\n"+`<feed xmlns="http://www.w3.org/2005/Atom"><title>feedgate loadgen</title><id>urn:fglg:feed</id><updated>`...)
	dst = now.AppendFormat(dst, time.RFC3339)
	dst = append(dst, `</updated><author><name>loadgen</name></author>`...)
	for _, e := range entries {
		dst = append(dst, "\n<entry><id>"...)
		dst = m.AppendID(dst, e.Seq, e.PubNanos)
		dst = append(dst, `</id><title>loadgen item `...)
		dst = strconv.AppendInt(dst, int64(e.Seq), 10)
		dst = append(dst, `</title><updated>`...)
		dst = time.Unix(0, e.PubNanos).UTC().AppendFormat(dst, time.RFC3339)
		dst = append(dst, `</updated><content type="text">`...)
		dst = append(dst, pad...)
		dst = append(dst, `</content></entry>`...)
	}
	return append(dst, "\n</feed>\n"...)
}

// padding is size bytes of plain words (no characters to escape).
func padding(size int) string {
	const words = "lorem ipsum dolor sit amet consectetur adipiscing elit "
	if size <= 0 {
		return "x"
	}
	s := strings.Repeat(words, size/len(words)+1)
	return strings.TrimSpace(s[:size])
}
