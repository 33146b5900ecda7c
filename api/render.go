package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"strings"

	"github.com/feedgate/feedgate/store"
)

// Want is how the client asked to be answered.
type Want struct {
	// JSON is true for format=json, Accept: application/json, or JSONP.
	JSON bool
	// Callback is a validated JSONP function name ("" for none).
	Callback string
}

var callbackPattern = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*(\.[A-Za-z_$][A-Za-z0-9_$]*)*$`)

// MaxCallback bounds the length of a JSONP callback name.
const MaxCallback = 128

// ValidCallback reports whether name is a safe JSONP callback: a JavaScript
// identifier path such as jQuery3600_1 or app.feeds.onData.
func ValidCallback(name string) bool {
	return len(name) <= MaxCallback && callbackPattern.MatchString(name)
}

// Negotiate reads how the client wants answers (and errors) rendered. An
// invalid callback is ignored here; the handler's own parameter parsing
// rejects it with a 422.
func Negotiate(r *http.Request, p Params) Want {
	w := Want{}
	if cb := p.Get("callback"); cb != "" && ValidCallback(cb) {
		w.Callback = cb
		w.JSON = true
		return w
	}
	switch strings.ToLower(p.Get("format")) {
	case "json":
		w.JSON = true
	case "":
		w.JSON = AcceptsJSON(r)
	}
	return w
}

// AcceptsJSON reports whether the Accept header names application/json.
func AcceptsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
			return true
		}
	}
	return false
}

// ClientClosed answers a request whose client went away (nginx's 499): it
// is never seen by the client and is not a server error.
var ClientClosed = &Error{Code: 499, Message: "the client closed the request"}

// ErrorOf turns any error into an *Error: store unavailability is a 503;
// anything unexpected is a 500 that hides internals (and is logged).
func ErrorOf(err error) *Error {
	if e, ok := AsError(err); ok {
		return e
	}
	if errors.Is(err, store.ErrNotReplicated) {
		return NotReplicated
	}
	if errors.Is(err, store.ErrUnavailable) {
		return Unavailable
	}
	if errors.Is(err, context.Canceled) {
		// The client went away before the answer; nothing to log.
		return ClientClosed
	}
	slog.Error("internal error", slog.Any("err", err))
	return Errorf(http.StatusInternalServerError, "internal error; the request was not completed, retry later")
}

// WriteError renders err as the client wants it: JSON, JSONP (status 200 so
// that a <script> tag still calls back) or plain text.
func WriteError(w http.ResponseWriter, want Want, err error) {
	e := ErrorOf(err)
	h := w.Header()
	for k, vs := range e.Header {
		h[k] = vs
	}
	h.Set("Cache-Control", "no-store")
	body, _ := json.Marshal(struct {
		Error *Error `json:"error"`
	}{e})
	switch {
	case want.Callback != "":
		WriteJSONP(w, want.Callback, body)
	case want.JSON:
		h.Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(e.Code)
		w.Write(append(body, '\n'))
	default:
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(e.Code)
		w.Write([]byte(e.Message + "\n"))
	}
}

// WriteJSONP writes callback(body); with status 200. The leading comment
// guards against content-sniffing attacks on the callback name.
func WriteJSONP(w http.ResponseWriter, callback string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/javascript; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	buf := make([]byte, 0, len(callback)+len(body)+16)
	buf = append(buf, "/**/"...)
	buf = append(buf, callback...)
	buf = append(buf, '(')
	buf = append(buf, body...)
	buf = append(buf, ");\n"...)
	w.Write(buf)
}
