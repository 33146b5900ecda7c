// Package api owns what every hub-endpoint handler shares: reading the
// parameters of a request (query string and form body alike), the error
// type that carries an HTTP status and a message a user can act on, and the
// one renderer that writes such errors as JSON, JSONP or text.
package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a failure to show to the client: a status code and a message
// that says what is wrong and how to fix it.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// Header holds extra response headers (e.g. WWW-Authenticate).
	Header http.Header `json:"-"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Message) }

// Errorf returns an Error with the status code and a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid is a 422 for a parameter the client must change.
func Invalid(format string, args ...any) *Error {
	return Errorf(http.StatusUnprocessableEntity, format, args...)
}

// Unavailable is the 503 answered when the store cannot be reached.
var Unavailable = &Error{
	Code:    http.StatusServiceUnavailable,
	Message: "the store is unavailable; nothing was changed, retry in a few seconds",
	Header:  http.Header{"Retry-After": {"5"}},
}

// NotReplicated is the 503 answered when a write was made on the Redis
// master but not confirmed by as many replicas as --redis-wait-replicas
// asks within its timeout: it could still be lost in a failover.
var NotReplicated = &Error{
	Code: http.StatusServiceUnavailable,
	Message: "the write is not yet confirmed by enough Redis replicas (--redis-wait-replicas), so a failover could still lose it; " +
		"retry the same request in a moment: it is idempotent and stores nothing twice",
	Header: http.Header{"Retry-After": {"1"}},
}

// AsError returns err as an *Error when it is one (or wraps one).
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}
