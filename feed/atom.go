package feed

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Namespaces of the Atom rendering.
const (
	AtomNS       = "http://www.w3.org/2005/Atom"
	SuperfeedrNS = "http://superfeedr.com/xmpp-pubsub-ext"
)

// AtomClose ends a feed opened by AppendAtomOpen.
const AtomClose = "</feed>"

// AppendAtom appends n as a complete Atom 1.0 document: the feed header of
// AppendAtomOpen, one entry per item in the order given (newest first), and
// AtomClose.
func AppendAtom(dst []byte, n *Notification, selfURL, hubURL string) []byte {
	dst = AppendAtomOpen(dst, n, selfURL, hubURL)
	for i := range n.Items {
		topic := n.Status.Feed
		if src := n.Items[i].Source; src != nil {
			topic = src.Feed
		}
		dst = AppendAtomEntry(dst, topic, &n.Items[i])
	}
	return append(dst, AtomClose...)
}

// AppendAtomOpen appends the XML declaration and an open <feed> with its
// Superfeedr status (sf:status) and metadata, and no entries: a stream
// follows it with AppendAtomEntry and, if it ever ends, AtomClose.
//
// The feed always has an id (the feed's own when it is a valid IRI, else the
// topic URL), a title (falling back to the status title, then the topic's
// host), an updated date (the newest of the feed's and its items' dates, else
// the last parse or fetch, else now) and an author (the title or host: the
// feed's entries inherit it, as Atom requires an author for each). Links come
// alternate first (the feed's page, else the topic), then self (selfURL, else
// the topic) and hub (hubURL, else the hubs the feed names).
func AppendAtomOpen(dst []byte, n *Notification, selfURL, hubURL string) []byte {
	m, st := &n.Meta, &n.Status
	topic := st.Feed
	dst = append(dst, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<feed xmlns="`+AtomNS+`" xmlns:sf="`+SuperfeedrNS+`"`...)
	if validLang(m.Language) {
		dst = append(dst, ` xml:lang="`...)
		dst = append(dst, m.Language...)
		dst = append(dst, '"')
	}
	dst = append(dst, '>')
	dst = appendAtomStatus(dst, st)

	title := firstNonBlank(m.Title, st.Title)
	if title == "" {
		title = firstNonBlank(hostOf(topic), "Untitled feed")
	}
	dst = appendXMLElement(dst, "title", title)
	if !blank(m.Subtitle) {
		dst = appendXMLElement(dst, "subtitle", m.Subtitle)
	}
	dst = append(dst, "<id>"...)
	if id := feedID(n); id != "" {
		dst = appendXMLText(dst, id, false)
	} else {
		dst = appendDerivedFeedID(dst, topic)
	}
	dst = append(dst, "</id>"...)
	dst = appendXMLDate(dst, "updated", feedUpdated(n))

	dst = append(dst, "<author><name>"...)
	dst = appendXMLText(dst, title, false)
	dst = append(dst, "</name></author>"...)

	var alternates []Link
	if m.StandardLinks != nil {
		alternates = m.StandardLinks.Alternate
	}
	start := len(dst)
	dst = appendAlternates(dst, m.PermalinkURL, alternates)
	if len(dst) == start {
		dst = appendLink(dst, "alternate", firstNonBlank(topic, selfURL), "", "")
	}
	if self := firstNonBlank(selfURL, topic); self != "" {
		dst = appendLink(dst, "self", self, "application/atom+xml", "")
	} else if m.StandardLinks != nil && len(m.StandardLinks.Self) > 0 {
		dst = appendLink(dst, "self", m.StandardLinks.Self[0].Href, m.StandardLinks.Self[0].Type, "")
	}
	if strings.TrimSpace(hubURL) != "" {
		dst = appendLink(dst, "hub", hubURL, "", "")
	} else if m.StandardLinks != nil {
		for _, h := range m.StandardLinks.Hub {
			dst = appendLink(dst, "hub", h.Href, "", "")
		}
	}
	return dst
}

// feedID is the id of the feed of n in both encodings: the feed's own when
// it is a valid IRI (an atom:id must be), else the topic URL, else ""
// (then appendDerivedFeedID).
func feedID(n *Notification) string {
	switch {
	case validAtomID(n.Meta.ID):
		return n.Meta.ID
	case validAtomID(n.Status.Feed):
		return n.Status.Feed
	}
	return ""
}

