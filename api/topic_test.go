package api

import (
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	t.Parallel()
	long := "http://a.example/" + strings.Repeat("x", MaxTopicLength)
	for _, c := range []struct {
		raw string
		msg string // "" when valid
	}{
		{"http://a.example/feed", ""},
		{"https://a.example:8443/feed.xml?x=1&y=%20#frag", ""},
		{"HTTP://A.EXAMPLE/", ""},
		{"http://127.0.0.1:8080/f", ""}, // addresses are the fetcher's to judge
		{"http://[::1]/f", ""},
		{"http://ünïcode.example/f", ""},
		{long[:MaxTopicLength], ""},
		{"", "hub.topic is required"},
		{long, "characters long"},
		{"ftp://a.example/f", "http or https"},
		{"javascript:alert(1)", "http or https"},
		{"a.example/feed", "http or https"},
		{"/feed", "http or https"},
		{"http:///feed", "no host"},
		{"http://:80/feed", "no host"},
		{"http://user:pass@a.example/f", "credentials"},
		{"http://a.example/a b", "without spaces"},
		{"http://a.example/\tf", "without spaces"},
		{"http://a.example/\x00", "control characters"},
		{"http://a.example/\u0085", "control characters"},
		{"http://a.example/\xff", "invalid UTF-8"},
		{"http://a.example/%zz", "not a valid URL"},
		{"http://[::1/f", "not a valid URL"},
	} {
		err := CheckURL("hub.topic", c.raw)
		if c.msg == "" {
			if err != nil {
				t.Errorf("CheckURL(%q) = %v, want valid", c.raw, err)
			}
			continue
		}
		e, ok := AsError(err)
		if !ok || e.Code != 422 || !strings.Contains(e.Message, c.msg) {
			t.Errorf("CheckURL(%q) = %v, want a 422 mentioning %q", c.raw, err, c.msg)
			continue
		}
		if !strings.Contains(e.Message, "hub.topic") {
			t.Errorf("CheckURL(%q): %q does not name the parameter", c.raw, e.Message)
		}
		if len(e.Message) > 400 {
			t.Errorf("CheckURL(%q): a %d-byte message; a long URL must be cut", c.raw, len(e.Message))
		}
	}
}
