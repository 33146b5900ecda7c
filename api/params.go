package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// MaxFormBody bounds an application/x-www-form-urlencoded body.
const MaxFormBody = 1 << 20

// Params are a request's parameters: the query string merged with an
// application/x-www-form-urlencoded body, query values first.
type Params struct {
	url.Values
}

// ReadParams parses the query string and, for a form body, the body. A body
// of another type is left unread for the handler (a fat ping's feed).
func ReadParams(r *http.Request) (Params, error) {
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return Params{Values: q}, Invalid("the query string is malformed (%v); percent-encode parameter values", unwrapURLError(err))
	}
	if !IsFormBody(r) {
		return Params{Values: q}, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxFormBody+1))
	if e, ok := AsError(err); ok {
		return Params{Values: q}, e // the body's reader says what went wrong (408)
	}
	if err != nil {
		return Params{Values: q}, Errorf(http.StatusBadRequest, "the request body could not be read: %v", err)
	}
	if len(body) > MaxFormBody {
		return Params{Values: q}, Errorf(http.StatusRequestEntityTooLarge, "the form body is larger than %d bytes; send fewer parameters", MaxFormBody)
	}
	f, err := url.ParseQuery(string(body))
	if err != nil {
		return Params{Values: q}, Invalid("the form body is malformed (%v); percent-encode parameter values", unwrapURLError(err))
	}
	for k, vs := range f {
		q[k] = append(q[k], vs...)
	}
	return Params{Values: q}, nil
}

// smallQuery is the most parameters parseQuery reads itself; longer
// queries go to url.ParseQuery.
const smallQuery = 16

// parseQuery is url.ParseQuery, same values and same errors, for the
// queries of every request: a small query's values share one array (one
// allocation instead of one per parameter) and its map is sized at once.
func parseQuery(query string) (url.Values, error) {
	n := strings.Count(query, "&") + 1
	if n > smallQuery {
		return url.ParseQuery(query)
	}
	m := make(url.Values, n)
	vals := make([]string, 0, n)
	var err error
	for query != "" {
		var key string
		key, query, _ = strings.Cut(query, "&")
		if strings.Contains(key, ";") {
			err = errors.New("invalid semicolon separator in query")
			continue
		}
		if key == "" {
			continue
		}
		key, value, _ := strings.Cut(key, "=")
		key, err1 := url.QueryUnescape(key)
		if err1 == nil {
			value, err1 = url.QueryUnescape(value)
		}
		if err1 != nil {
			if err == nil {
				err = err1
			}
			continue
		}
		if vs, ok := m[key]; ok {
			m[key] = append(vs, value) // a repeat gets its own array
			continue
		}
		vals = append(vals, value)
		m[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return m, err
}

func unwrapURLError(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// IsFormBody reports whether the request carries a form-encoded body.
func IsFormBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// Get returns the first value of name, as given.
func (p Params) Get(name string) string {
	if vs := p.Values[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Has reports whether name was given at all.
func (p Params) Has(name string) bool {
	_, ok := p.Values[name]
	return ok
}

// List returns every value of name and name[] in order, without empty ones
// and without repeats. Values are not split: a URL may contain commas.
func (p Params) List(name string) []string {
	return p.collect(name, func(v string) []string { return []string{v} })
}

// URLs is List for parameters that also accept a comma-separated list of
// URLs (hub.url): a value is split at commas that start a new http(s) URL,
// so commas inside a URL survive.
func (p Params) URLs(name string) []string {
	return p.collect(name, splitURLs)
}

func (p Params) collect(name string, split func(string) []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, key := range []string{name, name + "[]"} {
		for _, v := range p.Values[key] {
			for _, part := range split(v) {
				if part == "" || seen[part] {
					continue
				}
				seen[part] = true
				out = append(out, part)
			}
		}
	}
	return out
}

func splitURLs(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		t := strings.ToLower(strings.TrimSpace(part))
		if len(out) > 0 && !strings.HasPrefix(t, "http://") && !strings.HasPrefix(t, "https://") {
			out[len(out)-1] += "," + part
			continue
		}
		out = append(out, part)
	}
	for i := range out {
		out[i] = strings.TrimSpace(out[i])
	}
	return out
}
