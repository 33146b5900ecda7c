package feed

import (
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends n in Superfeedr's JSON schema (API.md §5):
//
//	{"status":{...},"title":...,"subtitle":...,"id":...,"updated":...,
//	 "permalinkUrl":...,"standardLinks":{...},"items":[...]}
//
// The status and items are rendered exactly as encoding/json renders Status
// and Item; the feed-level keys are always present. Items keep the order
// given (newest first). Strings are escaped as encoding/json escapes them
// (control characters, <, >, &, U+2028 and U+2029; invalid UTF-8 becomes
// U+FFFD), so the output is valid JSON for any input and safe inside JSONP
// and HTML.
func AppendJSON(dst []byte, n *Notification) []byte {
	dst = append(dst, `{"status":`...)
	dst = appendJSONStatus(dst, &n.Status)
	dst = append(dst, `,"title":`...)
	dst = appendJSONString(dst, n.Meta.Title)
	dst = append(dst, `,"subtitle":`...)
	dst = appendJSONString(dst, n.Meta.Subtitle)
	// id and updated are those of the Atom rendering (see feedID and
	// feedUpdated), so that both encodings name and date the feed alike.
	dst = append(dst, `,"id":`...)
	if id := feedID(n); id != "" {
		dst = appendJSONString(dst, id)
	} else {
		dst = append(dst, '"')
		dst = appendDerivedFeedID(dst, n.Status.Feed)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"updated":`...)
	dst = strconv.AppendInt(dst, feedUpdated(n), 10)
	dst = append(dst, `,"permalinkUrl":`...)
	dst = appendJSONString(dst, n.Meta.PermalinkURL)
	dst = append(dst, `,"standardLinks":`...)
	dst = appendJSONLinks(dst, n.Meta.StandardLinks)
	dst = append(dst, `,"items":[`...)
	for i := range n.Items {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONItem(dst, &n.Items[i])
	}
	return append(dst, "]}"...)
}

// AppendJSONItem appends one item as a JSON object, byte for byte what
// encoding/json makes of it.
func AppendJSONItem(dst []byte, it *Item) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, it.ID)
	dst = append(dst, `,"cursor":"`...)
	dst = it.Cursor.appendTo(dst)
	dst = append(dst, '"')
	if it.Title != "" {
		dst = append(dst, `,"title":`...)
		dst = appendJSONString(dst, it.Title)
	}
	if it.Published != 0 {
		dst = append(dst, `,"published":`...)
		dst = strconv.AppendInt(dst, it.Published, 10)
	}
	if it.Updated != 0 {
		dst = append(dst, `,"updated":`...)
		dst = strconv.AppendInt(dst, it.Updated, 10)
	}
	if it.Content != "" {
		dst = append(dst, `,"content":`...)
		dst = appendJSONString(dst, it.Content)
	}
	if it.Summary != "" {
		dst = append(dst, `,"summary":`...)
		dst = appendJSONString(dst, it.Summary)
	}
	if it.PermalinkURL != "" {
		dst = append(dst, `,"permalinkUrl":`...)
		dst = appendJSONString(dst, it.PermalinkURL)
	}
	if it.StandardLinks != nil {
		dst = append(dst, `,"standardLinks":`...)
		dst = appendJSONLinks(dst, it.StandardLinks)
	}
	if a := it.Actor; a != nil {
		dst = append(dst, `,"actor":{`...)
		sep := false
		if a.DisplayName != "" {
			dst = append(dst, `"displayName":`...)
			dst = appendJSONString(dst, a.DisplayName)
			sep = true
		}
		if a.ID != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"id":`...)
			dst = appendJSONString(dst, a.ID)
			sep = true
		}
		if a.PermalinkURL != "" {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"permalinkUrl":`...)
			dst = appendJSONString(dst, a.PermalinkURL)
		}
		dst = append(dst, '}')
	}
	if len(it.Categories) > 0 {
		dst = append(dst, `,"categories":[`...)
		for i, c := range it.Categories {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, c)
		}
		dst = append(dst, ']')
	}
	if it.Language != "" {
		dst = append(dst, `,"language":`...)
		dst = appendJSONString(dst, it.Language)
	}
	if src := it.Source; src != nil {
		dst = append(dst, `,"source":{"feed":`...)
		dst = appendJSONString(dst, src.Feed)
		if src.Title != "" {
			dst = append(dst, `,"title":`...)
			dst = appendJSONString(dst, src.Title)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendJSONStatus renders s as encoding/json does.
func appendJSONStatus(dst []byte, s *Status) []byte {
	dst = append(dst, `{"code":`...)
	dst = strconv.AppendInt(dst, int64(s.Code), 10)
	dst = append(dst, `,"http":`...)
	dst = appendJSONString(dst, s.HTTP)
	dst = append(dst, `,"feed":`...)
	dst = appendJSONString(dst, s.Feed)
	if s.Title != "" {
		dst = append(dst, `,"title":`...)
		dst = appendJSONString(dst, s.Title)
	}
	dst = append(dst, `,"period":`...)
	dst = strconv.AppendInt(dst, int64(s.Period), 10)
	dst = append(dst, `,"lastFetch":`...)
	dst = strconv.AppendInt(dst, s.LastFetch, 10)
	dst = append(dst, `,"lastParse":`...)
	dst = strconv.AppendInt(dst, s.LastParse, 10)
	dst = append(dst, `,"nextFetch":`...)
	dst = strconv.AppendInt(dst, s.NextFetch, 10)
	if s.LastMaintenanceAt != 0 {
		dst = append(dst, `,"lastMaintenanceAt":`...)
		dst = strconv.AppendInt(dst, s.LastMaintenanceAt, 10)
	}
	if s.EntriesCountSinceLastMaintenance != 0 {
		dst = append(dst, `,"entriesCountSinceLastMaintenance":`...)
		dst = strconv.AppendInt(dst, int64(s.EntriesCountSinceLastMaintenance), 10)
	}
	if s.Cursor != 0 {
		dst = append(dst, `,"cursor":"`...)
		dst = s.Cursor.appendTo(dst)
		dst = append(dst, '"')
	}
	if s.Gap {
		return append(dst, `,"gap":true}`...)
	}
	return append(dst, `,"gap":false}`...)
}

// appendJSONLinks renders l as encoding/json does, and nil as {}.
func appendJSONLinks(dst []byte, l *Links) []byte {
	dst = append(dst, '{')
	if l == nil {
		return append(dst, '}')
	}
	sep := false
	dst, sep = appendJSONLinkList(dst, `"alternate":[`, l.Alternate, sep)
	dst, sep = appendJSONLinkList(dst, `"self":[`, l.Self, sep)
	dst, _ = appendJSONLinkList(dst, `"hub":[`, l.Hub, sep)
	return append(dst, '}')
}

func appendJSONLinkList(dst []byte, key string, links []Link, sep bool) ([]byte, bool) {
	if len(links) == 0 {
		return dst, sep
	}
	if sep {
		dst = append(dst, ',')
	}
	dst = append(dst, key...)
	for i := range links {
		if i > 0 {
			dst = append(dst, ',')
		}
		k := &links[i]
		dst = append(dst, `{"href":`...)
		dst = appendJSONString(dst, k.Href)
		if k.Type != "" {
			dst = append(dst, `,"type":`...)
			dst = appendJSONString(dst, k.Type)
		}
		if k.Title != "" {
			dst = append(dst, `,"title":`...)
			dst = appendJSONString(dst, k.Title)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']'), true
}

// jsonSafe marks the ASCII bytes that appear in a JSON string as they are
// (encoding/json's htmlSafeSet).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it with HTML escaping on.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	valid := utf8.ValidString(s)
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		if valid {
			// Only U+2028 and U+2029 (E2 80 A8/A9) need escaping.
			if b == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9) {
				dst = append(dst, s[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[s[i+2]&0xF])
				i += 3
				start = i
				continue
			}
			i++
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
