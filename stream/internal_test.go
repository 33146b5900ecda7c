package stream

import (
	"fmt"
	"strings"
	"testing"

	"github.com/feedgate/feedgate/feed"
)

func TestResumeToken(t *testing.T) {
	topics := []string{"https://a.example/", "https://b.example/", "https://c.example/"}
	s := &session{last: map[string]feed.Cursor{topics[0]: 7, topics[1]: 0, topics[2]: 1 << 40}, order: topics}
	tok := string(s.appendToken(nil))
	if strings.ContainsAny(tok, "\r\n\x00 :") {
		t.Fatalf("token %q has characters an SSE id cannot carry", tok)
	}
	got, err := parseResumeToken(tok, []string{topics[2], topics[0], "https://new.example/", topics[1]})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]feed.Cursor{topics[0]: 7, topics[1]: 0, topics[2]: 1 << 40}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("round trip: %v, want %v", got, want)
	}
	one := &session{last: map[string]feed.Cursor{topics[0]: 42}, order: topics[:1]}
	if tok := string(one.appendToken(nil)); tok != feed.Cursor(42).String() {
		t.Errorf("single-topic token %q, want the cursor", tok)
	}
	for _, bad := range []string{"x", "m!!", "m" + "AAAA", feed.Cursor(1).String()} {
		if _, err := parseResumeToken(bad, topics); err == nil {
			t.Errorf("token %q for 3 topics accepted", bad)
		}
	}
}
