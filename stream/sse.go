package stream

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/live"
)

// sseSink writes Server-Sent Events: every answer and notification is an
// `event: notification` whose data is the JSON notification and whose id
// is the resume token; comments are keep-alives.
type sseSink struct {
	o     byteOut
	retry time.Duration
	buf   []byte
}

func (s *sseSink) begin() error { return s.o.begin() }
func (s *sseSink) flush() error { return s.o.flush() }

// open tells EventSource how long to wait before reconnecting, and makes
// it fire "open" before anything else arrives.
func (s *sseSink) open() error {
	s.buf = append(s.buf[:0], "retry: "...)
	s.buf = strconv.AppendInt(s.buf, s.retry.Milliseconds(), 10)
	s.buf = append(s.buf, "\n\n"...)
	return writeNow(s.o, bytes.Clone(s.buf))
}

func (s *sseSink) send(sess *session, n *live.Notification, _ bool) error {
	if len(sess.order) == 1 && len(n.N.Items) > 0 && sess.last[n.Topic] == n.Last {
		return s.o.writeShared(n.Bytes(live.SSEEvent))
	}
	if err := s.o.writeShared(n.Bytes(live.SSEData)); err != nil {
		return err
	}
	s.buf = append(s.buf[:0], "id: "...)
	s.buf = sess.appendToken(s.buf)
	s.buf = append(s.buf, "\n\n"...)
	return s.o.write(s.buf)
}

// direct: a one-topic stream's events are the same bytes for every client.
func (s *sseSink) direct(sess *session, _ *live.Notification) (*rawOut, live.Encoding) {
	if len(sess.order) != 1 {
		return nil, 0
	}
	o, _ := s.o.(*rawOut)
	return o, live.SSEEvent
}

var sseKeepalive = []byte(": keep-alive\n\n")

func (s *sseSink) keepalive() error { return writeNow(s.o, sseKeepalive) }

// bye says why the stream ends and asks EventSource to reconnect after a
// jittered delay, so that the clients of a restarting node spread out. A
// stream whose credential expired or was revoked ends with an event of
// that name (data: the error, as the API renders it), so that a page can
// fetch a fresh token before it reconnects.
func (s *sseSink) bye(r live.Reason) {
	s.buf = s.buf[:0]
	if r == live.ReasonExpired || r == live.ReasonRevoked {
		name := "expired"
		if r == live.ReasonRevoked {
			name = "revoked"
		}
		body, _ := json.Marshal(struct {
			Error *api.Error `json:"error"`
		}{api.Errorf(http.StatusUnauthorized, "%s", r.Message())})
		s.buf = append(s.buf, "event: "...)
		s.buf = append(s.buf, name...)
		s.buf = append(s.buf, '\n')
		s.buf = live.AppendSSEField(s.buf, "data", body)
		s.buf = append(s.buf, '\n')
	}
	s.buf = append(s.buf, ": "...)
	s.buf = append(s.buf, r.Message()...)
	s.buf = append(s.buf, "\nretry: "...)
	ms := s.retry.Milliseconds()
	if r == live.ReasonShutdown || r == live.ReasonLifetime {
		ms = ms/2 + jitter(ms)
	}
	s.buf = strconv.AppendInt(s.buf, ms, 10)
	s.buf = append(s.buf, "\n\n"...)
	_ = writeNow(s.o, bytes.Clone(s.buf))
}

// Resume tokens. For one topic the token is the newest cursor sent. For
// several it is "m" and the base64url encoding of, for every topic, the
// first 8 bytes of its FNV-1a hash and its cursor as a uvarint: it covers
// every topic of the stream in a few bytes each and, the URL naming the
// topics, does not need to repeat them.
const multiTokenPrefix = "m"

// appendToken appends the session's current resume token.
func (s *session) appendToken(dst []byte) []byte {
	if len(s.order) == 1 {
		return append(dst, s.last[s.order[0]].String()...)
	}
	raw := make([]byte, 0, len(s.order)*12)
	for _, t := range s.order {
		c, ok := s.last[t]
		if !ok {
			continue
		}
		raw = binary.BigEndian.AppendUint64(raw, topicHash(t))
		raw = binary.AppendUvarint(raw, uint64(c))
	}
	dst = append(dst, multiTokenPrefix...)
	return base64.RawURLEncoding.AppendEncode(dst, raw)
}

func topicHash(t string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(t))
	return h.Sum64()
}

// parseResumeToken reads a Last-Event-ID for the stream's topics: the
// cursor to resume each topic after. Topics the token does not cover start
// afresh.
func parseResumeToken(tok string, topics []string) (map[string]feed.Cursor, error) {
	if c, ok := feed.ParseCursor(tok); ok {
		if len(topics) != 1 {
			return nil, api.Invalid("Last-Event-ID %q is the cursor of a single-topic stream, but this stream has %d topics: reconnect with the id of the last event this stream sent, or drop it", truncate(tok), len(topics))
		}
		return map[string]feed.Cursor{topics[0]: c}, nil
	}
	bad := api.Invalid("Last-Event-ID (or lastEventId) %q is not a resume token of this gateway: give the id of the last event received, or drop it to start afresh", truncate(tok))
	body, ok := strings.CutPrefix(tok, multiTokenPrefix)
	if !ok {
		return nil, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, bad
	}
	byHash := make(map[uint64]feed.Cursor)
	for len(raw) > 0 {
		if len(raw) < 9 {
			return nil, bad
		}
		h := binary.BigEndian.Uint64(raw)
		c, n := binary.Uvarint(raw[8:])
		if n <= 0 {
			return nil, bad
		}
		byHash[h] = feed.Cursor(c)
		raw = raw[8+n:]
	}
	out := make(map[string]feed.Cursor, len(topics))
	for _, t := range topics {
		if c, ok := byHash[topicHash(t)]; ok {
			out[t] = c
		}
	}
	return out, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// jitter returns a random duration in [0, ms) milliseconds.
func jitter(ms int64) int64 {
	if ms <= 0 {
		return 0
	}
	return rand.Int64N(ms)
}
