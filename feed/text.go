package feed

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// Bounds on what one parsed entry may hold. Text beyond a bound is cut at a
// character boundary; a URL beyond its bound is dropped (a cut URL points
// elsewhere); an id beyond its bound is replaced by a derived id.
const (
	maxIDLength       = 1024
	maxTitleLength    = 2048
	maxTextLength     = 4096 // subtitle, names, e-mail addresses
	maxContentLength  = 256 << 10
	maxURLLength      = 4096
	maxCategoryLength = 256
	maxCategories     = 64
	maxLinksPerRel    = 16
	maxLanguageLength = 35
)

// clean returns s as valid UTF-8 holding only characters XML 1.0 allows:
// invalid byte sequences become U+FFFD, and C0 controls other than tab, LF
// and CR, U+FFFE and U+FFFF are removed. Clean strings are returned as they
// are, without allocating.
func clean(s string) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return cleanSlow(s)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == 0xFFFE || r == 0xFFFF {
			return cleanSlow(s)
		}
		i += size
	}
	return s
}

func cleanSlow(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if !xmlChar(r) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// xmlChar reports whether r is a Char of XML 1.0 (surrogates cannot occur in
// decoded Go strings).
func xmlChar(r rune) bool {
	switch {
	case r < 0x20:
		return r == '\t' || r == '\n' || r == '\r'
	case r == 0xFFFE || r == 0xFFFF:
		return false
	case r == utf8.RuneError:
		return true
	}
	return r <= utf8.MaxRune
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// text cleans, trims and bounds a short piece of text (a title, a name).
func text(s string, n int) string {
	return truncate(strings.TrimSpace(clean(s)), n)
}

// content cleans and bounds a body of text (content, summary); surrounding
// whitespace is dropped so that reformatting alone does not change it.
func content(s string) string {
	return truncate(strings.TrimSpace(clean(s)), maxContentLength)
}

// cleanURL normalises a URL found in a feed: cleaned, trimmed, bounded, with
// the characters that may not appear in a URI at all percent-encoded, and
// resolved against base when it is relative. URLs whose scheme runs script
// in a browser (javascript:, vbscript:, data:) are dropped, as is anything
// too long.
func cleanURL(s string, base *url.URL) string {
	s = strings.TrimSpace(clean(s))
	if s == "" || len(s) > maxURLLength {
		return ""
	}
	s = escapeURL(s)
	if unsafeScheme(s) {
		return ""
	}
	if base != nil && !hasScheme(s) {
		if ref, err := url.Parse(s); err == nil {
			s = base.ResolveReference(ref).String()
			if len(s) > maxURLLength || unsafeScheme(s) {
				return ""
			}
		}
	}
	return s
}

// escapeURL percent-encodes the ASCII bytes that are never valid in a URI
// (controls, space, quotes, angle brackets...). Non-ASCII characters are kept:
// they are valid in an IRI.
func escapeURL(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < utf8.RuneSelf && !uriByte[c] {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < utf8.RuneSelf && !uriByte[c] {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// uriByte marks the ASCII bytes that may appear in a URI reference
// (RFC 3986 unreserved, reserved and '%').
var uriByte = func() (t [utf8.RuneSelf]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~:/?#[]@!$&'()*+,;=%" {
		t[c] = true
	}
	return t
}()

// scheme returns the URI scheme of s, lower-cased, or "" when s is relative.
func scheme(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.':
			if i == 0 {
				return ""
			}
		case c == ':':
			if i == 0 {
				return ""
			}
			return strings.ToLower(s[:i])
		default:
			return ""
		}
	}
	return ""
}

func hasScheme(s string) bool { return scheme(s) != "" }

func unsafeScheme(s string) bool {
	switch scheme(s) {
	case "javascript", "vbscript", "data":
		return true
	}
	return false
}

// absoluteURL parses s when it is an absolute http(s) URL, for use as a base.
func absoluteURL(s string) *url.URL {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil
	}
	return u
}