// appendDerivedFeedID appends the URN that stands for the id of a feed
// whose own id and topic are no valid IRI.
func appendDerivedFeedID(dst []byte, topic string) []byte {
	dst = append(dst, "urn:feedgate:feed:"...)
	return appendShortHash(dst, topic, "")
}

// feedUpdated is the date (Unix seconds) both encodings give the feed of n:
// the newest of the feed's own updated date and its items' dates in n, else
// the topic's last parse or fetch, else now (Atom requires a date).
func feedUpdated(n *Notification) int64 {
	updated := latest(0, n.Meta.Updated)
	for i := range n.Items {
		updated = latest(updated, n.Items[i].Updated, n.Items[i].Published)
	}
	if updated == 0 {
		updated = latest(0, n.Status.LastParse, n.Status.LastFetch)
	}
	if updated == 0 {
		updated = time.Now().Unix()
	}
	return updated
}

// appendAtomStatus renders the status as Superfeedr did, in the sf namespace.
func appendAtomStatus(dst []byte, s *Status) []byte {
	dst = append(dst, `<sf:status feed="`...)
	dst = appendXMLText(dst, s.Feed, true)
	dst = append(dst, `">`...)
	if s.Code != 0 || s.HTTP != "" {
		dst = append(dst, `<sf:http code="`...)
		dst = strconv.AppendInt(dst, int64(s.Code), 10)
		dst = append(dst, `">`...)
		dst = appendXMLText(dst, s.HTTP, false)
		dst = append(dst, "</sf:http>"...)
	}
	dst = appendXMLDate(dst, "sf:next_fetch", s.NextFetch)
	if s.Period > 0 {
		dst = append(dst, "<sf:period>"...)
		dst = strconv.AppendInt(dst, int64(s.Period), 10)
		dst = append(dst, "</sf:period>"...)
	}
	dst = appendXMLDate(dst, "sf:last_fetch", s.LastFetch)
	dst = appendXMLDate(dst, "sf:last_parse", s.LastParse)
	dst = appendXMLDate(dst, "sf:last_maintenance_at", s.LastMaintenanceAt)
	if s.EntriesCountSinceLastMaintenance > 0 {
		dst = append(dst, "<sf:entries_count_since_last_maintenance>"...)
		dst = strconv.AppendInt(dst, int64(s.EntriesCountSinceLastMaintenance), 10)
		dst = append(dst, "</sf:entries_count_since_last_maintenance>"...)
	}
	if s.Title != "" {
		dst = appendXMLElement(dst, "sf:title", s.Title)
	}
	if s.Cursor != 0 {
		dst = append(dst, "<sf:cursor>"...)
		dst = s.Cursor.appendTo(dst)
		dst = append(dst, "</sf:cursor>"...)
	}
	if s.Gap {
		dst = append(dst, "<sf:gap>true</sf:gap>"...)
	}
	return append(dst, "</sf:status>"...)
}

// AppendAtomEntry appends one item as an Atom <entry> of the given topic,
// with its cursor as <sf:cursor>. The entry always has an id (the item's when
// it is a valid IRI, else a URN derived from the topic and the item's id), a
// title and an updated date (the later of updated and published, else now).
// Content and summary
// are HTML; an entry with no link to its page always carries content.
func AppendAtomEntry(dst []byte, topic string, it *Item) []byte {
	dst = append(dst, "<entry"...)
	if validLang(it.Language) {
		dst = append(dst, ` xml:lang="`...)
		dst = append(dst, it.Language...)
		dst = append(dst, '"')
	}
	dst = append(dst, "><id>"...)
	if validAtomID(it.ID) {
		dst = appendXMLText(dst, it.ID, false)
	} else {
		dst = append(dst, "urn:feedgate:entry:"...)
		dst = appendShortHash(dst, topic, it.ID)
	}
	dst = append(dst, "</id>"...)
	dst = appendXMLElement(dst, "title", it.Title)
	// atom:updated is never before atom:published.
	updated := it.Updated
	if !validTime(updated) || (validTime(it.Published) && it.Published > updated) {
		updated = it.Published
	}
	if !validTime(updated) {
		updated = time.Now().Unix()
	}
	dst = appendXMLDate(dst, "updated", updated)
	if validTime(it.Published) {
		dst = appendXMLDate(dst, "published", it.Published)
	}

	var alternates, selfs []Link
	if it.StandardLinks != nil {
		alternates, selfs = it.StandardLinks.Alternate, it.StandardLinks.Self
	}
	start := len(dst)
	dst = appendAlternates(dst, it.PermalinkURL, alternates)
	hasAlternate := len(dst) > start
	for _, l := range selfs {
		dst = appendLink(dst, "self", l.Href, l.Type, l.Title)
	}

	if a := it.Actor; a != nil {
		dst = appendAtomAuthor(dst, a)
	}
	for _, c := range it.Categories {
		if blank(c) {
			continue
		}
		dst = append(dst, `<category term="`...)
		dst = appendXMLText(dst, c, true)
		dst = append(dst, `"/>`...)
	}

	body, summary := it.Content, it.Summary
	if body == "" && !hasAlternate {
		// Without a link to its page an entry must carry content.
		body, summary = summary, ""
	}
	if body != "" || !hasAlternate {
		dst = append(dst, `<content type="html">`...)
		dst = appendXMLText(dst, body, false)
		dst = append(dst, "</content>"...)
	}
	if summary != "" {
		dst = append(dst, `<summary type="html">`...)
		dst = appendXMLText(dst, summary, false)
		dst = append(dst, "</summary>"...)
	}
	if src := it.Source; src != nil {
		dst = appendAtomSource(dst, src)
	}
	dst = append(dst, "<sf:cursor>"...)
	dst = it.Cursor.appendTo(dst)
	return append(dst, "</sf:cursor></entry>"...)
}

