package api

import (
	"net/url"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxTopicLength bounds a topic (or callback) URL.
const MaxTopicLength = 2048

// CheckURL validates a topic or callback URL given as parameter name: an
// absolute http or https URL of at most MaxTopicLength characters.
func CheckURL(name, raw string) error {
	if goodURLs.has(raw) {
		return nil
	}
	if err := checkURL(name, raw); err != nil {
		return err
	}
	goodURLs.add(raw)
	return nil
}

// goodURLs remembers URLs that passed CheckURL: the topics of a busy
// gateway are checked once, not at every request.
var goodURLs urlSet

// urlSet is a bounded set of strings; when full it starts over.
type urlSet struct {
	mu  sync.RWMutex
	set map[string]struct{}
}

const maxGoodURLs = 8192

func (s *urlSet) has(u string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.set[u]
	return ok
}

func (s *urlSet) add(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil || len(s.set) >= maxGoodURLs {
		s.set = make(map[string]struct{})
	}
	s.set[u] = struct{}{}
}

func checkURL(name, raw string) error {
	switch {
	case raw == "":
		return Invalid("%s is required: give the feed's http(s) URL", name)
	case len(raw) > MaxTopicLength:
		return Invalid("%s is %d characters long; at most %d are allowed", name, len(raw), MaxTopicLength)
	case !utf8.ValidString(raw) || strings.IndexFunc(raw, unicode.IsControl) >= 0 || strings.ContainsAny(raw, " \t"):
		return Invalid("%s must be a URL without spaces, control characters or invalid UTF-8; percent-encode them", name)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Invalid("%s %q is not a valid URL: %v", name, truncate(raw), unwrapURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Invalid("%s %q must be an http or https URL", name, truncate(raw))
	}
	if u.Host == "" || u.Hostname() == "" {
		return Invalid("%s %q has no host", name, truncate(raw))
	}
	if u.User != nil {
		return Invalid("%s %q must not carry credentials", name, truncate(raw))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
