// Package retrieve owns hub.mode=retrieve: its parameters, resolving
// cursors and entry ids, reading a page of items and rendering it as JSON,
// JSONP or Atom. The streaming forms (package stream, package poll) parse
// their parameters here too.
package retrieve

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/feedgate/feedgate/api"
)

// Format is how items are rendered.
type Format int

// The formats of a retrieve.
const (
	Atom Format = iota
	JSON
	SSE
)

// Wait is the waiting form of a retrieve.
type Wait int

// The waiting forms.
const (
	NoWait Wait = iota
	Stream
	Poll
)

// Limits bound what a client may ask for.
type Limits struct {
	// MaxCount is the largest count accepted (default 50).
	MaxCount int
	// MaxTopics bounds hub.topic per stream (default 100).
	MaxTopics int
	// DefaultTimeout and MaxTimeout bound wait=poll (30 s, 120 s).
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxCount <= 0 {
		l.MaxCount = 50
	}
	if l.MaxTopics <= 0 {
		l.MaxTopics = 100
	}
	if l.DefaultTimeout <= 0 {
		l.DefaultTimeout = 30 * time.Second
	}
	if l.MaxTimeout <= 0 {
		l.MaxTimeout = 120 * time.Second
	}
	if l.DefaultTimeout > l.MaxTimeout {
		l.DefaultTimeout = l.MaxTimeout
	}
	return l
}

// DefaultCount is the number of items answered without count.
const DefaultCount = 10

// Request is a parsed retrieve.
type Request struct {
	Topics []string
	Count  int
	// After and Before are cursors or entry ids, as given ("" when absent).
	After, Before string
	// HasAfter is true when after= was given (it may be empty only if so).
	HasAfter    bool
	Format      Format
	Callback    string
	Wait        Wait
	Timeout     time.Duration
	LastEventID string
	// WebSocket is true for an Upgrade: websocket request.
	WebSocket bool
	// ByCallback, when hub.callback replaces hub.topic, is the callback (a
	// % matches any run of characters) whose subscriptions' topics are read.
	ByCallback string
}