// appendAtomSource names the topic of an entry in a feed that merges
// several (atom:source, with the topic as its id and self link).
func appendAtomSource(dst []byte, src *Source) []byte {
	dst = append(dst, "<source><id>"...)
	if validAtomID(src.Feed) {
		dst = appendXMLText(dst, src.Feed, false)
	} else {
		dst = append(dst, "urn:feedgate:feed:"...)
		dst = appendShortHash(dst, src.Feed, "")
	}
	dst = append(dst, "</id>"...)
	if !blank(src.Title) {
		dst = appendXMLElement(dst, "title", src.Title)
	}
	dst = appendLink(dst, "self", src.Feed, "", "")
	return append(dst, "</source>"...)
}

func appendAtomAuthor(dst []byte, a *Actor) []byte {
	uri := ""
	if validAtomID(a.PermalinkURL) {
		uri = a.PermalinkURL
	}
	email := ""
	if validEmail(a.ID) {
		email = a.ID
	}
	name := firstNonBlank(a.DisplayName, a.ID, a.PermalinkURL)
	if name == "" {
		return dst
	}
	dst = append(dst, "<author>"...)
	dst = appendXMLElement(dst, "name", name)
	if email != "" {
		dst = appendXMLElement(dst, "email", email)
	}
	if uri != "" {
		dst = appendXMLElement(dst, "uri", uri)
	}
	return append(dst, "</author>"...)
}

// appendAlternates writes the alternate links: the permalink first, then the
// others, at most one per media type (Atom forbids two alternates with the
// same type and language).
func appendAlternates(dst []byte, permalink string, links []Link) []byte {
	var types [maxLinksPerRel + 1]string
	seen := types[:0]
	if strings.TrimSpace(permalink) != "" {
		typ, title := "", ""
		for _, l := range links {
			if l.Href == permalink {
				typ, title = l.Type, l.Title
				break
			}
		}
		dst = appendLink(dst, "alternate", permalink, typ, title)
		seen = append(seen, linkType(typ))
	}
	for _, l := range links {
		typ := linkType(l.Type)
		if l.Href == permalink || strings.TrimSpace(l.Href) == "" || len(seen) == cap(seen) || containsFold(seen, typ) {
			continue
		}
		dst = appendLink(dst, "alternate", l.Href, typ, l.Title)
		seen = append(seen, typ)
	}
	return dst
}

