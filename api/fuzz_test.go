package api

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// checkError fails unless err is an *Error a client can act on: a 4xx
// status and a message.
func checkError(t *testing.T, err error) *Error {
	t.Helper()
	e, ok := AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not an *api.Error", err, err)
	}
	if e.Code < 400 || e.Code > 499 || strings.TrimSpace(e.Message) == "" {
		t.Fatalf("error %d %q: want a 4xx status and a message", e.Code, e.Message)
	}
	return e
}

// FuzzReadParams: whatever the query string, body and content type,
// ReadParams does not panic; it fails with a 4xx *Error with a message, or
// returns every parameter of the query, then of a form body, and leaves
// any other body unread. List and URLs give no empty values and no
// repeats.
//
//	go test -run '^$' -fuzz FuzzReadParams ./api
func FuzzReadParams(f *testing.F) {
	const form = "application/x-www-form-urlencoded"
	for _, s := range []struct{ method, query, ctype, body string }{
		{"GET", "hub.mode=retrieve&hub.topic=http%3A%2F%2Fa.example%2F&count=5", "", ""},
		{"POST", "hub.mode=publish", form, "hub.url=http://a.example/,https://b.example/&hub.url[]=http://c.example/"},
		{"POST", "", form + "; charset=ISO-8859-1", "hub.topic=http%3A%2F%2Fa.example%2F%3Fx%3D1%2C2&hub.mode=subscribe"},
		{"POST", "hub.mode=publish&hub.topic=x", "application/atom+xml", "<feed xmlns=\"http://www.w3.org/2005/Atom\"/>"},
		{"GET", "%zz=1", "", ""},
		{"GET", "a=1;b=2", "", ""},
		{"POST", "", form, "a=%G0"},
		{"POST", "", "application/x-www-form-urlencoded;;", "a=1"},
		{"PUT", "hub.url=,,,&hub.url[]=", form, "hub.url=http://a.example/%2C,http://b"},
		{"POST", "callback=a+b", "text/plain; charset=utf-8", "\x00\xff"},
	} {
		f.Add(s.method, s.query, s.ctype, s.body)
	}
	f.Fuzz(func(t *testing.T, method, query, ctype, body string) {
		if !validMethod(method) {
			method = http.MethodPost
		}
		r, err := http.NewRequest(method, "http://gateway.test/", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.URL.RawQuery = query
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		p, err := ReadParams(r)
		if err != nil {
			checkError(t, err)
			return
		}
		q, qerr := url.ParseQuery(query)
		if qerr != nil {
			t.Fatalf("ReadParams accepted a query url.ParseQuery refuses (%v)", qerr)
		}
		var fb url.Values
		if IsFormBody(r) {
			if fb, err = url.ParseQuery(body); err != nil {
				t.Fatalf("ReadParams accepted a form body url.ParseQuery refuses (%v)", err)
			}
		} else {
			rest := new(strings.Builder)
			buf := make([]byte, 512)
			for {
				n, err := r.Body.Read(buf)
				rest.Write(buf[:n])
				if err != nil {
					break
				}
			}
			if rest.String() != body {
				t.Fatalf("a %q body was consumed", ctype)
			}
		}
		for k, vs := range p.Values {
			if want := slices.Concat(q[k], fb[k]); !slices.Equal(vs, want) {
				t.Fatalf("%q = %q, want the query's then the body's %q", k, vs, want)
			}
		}
		if len(p.Values) != len(mergeKeys(q, fb)) {
			t.Fatalf("%d parameters, want %d", len(p.Values), len(mergeKeys(q, fb)))
		}
		for k := range p.Values {
			name := strings.TrimSuffix(k, "[]")
			for _, list := range [][]string{p.List(name), p.URLs(name)} {
				seen := map[string]bool{}
				for _, v := range list {
					if v == "" || seen[v] {
						t.Fatalf("%s lists %q: empty or repeated value", name, list)
					}
					seen[v] = true
				}
			}
			for _, u := range p.URLs(name) {
				if u != strings.TrimSpace(u) {
					t.Fatalf("URLs(%s) gives %q with spaces around it", name, u)
				}
			}
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

func mergeKeys(a, b url.Values) map[string]bool {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}

// FuzzParseQuery: parseQuery gives what url.ParseQuery gives — the same
// values in the same order, and the same error — for any query string.
//
//	go test -run '^$' -fuzz FuzzParseQuery ./api
func FuzzParseQuery(f *testing.F) {
	for _, q := range []string{
		"", "a", "a=", "=a", "&&", "a=1&a=2&b=3&a=4", "hub.mode=retrieve&hub.topic=http%3A%2F%2Fa.example%2F&count=5",
		"a=1;b=2", "a=%zz&b=1", "%zz=1&%G0=2", "a+b=c+d&e=%20", "a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11&l=12&m=13&n=14&o=15&p=16&q=17",
		"a=1&&a=&=&a",
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		got, gotErr := parseQuery(q)
		want, wantErr := url.ParseQuery(q)
		if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
			t.Fatalf("parseQuery(%q) error %v, url.ParseQuery's %v", q, gotErr, wantErr)
		}
		if len(got) != len(want) {
			t.Fatalf("parseQuery(%q) = %q, url.ParseQuery's %q", q, got, want)
		}
		for k, vs := range want {
			if !slices.Equal(got[k], vs) {
				t.Fatalf("parseQuery(%q)[%q] = %q, url.ParseQuery's %q", q, k, got[k], vs)
			}
		}
		// A caller appending to one parameter's values does not touch
		// another's.
		for k := range got {
			got[k] = append(got[k], "appended")
		}
		for k, vs := range want {
			if !slices.Equal(got[k][:len(got[k])-1], vs) {
				t.Fatalf("parseQuery(%q): appending to the values of one parameter changed %q", q, k)
			}
		}
	})
}
