package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/feedgate/feedgate/store"
)

func TestValidCallback(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"cb": true, "jQuery3600_1": true, "$": true, "_x": true, "app.feeds.onData": true, "a1.$b._c": true,
		strings.Repeat("a", MaxCallback):   true,
		"":                                 false,
		strings.Repeat("a", MaxCallback+1): false,
		"1abc":                             false,
		"a..b":                             false,
		".a":                               false,
		"a.":                               false,
		"a-b":                              false,
		"a b":                              false,
		"alert(1)":                         false,
		"a;b":                              false,
		"a[0]":                             false,
		"a\nb":                             false,
		"ünïcode":                          false,
		"a</script>":                       false,
	} {
		if got := ValidCallback(name); got != ok {
			t.Errorf("ValidCallback(%q) = %v, want %v", name, got, ok)
		}
	}
}

func TestNegotiate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		query, accept string
		want          Want
	}{
		{"", "", Want{}},
		{"format=json", "", Want{JSON: true}},
		{"format=JSON", "", Want{JSON: true}},
		{"format=atom", "application/json", Want{}},
		{"", "application/json", Want{JSON: true}},
		{"", "text/html, application/json;q=0.9", Want{JSON: true}},
		{"", "application/feed+json", Want{JSON: true}},
		{"", "application/atom+xml", Want{}},
		{"", "*/*", Want{}},
		{"", "application/json;;;broken", Want{}},
		{"callback=cb", "", Want{JSON: true, Callback: "cb"}},
		{"callback=app.on&format=atom", "", Want{JSON: true, Callback: "app.on"}},
		// An invalid callback is ignored here (the handler's parsing
		// refuses it): the error renders as the format says.
		{"callback=alert(1)", "", Want{}},
		{"callback=alert(1)&format=json", "", Want{JSON: true}},
	} {
		r := httptest.NewRequest(http.MethodGet, "/?"+c.query, nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		q, _ := url.ParseQuery(c.query)
		if got := Negotiate(r, Params{Values: q}); got != c.want {
			t.Errorf("Negotiate(%q, Accept %q) = %+v, want %+v", c.query, c.accept, got, c.want)
		}
	}
}

func TestErrorOf(t *testing.T) {
	t.Parallel()
	e := Invalid("count must be an integer from 1 to %d", 50)
	for _, c := range []struct {
		err  error
		code int
		msg  string
	}{
		{e, 422, "count must be an integer from 1 to 50"},
		{fmt.Errorf("reading: %w", e), 422, "count must be"},
		{store.ErrUnavailable, 503, "store is unavailable"},
		{fmt.Errorf("append: %w", store.ErrUnavailable), 503, "retry"},
		{context.Canceled, 499, "closed the request"},
		{errors.New("redis: secret internal detail"), 500, "internal error"},
	} {
		got := ErrorOf(c.err)
		if got.Code != c.code || !strings.Contains(got.Message, c.msg) {
			t.Errorf("ErrorOf(%v) = %d %q, want %d mentioning %q", c.err, got.Code, got.Message, c.code, c.msg)
		}
		rec := httptest.NewRecorder()
		WriteError(rec, Want{}, c.err)
		if ra := rec.Header().Get("Retry-After"); (c.code == http.StatusServiceUnavailable) != (ra != "") {
			t.Errorf("WriteError(%v): status %d with Retry-After %q (a 503 says when to retry, nothing else does)", c.err, rec.Code, ra)
		}
		if strings.Contains(got.Message, "secret internal detail") {
			t.Errorf("ErrorOf(%v) shows internals: %q", c.err, got.Message)
		}
	}
	if err := Errorf(404, "no such %s", "topic"); err.Error() != "404 no such topic" {
		t.Errorf("Error() = %q", err.Error())
	}
}

// TestWriteError: one error rendered as JSON, JSONP (status 200 so that a
// script tag calls back) and text, with its extra headers.
func TestWriteError(t *testing.T) {
	t.Parallel()
	unauthorized := Errorf(http.StatusUnauthorized, "give login:token with HTTP Basic")
	unauthorized.Header = http.Header{"Www-Authenticate": {`Basic realm="feedgate"`}}
	evil := Invalid("hub.topic \"</script><script>alert(1)</script>\u2028\" is not a valid URL")
	for _, c := range []struct {
		name   string
		want   Want
		err    error
		code   int
		ctype  string
		check  func(t *testing.T, body string)
		header string // a header the answer must carry
	}{
		{"json", Want{JSON: true}, Invalid("count must be an integer from 1 to 50"), 422, "application/json", func(t *testing.T, body string) {
			var v struct{ Error Error }
			if err := json.Unmarshal([]byte(body), &v); err != nil || v.Error.Code != 422 || v.Error.Message != "count must be an integer from 1 to 50" {
				t.Errorf("JSON error %q (%v)", body, err)
			}
		}, ""},
		{"text", Want{}, Invalid("count must be an integer from 1 to 50"), 422, "text/plain", func(t *testing.T, body string) {
			if body != "count must be an integer from 1 to 50\n" {
				t.Errorf("text error %q", body)
			}
		}, "X-Content-Type-Options"},
		{"jsonp", Want{JSON: true, Callback: "app.onFeed"}, Invalid("count must be an integer from 1 to 50"), 200, "application/javascript", func(t *testing.T, body string) {
			inner, ok := strings.CutPrefix(body, "/**/app.onFeed(")
			inner, ok2 := strings.CutSuffix(inner, ");\n")
			var v struct{ Error Error }
			if !ok || !ok2 || json.Unmarshal([]byte(inner), &v) != nil || v.Error.Code != 422 {
				t.Errorf("JSONP error %q", body)
			}
		}, "X-Content-Type-Options"},
		{"jsonp escapes what would end the script", Want{JSON: true, Callback: "cb"}, evil, 200, "application/javascript", func(t *testing.T, body string) {
			if strings.Contains(body, "</script>") || strings.Contains(body, "\u2028") {
				t.Errorf("JSONP error carries a raw </script> or U+2028: %q", body)
			}
		}, ""},
		{"headers of the error", Want{}, unauthorized, 401, "text/plain", nil, "WWW-Authenticate"},
		{"store down", Want{JSON: true}, store.ErrUnavailable, 503, "application/json", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			WriteError(w, c.want, c.err)
			if w.Code != c.code || !strings.HasPrefix(w.Header().Get("Content-Type"), c.ctype) {
				t.Fatalf("answer %d %q, want %d %s", w.Code, w.Header().Get("Content-Type"), c.code, c.ctype)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", w.Header().Get("Cache-Control"))
			}
			if c.header != "" && w.Header().Get(c.header) == "" {
				t.Errorf("no %s header: %v", c.header, w.Header())
			}
			if c.check != nil {
				c.check(t, w.Body.String())
			}
		})
	}
}
