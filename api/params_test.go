package api

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// formRequest is a request with a raw query and a body of the content type
// ("" for no body).
func formRequest(method, query, contentType, body string) *http.Request {
	var r *http.Request
	if contentType == "" {
		r = httptest.NewRequest(method, "/?"+query, nil)
	} else {
		r = httptest.NewRequest(method, "/?"+query, strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
	}
	r.URL.RawQuery = query // kept as given, malformed or not
	return r
}

func TestReadParams(t *testing.T) {
	t.Parallel()
	const form = "application/x-www-form-urlencoded"
	for _, c := range []struct {
		name        string
		method      string
		query       string
		contentType string
		body        string
		want        url.Values
		// code is the status of the error (0: none).
		code int
		// msg is in the error's message.
		msg string
	}{
		{name: "query", method: "GET", query: "hub.mode=retrieve&hub.topic=http%3A%2F%2Fa.example%2Ff",
			want: url.Values{"hub.mode": {"retrieve"}, "hub.topic": {"http://a.example/f"}}},
		{name: "form body", method: "POST", contentType: form, body: "hub.mode=subscribe&hub.topic=http%3A%2F%2Fa.example%2Ff",
			want: url.Values{"hub.mode": {"subscribe"}, "hub.topic": {"http://a.example/f"}}},
		{name: "form body with charset", method: "POST", contentType: form + "; charset=UTF-8", body: "hub.mode=list&page=2",
			want: url.Values{"hub.mode": {"list"}, "page": {"2"}}},
		{name: "form type in capitals", method: "POST", contentType: "Application/X-WWW-Form-URLEncoded;charset=utf-8", body: "hub.mode=list",
			want: url.Values{"hub.mode": {"list"}}},
		{name: "query values first, then the body's", method: "POST", query: "hub.topic=http%3A%2F%2Fq.example%2F&count=5",
			contentType: form, body: "hub.topic=http%3A%2F%2Fb.example%2F&hub.mode=retrieve",
			want: url.Values{"hub.topic": {"http://q.example/", "http://b.example/"}, "count": {"5"}, "hub.mode": {"retrieve"}}},
		{name: "form body on a GET", method: "GET", contentType: form, body: "hub.mode=list",
			want: url.Values{"hub.mode": {"list"}}},
		{name: "a feed body is left alone", method: "POST", query: "hub.mode=publish", contentType: "application/atom+xml", body: "<feed/>",
			want: url.Values{"hub.mode": {"publish"}}},
		{name: "a body without a type is left alone", method: "POST", query: "hub.mode=publish", contentType: "", body: "",
			want: url.Values{"hub.mode": {"publish"}}},
		{name: "repeated and bracketed", method: "GET", query: "hub.url=http%3A%2F%2Fa%2F&hub.url=http%3A%2F%2Fb%2F&hub.url[]=http%3A%2F%2Fc%2F",
			want: url.Values{"hub.url": {"http://a/", "http://b/"}, "hub.url[]": {"http://c/"}}},
		{name: "plus is a space", method: "GET", query: "callback=a+b",
			want: url.Values{"callback": {"a b"}}},
		{name: "unknown parameters are kept (and ignored by handlers)", method: "GET", query: "foo=bar&hub.foo=",
			want: url.Values{"foo": {"bar"}, "hub.foo": {""}}},
		{name: "malformed query", method: "GET", query: "hub.topic=%zz", code: 422, msg: "percent-encode"},
		{name: "malformed form body", method: "POST", contentType: form, body: "hub.topic=%G0", code: 422, msg: "form body is malformed"},
		{name: "semicolon in the query", method: "GET", query: "a=1;b=2", code: 422, msg: "query string is malformed"},
		{name: "form body too large", method: "POST", contentType: form, body: "a=" + strings.Repeat("x", MaxFormBody), code: 413, msg: "larger than"},
		{name: "form body at the limit", method: "POST", contentType: form, body: "a=" + strings.Repeat("x", MaxFormBody-2),
			want: url.Values{"a": {strings.Repeat("x", MaxFormBody-2)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := formRequest(c.method, c.query, c.contentType, c.body)
			p, err := ReadParams(r)
			if c.code != 0 {
				e, ok := AsError(err)
				if !ok || e.Code != c.code || !strings.Contains(e.Message, c.msg) {
					t.Fatalf("ReadParams = %v, want a %d error mentioning %q", err, c.code, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadParams: %v", err)
			}
			if len(p.Values) != len(c.want) {
				t.Fatalf("params %v, want %v", p.Values, c.want)
			}
			for k, vs := range c.want {
				if !slices.Equal(p.Values[k], vs) {
					t.Fatalf("%s = %q, want %q (all: %v)", k, p.Values[k], vs, p.Values)
				}
			}
			if c.contentType != "" && !IsFormBody(r) {
				// A body that is not a form is the handler's to read.
				if b, _ := io.ReadAll(r.Body); string(b) != c.body {
					t.Fatalf("the %s body was consumed: %q left", c.contentType, b)
				}
			}
		})
	}
}

// errReader fails with err after no data.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestReadParamsBodyErrors: a body that cannot be read is a 400 saying so;
// an *Error from the body's reader (the server's read deadline, 408)
// passes through.
func TestReadParamsBodyErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		code int
	}{
		{errors.New("connection reset"), http.StatusBadRequest},
		{Errorf(http.StatusRequestTimeout, "the request body did not arrive in time"), http.StatusRequestTimeout},
	} {
		r := httptest.NewRequest(http.MethodPost, "/?hub.mode=list", errReader{c.err})
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		p, err := ReadParams(r)
		e, ok := AsError(err)
		if !ok || e.Code != c.code || e.Message == "" {
			t.Fatalf("ReadParams with a body failing %v = %v, want a %d", c.err, err, c.code)
		}
		if p.Get("hub.mode") != "list" {
			t.Fatalf("the query's parameters are lost with the body's error: %v", p.Values)
		}
	}
}

func TestParamsGetHas(t *testing.T) {
	t.Parallel()
	p := Params{Values: url.Values{"a": {"1", "2"}, "empty": {""}}}
	if p.Get("a") != "1" || p.Get("empty") != "" || p.Get("none") != "" {
		t.Fatalf("Get: a=%q empty=%q none=%q", p.Get("a"), p.Get("empty"), p.Get("none"))
	}
	if !p.Has("a") || !p.Has("empty") || p.Has("none") {
		t.Fatalf("Has: a=%v empty=%v none=%v", p.Has("a"), p.Has("empty"), p.Has("none"))
	}
	var zero Params
	if zero.Get("a") != "" || zero.Has("a") || zero.List("a") != nil || zero.URLs("a") != nil {
		t.Fatal("the zero Params is not empty")
	}
}

// TestParamsListAndURLs: hub.topic and hub.url repeated, as name[], and
// (hub.url only) comma-separated; commas inside a URL survive.
func TestParamsListAndURLs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		query string
		list  []string // List("hub.url")
		urls  []string // URLs("hub.url")
	}{
		{"one", "hub.url=http://a.example/f",
			[]string{"http://a.example/f"}, []string{"http://a.example/f"}},
		{"repeated", "hub.url=http://a.example/&hub.url=http://b.example/",
			[]string{"http://a.example/", "http://b.example/"}, []string{"http://a.example/", "http://b.example/"}},
		{"bracketed after plain", "hub.url[]=http://c.example/&hub.url=http://a.example/",
			[]string{"http://a.example/", "http://c.example/"}, []string{"http://a.example/", "http://c.example/"}},
		{"comma-separated", "hub.url=http://a.example/,https://b.example/x",
			[]string{"http://a.example/,https://b.example/x"}, []string{"http://a.example/", "https://b.example/x"}},
		{"comma-separated with spaces and capitals", "hub.url=" + url.QueryEscape("http://a.example/ , HTTPS://b.example/"),
			[]string{"http://a.example/ , HTTPS://b.example/"}, []string{"http://a.example/", "HTTPS://b.example/"}},
		{"a comma inside a URL", "hub.url=" + url.QueryEscape("http://a.example/f?ids=1,2,3"),
			[]string{"http://a.example/f?ids=1,2,3"}, []string{"http://a.example/f?ids=1,2,3"}},
		{"a comma inside, then another URL", "hub.url=" + url.QueryEscape("http://a.example/f?ids=1,2,http://b.example/"),
			[]string{"http://a.example/f?ids=1,2,http://b.example/"}, []string{"http://a.example/f?ids=1,2", "http://b.example/"}},
		{"repeats and empties dropped", "hub.url=http://a.example/&hub.url=&hub.url[]=http://a.example/&hub.url=http://a.example/,http://b.example/",
			[]string{"http://a.example/", "http://a.example/,http://b.example/"}, []string{"http://a.example/", "http://b.example/"}},
		{"none", "hub.topic=http://a.example/", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p, err := ReadParams(formRequest("GET", c.query, "", ""))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.List("hub.url"); !slices.Equal(got, c.list) {
				t.Errorf("List = %q, want %q", got, c.list)
			}
			if got := p.URLs("hub.url"); !slices.Equal(got, c.urls) {
				t.Errorf("URLs = %q, want %q", got, c.urls)
			}
		})
	}
}