// linkType is the type an atom:link is written with: "" unless valid.
func linkType(typ string) string {
	if validMediaType(typ) {
		return typ
	}
	return ""
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// appendLink writes an atom:link; a blank href writes nothing.
func appendLink(dst []byte, rel, href, typ, title string) []byte {
	href = strings.TrimSpace(href)
	if href == "" {
		return dst
	}
	dst = append(dst, `<link rel="`...)
	dst = append(dst, rel...)
	dst = append(dst, `" href="`...)
	dst = appendHref(dst, href)
	dst = append(dst, '"')
	if typ = linkType(typ); typ != "" {
		dst = append(dst, ` type="`...)
		dst = append(dst, typ...)
		dst = append(dst, '"')
	}
	if title != "" {
		dst = append(dst, ` title="`...)
		dst = appendXMLText(dst, title, true)
		dst = append(dst, '"')
	}
	return append(dst, "/>"...)
}

func appendXMLElement(dst []byte, name, s string) []byte {
	dst = append(dst, '<')
	dst = append(dst, name...)
	dst = append(dst, '>')
	dst = appendXMLText(dst, s, false)
	dst = append(dst, "</"...)
	dst = append(dst, name...)
	return append(dst, '>')
}

// appendXMLDate writes <name>RFC 3339 date</name>, or nothing for no date.
func appendXMLDate(dst []byte, name string, sec int64) []byte {
	if !validTime(sec) {
		return dst
	}
	dst = append(dst, '<')
	dst = append(dst, name...)
	dst = append(dst, '>')
	dst = time.Unix(sec, 0).UTC().AppendFormat(dst, time.RFC3339)
	dst = append(dst, "</"...)
	dst = append(dst, name...)
	return append(dst, '>')
}

// Unix seconds of 0001-01-01 and 9999-12-31T23:59:59Z: the dates RFC 3339
// can write.
const (
	minTime = -62135596800
	maxTime = 253402300799
)

func validTime(sec int64) bool { return sec != 0 && sec >= minTime && sec <= maxTime }

// latest returns the latest of the valid dates among t and ts, or t.
func latest(t int64, ts ...int64) int64 {
	for _, x := range ts {
		if validTime(x) && (t == 0 || x > t) {
			t = x
		}
	}
	return t
}

// xmlPlain marks the ASCII bytes written as they are in text (and, with
// xmlPlainAttr, in attribute values); the others are escaped or, for the
// controls XML forbids, dropped.
var xmlPlain, xmlPlainAttr = func() (t, a [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	t['\t'], t['\n'] = true, true
	t['<'], t['>'], t['&'] = false, false, false
	a = t
	a['"'], a['\t'], a['\n'] = false, false, false
	return t, a
}()

// appendXMLText appends s escaped as XML character data, or as an attribute
// value (in double quotes) when attr is set. The output is well-formed for
// any s: invalid UTF-8 becomes U+FFFD, characters XML forbids are dropped,
// and CR (and, in attributes, tab and LF) are written as character
// references so that they survive XML's whitespace normalisation.
func appendXMLText(dst []byte, s string, attr bool) []byte {
	plain := &xmlPlain
	if attr {
		plain = &xmlPlainAttr
	}
	valid := utf8.ValidString(s)
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if plain[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '<':
				dst = append(dst, "&lt;"...)
			case '>':
				dst = append(dst, "&gt;"...)
			case '&':
				dst = append(dst, "&amp;"...)
			case '"':
				dst = append(dst, "&quot;"...)
			case '\r':
				dst = append(dst, "&#xD;"...)
			case '\n':
				dst = append(dst, "&#xA;"...)
			case '\t':
				dst = append(dst, "&#x9;"...)
			}
			i++
			start = i
			continue
		}
		if valid {
			// Only U+FFFE and U+FFFF (EF BF BE/BF) are forbidden.
			if b == 0xEF && i+2 < len(s) && s[i+1] == 0xBF && (s[i+2] == 0xBE || s[i+2] == 0xBF) {
				dst = append(dst, s[start:i]...)
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
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		if c == 0xFFFE || c == 0xFFFF {
			dst = append(dst, s[start:i]...)
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// hrefByte marks the ASCII bytes written as they are in an href: those the
// W3C feed validator accepts in a URI reference. Every other byte
// (including those of non-ASCII characters) is percent-encoded, which turns
// an IRI into the equivalent URI and anything at all into a valid one.
var hrefByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range ";/?:@=+$.-_!~*'()%,#[]" {
		t[c] = true
	}
	return t
}()

func appendHref(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case hrefByte[c]:
			dst = append(dst, c)
		case c == '&':
			dst = append(dst, "&amp;"...)
		default:
			dst = append(dst, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		}
	}
	return dst
}

// appendShortHash appends 128 bits of the hash of a and b in hex.
func appendShortHash(dst []byte, a, b string) []byte {
	var buf [512]byte
	in := append(append(append(buf[:0], a...), 0), b...)
	sum := sha256.Sum256(in)
	return hex.AppendEncode(dst, sum[:16])
}

func firstNonBlank(ss ...string) string {
	for _, s := range ss {
		if !blank(s) {
			return s
		}
	}
	return ""
}

// blank reports whether s has nothing to show once written as XML: only
// white space and characters XML forbids.
func blank(s string) bool {
	for _, r := range s {
		if r != utf8.RuneError && xmlChar(r) && !unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

func hostOf(topic string) string {
	if u, err := url.Parse(topic); err == nil {
		return u.Hostname()
	}
	return ""
}

// iriChar marks the bytes the W3C feed validator accepts in a full URI.
var iriChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range ";/?:@&=+$.-_!~*'()%,#" {
		t[c] = true
	}
	return t
}()

var tagURI = regexp.MustCompile(`^tag:([a-z0-9\-._]+?@)?[a-z0-9.\-]+?,\d{4}(-\d{2}(-\d{2})?)?:[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,]*(#[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,]*)?$`)

// validAtomID reports whether s can be written as an atom:id (or another
// full IRI) as it is: an absolute URI the W3C feed validator accepts, with
// its checks of tag:, urn: and http(s): URIs.
func validAtomID(s string) bool {
	sc := scheme(s)
	if sc == "" || len(s) == len(sc)+1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !iriChar[s[i]] {
			return false
		}
	}
	rest := s[len(sc)+1:]
	switch sc {
	case "tag":
		return tagURI.MatchString(s)
	case "urn":
		return validURN(rest)
	case "http", "https", "ftp":
		return len(rest) > 2 && rest[0] == '/' && rest[1] == '/' && rest[2] != '/'
	}
	return true
}

// validURN checks the part after "urn:" (RFC 2141, as the validator does).
func validURN(s string) bool {
	colon := strings.IndexByte(s, ':')
	if colon < 2 || colon > 32 || colon == len(s)-1 {
		return false
	}
	nid, nss := s[:colon], s[colon+1:]
	for i := 0; i < len(nid); i++ {
		c := nid[i]
		if !(isAlnum(c) || (c == '-' && i > 0)) {
			return false
		}
	}
	if strings.EqualFold(nid, "uuid") {
		return validUUID(nss)
	}
	for i := 0; i < len(nss); i++ {
		c := nss[i]
		switch {
		case isAlnum(c) || strings.IndexByte("()+,.:=@;$_!*'-", c) >= 0:
		case c == '%' && i+2 < len(nss) && isHex(nss[i+1]) && isHex(nss[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// validEmail accepts the addresses the validator accepts in atom:email.
func validEmail(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at < 1 || at == len(s)-1 {
		return false
	}
	for i := 0; i < at; i++ {
		c := s[i]
		if !isAlnum(c) && strings.IndexByte("_-+.'", c) < 0 {
			return false
		}
	}
	domain := s[at+1:]
	if !strings.Contains(domain, ".") {
		return false
	}
	last := ""
	for l := range strings.SplitSeq(domain, ".") {
		if l == "" {
			return false
		}
		for i := 0; i < len(l); i++ {
			if !isAlnum(l[i]) && l[i] != '-' {
				return false
			}
		}
		last = l
	}
	return isAlnum(last[0])
}

// validLang accepts language tags of the BCP 47 shape (en, en-US, zh-Hant).
func validLang(s string) bool {
	if s == "" || len(s) > maxLanguageLength {
		return false
	}
	i := -1
	for part := range strings.SplitSeq(s, "-") {
		i++
		if len(part) == 0 || len(part) > 8 || (i == 0 && (len(part) < 2 || len(part) > 3)) {
			return false
		}
		for j := 0; j < len(part); j++ {
			c := part[j]
			if !(isAlnum(c) && (i > 0 || !('0' <= c && c <= '9'))) {
				return false
			}
		}
	}
	return true
}

// validMediaType accepts a media type (type/subtype with optional
// token=token parameters), the shape the validator checks link types against.
func validMediaType(s string) bool {
	mt, params, _ := strings.Cut(s, ";")
	typ, sub, ok := strings.Cut(strings.TrimSpace(mt), "/")
	if !ok || !mimeToken(typ) || !mimeToken(sub) {
		return false
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !mimeToken(k) || !mimeToken(v) {
			return false
		}
	}
	return true
}

func mimeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && strings.IndexByte("!#$^_.+-", c) < 0 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
