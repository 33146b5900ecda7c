package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/feedgate/feedgate/fetch"
)

// TestClassifyTimeouts: a callback that does not answer in time is a
// time-out however the limit ran out (the client's timeout, the POST's
// context), told by the error's type, not its text.
func TestClassifyTimeouts(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	now := time.Now()

	f := fetch.New(fetch.Options{AllowPrivate: true, Timeout: 50 * time.Millisecond})
	_, err := f.Post(context.Background(), srv.URL, "application/json", []byte("{}"), nil)
	if o := classify(nil, err, now); o.reason != "timeout" {
		t.Errorf("client time-out %v classified %q, want timeout", err, o.reason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = fetch.New(fetch.Options{AllowPrivate: true}).Post(ctx, srv.URL, "application/json", []byte("{}"), nil)
	if o := classify(nil, err, now); o.reason != "timeout" {
		t.Errorf("context time-out %v classified %q, want timeout", err, o.reason)
	}
	if o := classify(nil, fmt.Errorf("fetching x: %w", errors.New("the operation timed out, in words")), now); o.reason != "network" {
		t.Errorf("an error that only says it timed out classified %q, want network", o.reason)
	}
}