// Parse reads and validates a retrieve's parameters.
func Parse(r *http.Request, p api.Params, lim Limits) (Request, error) {
	lim = lim.withDefaults()
	// A server maximum under the default count lowers the default too.
	req := Request{Count: min(DefaultCount, lim.MaxCount), Timeout: lim.DefaultTimeout}
	req.WebSocket = isWebSocket(r)

	switch strings.ToLower(p.Get("wait")) {
	case "":
	case "stream":
		req.Wait = Stream
	case "poll":
		req.Wait = Poll
	default:
		return req, api.Invalid("wait must be stream or poll (or absent for an immediate answer)")
	}

	switch f := strings.ToLower(p.Get("format")); f {
	case "":
		if api.AcceptsJSON(r) {
			req.Format = JSON
		}
	case "atom", "xml":
		req.Format = Atom
	case "json":
		req.Format = JSON
	case "sse":
		req.Format = SSE
	default:
		return req, api.Invalid("format must be atom, json or sse")
	}
	if acceptsEventStream(r) && !req.WebSocket {
		// An EventSource can read nothing but an event stream, whatever
		// format the page put in the URL (Superfeedr's jQuery plugin sends
		// format=json); SSE data is JSON anyway, and SSE is a stream of its
		// own, so wait= says nothing more.
		req.Format, req.Wait = SSE, NoWait
	}

	if cb := p.Get("callback"); cb != "" {
		if !api.ValidCallback(cb) {
			return req, api.Invalid("callback must be a JavaScript identifier path such as jQuery123_456 or app.onFeed (letters, digits, _, $ and dots, at most %d characters)", api.MaxCallback)
		}
		if req.Format == Atom && p.Get("format") != "" {
			return req, api.Invalid("callback (JSONP) needs JSON: drop format=atom")
		}
		if req.Wait == Stream || req.Format == SSE {
			return req, api.Invalid("callback (JSONP) cannot be used with a stream; use wait=poll for JSONP long-polling")
		}
		req.Callback = cb
		req.Format = JSON
	}
	if req.Format == SSE && req.Wait == Poll {
		return req, api.Invalid("wait=poll answers once and cannot be an event stream; drop format=sse or wait=poll")
	}

	req.Topics = p.List("hub.topic")
	live := req.Wait == Stream || req.Format == SSE || req.WebSocket
	if len(req.Topics) == 0 && p.Get("hub.callback") != "" {
		return parseByCallback(req, p, lim, live)
	}
	// A WebSocket may open with no topic and subscribe by message.
	if len(req.Topics) == 0 && !req.WebSocket {
		return req, api.Invalid("hub.topic is required: give the feed URL to retrieve (or hub.callback, for the topics you subscribed with that callback)")
	}
	if !live && len(req.Topics) > 1 {
		return req, api.Invalid("one hub.topic per retrieve (got %d); several topics can be merged with wait=stream, SSE or WebSocket", len(req.Topics))
	}
	if len(req.Topics) > lim.MaxTopics {
		return req, api.Invalid("at most %d hub.topic values per stream (got %d)", lim.MaxTopics, len(req.Topics))
	}
	for _, t := range req.Topics {
		if err := api.CheckURL("hub.topic", t); err != nil {
			return req, err
		}
	}

	if p.Has("count") {
		n, err := strconv.Atoi(p.Get("count"))
		if err != nil || n < 1 || n > lim.MaxCount {
			return req, api.Invalid("count must be an integer from 1 to %d", lim.MaxCount)
		}
		req.Count = n
	}

	req.HasAfter = p.Has("after")
	req.After, req.Before = p.Get("after"), p.Get("before")
	if req.HasAfter && req.After == "" {
		return req, api.Invalid("after must be a cursor or an entry id; drop it to read the newest items")
	}
	if p.Has("before") && req.Before == "" {
		return req, api.Invalid("before must be a cursor or an entry id; drop it to read the newest items")
	}
	if req.After != "" && req.Before != "" {
		return req, api.Invalid("give after or before, not both")
	}
	if req.Before != "" && (live || req.Wait == Poll) {
		return req, api.Invalid("before pages back through history and cannot be used with wait, SSE or WebSocket; use after")
	}
	for _, v := range []string{req.After, req.Before} {
		if len(v) > api.MaxTopicLength {
			return req, api.Invalid("after and before must be at most %d characters", api.MaxTopicLength)
		}
	}

	if p.Has("timeout") {
		n, err := strconv.Atoi(p.Get("timeout"))
		// Compared in seconds: n seconds as a Duration may overflow.
		if err != nil || n < 1 || int64(n) > int64(lim.MaxTimeout/time.Second) {
			return req, api.Invalid("timeout must be a whole number of seconds from 1 to %d", int(lim.MaxTimeout/time.Second))
		}
		req.Timeout = time.Duration(n) * time.Second
	}

	req.LastEventID = strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if req.LastEventID == "" {
		req.LastEventID = p.Get("lastEventId")
	}
	if len(req.LastEventID) > 64*1024 {
		return req, api.Invalid("Last-Event-ID is too long")
	}
	return req, nil
}

// parseByCallback reads a retrieve by hub.callback: count, format and
// callback (JSONP) as for one topic; cursors belong to one topic, and a
// stream to a set of topics, so neither applies.
func parseByCallback(req Request, p api.Params, lim Limits, live bool) (Request, error) {
	req.ByCallback = p.Get("hub.callback")
	if len(req.ByCallback) > api.MaxTopicLength {
		return req, api.Invalid("hub.callback must be at most %d characters", api.MaxTopicLength)
	}
	if live || req.Wait == Poll {
		return req, api.Invalid("hub.callback (the topics subscribed with a callback) answers once: for wait=stream, wait=poll, SSE or WebSocket give the hub.topic values")
	}
	if p.Has("after") || p.Has("before") {
		return req, api.Invalid("after and before are cursors of one topic: give hub.topic instead of hub.callback to page")
	}
	if p.Has("count") {
		n, err := strconv.Atoi(p.Get("count"))
		if err != nil || n < 1 || n > lim.MaxCount {
			return req, api.Invalid("count must be an integer from 1 to %d", lim.MaxCount)
		}
		req.Count = n
	}
	return req, nil
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

func acceptsEventStream(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}
