package feed

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// These checks are written independently of the encoders: they decode the
// output with the standard library and hold it to the W3C feed validator's
// own patterns.

var (
	// The validator's rfc2396_full (atom:id, atom:uri) and rfc2396 (href).
	fullURIPattern = regexp.MustCompile(`^[a-zA-Z][0-9a-zA-Z+\-.]*:(//)?[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#]+$`)
	uriRefPattern  = regexp.MustCompile(`^([a-zA-Z][0-9a-zA-Z+\-.]*:)?/{0,2}(\[[0-9A-Fa-f:]+\])?[0-9a-zA-Z;/?:@&=+$.\-_!~*'()%,#\[\]]*$`)
	urnPattern     = regexp.MustCompile(`^[Uu][Rr][Nn]:[a-zA-Z0-9][a-zA-Z0-9-]{1,31}:([a-zA-Z0-9()+,.:=@;$_!*'\-]|%[0-9A-Fa-f]{2})+$`)
	rfc3339Pattern = regexp.MustCompile(`^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*)?(Z|([+-]\d\d:\d\d))$`)
	emailPattern   = regexp.MustCompile(`(?i)^([A-Z0-9_\-+.']+)@(([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([A-Z0-9\-]+\.)+))([A-Z0-9][-A-Z0-9]*)$`)
)

func checkFullURI(s string) error {
	if !fullURIPattern.MatchString(s) {
		return fmt.Errorf("%q is not a full URI", s)
	}
	switch strings.ToLower(s[:strings.IndexByte(s, ':')]) {
	case "urn":
		if !urnPattern.MatchString(s) {
			return fmt.Errorf("%q is not a valid URN", s)
		}
	case "http", "https":
		if !regexp.MustCompile(`^\w+://[^/]`).MatchString(s) {
			return fmt.Errorf("%q is not a full http URL", s)
		}
	}
	return nil
}

// xmlClean is what text becomes once through XML: valid UTF-8 without the
// characters XML 1.0 forbids.
func xmlClean(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // U+FFFD for each invalid byte, as the encoders do
		i += size
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return -1
		}
		return r
	}, b.String())
}

// isClean reports whether s is what the parser promises to store.
func isClean(s string) bool { return utf8.ValidString(s) && xmlClean(s) == s }

type atomLink struct {
	Rel   string `xml:"rel,attr"`
	Href  string `xml:"href,attr"`
	Type  string `xml:"type,attr"`
	Title string `xml:"title,attr"`
}

type atomText struct {
	Type string `xml:"type,attr"`
	Body string `xml:",chardata"`
}

type atomPerson struct {
	Name  *string `xml:"http://www.w3.org/2005/Atom name"`
	Email string  `xml:"http://www.w3.org/2005/Atom email"`
	URI   string  `xml:"http://www.w3.org/2005/Atom uri"`
}

type atomCategory struct {
	Term string `xml:"term,attr"`
}

type atomEntry struct {
	Lang       string         `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
	ID         []string       `xml:"http://www.w3.org/2005/Atom id"`
	Title      []string       `xml:"http://www.w3.org/2005/Atom title"`
	Updated    []string       `xml:"http://www.w3.org/2005/Atom updated"`
	Published  []string       `xml:"http://www.w3.org/2005/Atom published"`
	Links      []atomLink     `xml:"http://www.w3.org/2005/Atom link"`
	Authors    []atomPerson   `xml:"http://www.w3.org/2005/Atom author"`
	Categories []atomCategory `xml:"http://www.w3.org/2005/Atom category"`
	Content    *atomText      `xml:"http://www.w3.org/2005/Atom content"`
	Summary    *atomText      `xml:"http://www.w3.org/2005/Atom summary"`
	Cursor     string         `xml:"http://superfeedr.com/xmpp-pubsub-ext cursor"`
}

type atomStatus struct {
	Feed string `xml:"feed,attr"`
	HTTP *struct {
		Code string `xml:"code,attr"`
		Body string `xml:",chardata"`
	} `xml:"http://superfeedr.com/xmpp-pubsub-ext http"`
	NextFetch string `xml:"http://superfeedr.com/xmpp-pubsub-ext next_fetch"`
	Period    string `xml:"http://superfeedr.com/xmpp-pubsub-ext period"`
	LastFetch string `xml:"http://superfeedr.com/xmpp-pubsub-ext last_fetch"`
	LastParse string `xml:"http://superfeedr.com/xmpp-pubsub-ext last_parse"`
	Count     string `xml:"http://superfeedr.com/xmpp-pubsub-ext entries_count_since_last_maintenance"`
	Title     string `xml:"http://superfeedr.com/xmpp-pubsub-ext title"`
	Cursor    string `xml:"http://superfeedr.com/xmpp-pubsub-ext cursor"`
	Gap       string `xml:"http://superfeedr.com/xmpp-pubsub-ext gap"`
}

type atomFeed struct {
	XMLName  xml.Name     `xml:"http://www.w3.org/2005/Atom feed"`
	Lang     string       `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
	Status   []atomStatus `xml:"http://superfeedr.com/xmpp-pubsub-ext status"`
	ID       []string     `xml:"http://www.w3.org/2005/Atom id"`
	Title    []string     `xml:"http://www.w3.org/2005/Atom title"`
	Subtitle string       `xml:"http://www.w3.org/2005/Atom subtitle"`
	Updated  []string     `xml:"http://www.w3.org/2005/Atom updated"`
	Authors  []atomPerson `xml:"http://www.w3.org/2005/Atom author"`
	Links    []atomLink   `xml:"http://www.w3.org/2005/Atom link"`
	Entries  []atomEntry  `xml:"http://www.w3.org/2005/Atom entry"`
}

// checkWellFormed decodes every token of b with a strict decoder.
func checkWellFormed(b []byte) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	for {
		_, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func checkDate(what, s string) error {
	if !rfc3339Pattern.MatchString(s) {
		return fmt.Errorf("%s %q is not an RFC 3339 date", what, s)
	}
	if _, err := time.Parse(time.RFC3339, s); err != nil {
		return fmt.Errorf("%s %q: %v", what, s, err)
	}
	return nil
}

// checkLinks holds links to Atom's rules: alternate first, at most one
// alternate per type, every href a URI reference.
func checkLinks(what string, links []atomLink) error {
	seenOther := false
	types := map[string]bool{}
	for i, l := range links {
		if !uriRefPattern.MatchString(l.Href) || l.Href == "" {
			return fmt.Errorf("%s link %d: href %q is not a URI", what, i, l.Href)
		}
		if l.Rel == "alternate" {
			if seenOther {
				return fmt.Errorf("%s: alternate link after another relation: %+v", what, links)
			}
			if types[strings.ToLower(l.Type)] {
				return fmt.Errorf("%s: two alternate links of type %q", what, l.Type)
			}
			types[strings.ToLower(l.Type)] = true
		} else {
			seenOther = true
		}
	}
	return nil
}

// checkAtom decodes an AppendAtom document and checks what the W3C feed
// validator checks, and that it says what n says.
func checkAtom(b []byte, n *Notification) error {
	if !bytes.HasPrefix(b, []byte(`<?xml version="1.0" encoding="UTF-8"?>`)) {
		return fmt.Errorf("no XML declaration")
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("not UTF-8")
	}
	if err := checkWellFormed(b); err != nil {
		return fmt.Errorf("not well-formed: %v", err)
	}
	var f atomFeed
	if err := xml.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("decode: %v", err)
	}
	if len(f.ID) != 1 || checkFullURI(f.ID[0]) != nil {
		return fmt.Errorf("feed id %q", f.ID)
	}
	if len(f.Title) != 1 || strings.TrimSpace(f.Title[0]) == "" {
		return fmt.Errorf("feed title %q", f.Title)
	}
	if len(f.Updated) != 1 {
		return fmt.Errorf("feed updated %q", f.Updated)
	}
	if err := checkDate("feed updated", f.Updated[0]); err != nil {
		return err
	}
	if len(f.Authors) == 0 || f.Authors[0].Name == nil || strings.TrimSpace(*f.Authors[0].Name) == "" {
		return fmt.Errorf("feed has no author name")
	}
	if strings.TrimSpace(n.Status.Feed) != "" && (len(f.Links) == 0 || f.Links[0].Rel != "alternate") {
		return fmt.Errorf("feed links do not start with alternate: %+v", f.Links)
	}
	if err := checkLinks("feed", f.Links); err != nil {
		return err
	}
	if len(f.Status) != 1 {
		return fmt.Errorf("%d sf:status elements", len(f.Status))
	}
	st := f.Status[0]
	if st.Feed != xmlClean(n.Status.Feed) {
		return fmt.Errorf("sf:status feed %q, want %q", st.Feed, xmlClean(n.Status.Feed))
	}
	if n.Status.Cursor != 0 && st.Cursor != n.Status.Cursor.String() {
		return fmt.Errorf("sf:cursor %q, want %q", st.Cursor, n.Status.Cursor)
	}
	if (st.Gap == "true") != n.Status.Gap {
		return fmt.Errorf("sf:gap %q, want %v", st.Gap, n.Status.Gap)
	}
	if len(f.Entries) != len(n.Items) {
		return fmt.Errorf("%d entries, want %d", len(f.Entries), len(n.Items))
	}
	ids := map[string]bool{}
	for i, e := range f.Entries {
		it := &n.Items[i]
		what := fmt.Sprintf("entry %d", i)
		if len(e.ID) != 1 {
			return fmt.Errorf("%s: ids %q", what, e.ID)
		}
		if err := checkFullURI(e.ID[0]); err != nil {
			return fmt.Errorf("%s: id: %v", what, err)
		}
		ids[e.ID[0]] = true
		if len(e.Title) != 1 || e.Title[0] != xmlClean(it.Title) {
			return fmt.Errorf("%s: title %q, want %q", what, e.Title, xmlClean(it.Title))
		}
		if len(e.Updated) != 1 {
			return fmt.Errorf("%s: updated %q", what, e.Updated)
		}
		if err := checkDate(what+" updated", e.Updated[0]); err != nil {
			return err
		}
		for _, p := range e.Published {
			if err := checkDate(what+" published", p); err != nil {
				return err
			}
			pt, _ := time.Parse(time.RFC3339, p)
			if ut, _ := time.Parse(time.RFC3339, e.Updated[0]); ut.Before(pt) {
				return fmt.Errorf("%s: updated %s before published %s", what, e.Updated[0], p)
			}
		}
		if err := checkLinks(what, e.Links); err != nil {
			return err
		}
		hasAlternate := len(e.Links) > 0 && e.Links[0].Rel == "alternate"
		if !hasAlternate && e.Content == nil {
			return fmt.Errorf("%s: neither content nor an alternate link", what)
		}
		if it.Content != "" && (e.Content == nil || e.Content.Body != xmlClean(it.Content) || e.Content.Type != "html") {
			return fmt.Errorf("%s: content %+v, want %q", what, e.Content, xmlClean(it.Content))
		}
		for _, a := range e.Authors {
			if a.Name == nil || strings.TrimSpace(*a.Name) == "" {
				return fmt.Errorf("%s: author without a name", what)
			}
			if a.Email != "" && !emailPattern.MatchString(a.Email) {
				return fmt.Errorf("%s: author email %q", what, a.Email)
			}
			if a.URI != "" {
				if err := checkFullURI(a.URI); err != nil {
					return fmt.Errorf("%s: author uri: %v", what, err)
				}
			}
		}
		var want []string
		for _, c := range it.Categories {
			if c := xmlClean(c); strings.TrimSpace(strings.ReplaceAll(c, "\uFFFD", "")) != "" {
				want = append(want, c)
			}
		}
		if len(e.Categories) != len(want) {
			return fmt.Errorf("%s: %d categories, want %d", what, len(e.Categories), len(want))
		}
		for j, c := range e.Categories {
			if c.Term != want[j] {
				return fmt.Errorf("%s: category %q, want %q", what, c.Term, want[j])
			}
		}
		if e.Cursor != it.Cursor.String() {
			return fmt.Errorf("%s: cursor %q, want %q", what, e.Cursor, it.Cursor)
		}
	}
	return nil
}

// jsonNotification mirrors the JSON schema of API.md §5 for decoding.
type jsonNotification struct {
	Status        *Status `json:"status"`
	Title         *string `json:"title"`
	Subtitle      *string `json:"subtitle"`
	ID            *string `json:"id"`
	Updated       *int64  `json:"updated"`
	PermalinkURL  *string `json:"permalinkUrl"`
	StandardLinks *Links  `json:"standardLinks"`
	Items         []Item  `json:"items"`
}

// checkJSON decodes an AppendJSON document and checks it says what n says,
// as encoding/json would have said it.
func checkJSON(b []byte, n *Notification) error {
	if !json.Valid(b) {
		return fmt.Errorf("invalid JSON: %.200q", b)
	}
	for _, bad := range []string{"\u2028", "\u2029"} {
		if bytes.Contains(b, []byte(bad)) {
			return fmt.Errorf("raw %U breaks JSONP", []rune(bad)[0])
		}
	}
	var got jsonNotification
	if err := json.Unmarshal(b, &got); err != nil {
		return err
	}
	if got.Status == nil || got.Title == nil || got.Subtitle == nil || got.ID == nil || got.Updated == nil ||
		got.PermalinkURL == nil || got.StandardLinks == nil || got.Items == nil {
		return fmt.Errorf("a top-level key is missing: %.300s", b)
	}
	var st Status
	wantStatus, _ := json.Marshal(n.Status)
	_ = json.Unmarshal(wantStatus, &st)
	wantStatus, _ = json.Marshal(st)
	gotStatus, _ := json.Marshal(got.Status)
	if !bytes.Equal(wantStatus, gotStatus) {
		return fmt.Errorf("status %s, want %s", gotStatus, wantStatus)
	}
	// The feed's id and updated are those of the Atom rendering (a date
	// only the clock gives may have ticked in between).
	var atom struct {
		ID      string `xml:"id"`
		Updated string `xml:"updated"`
	}
	if err := xml.Unmarshal(AppendAtom(nil, n, n.Status.Feed, ""), &atom); err != nil {
		return fmt.Errorf("the Atom rendering does not parse: %v", err)
	}
	gotID, gotUpdated := *got.ID, *got.Updated
	atomUpdated, err := time.Parse(time.RFC3339, atom.Updated)
	if gotID != atom.ID || err != nil || gotUpdated < atomUpdated.Unix()-1 || gotUpdated > atomUpdated.Unix()+1 {
		return fmt.Errorf("id %q updated %d; Atom says %q and %s", gotID, gotUpdated, atom.ID, atom.Updated)
	}
	if len(got.Items) != len(n.Items) {
		return fmt.Errorf("%d items, want %d", len(got.Items), len(n.Items))
	}
	for i := range n.Items {
		want, _ := json.Marshal(&n.Items[i])
		have, _ := json.Marshal(&got.Items[i])
		var w Item
		_ = json.Unmarshal(want, &w)
		wantRound, _ := json.Marshal(&w)
		if !bytes.Equal(have, wantRound) {
			return fmt.Errorf("item %d: %s, want %s", i, have, wantRound)
		}
	}
	return nil
}

// notificationOf makes a retrieve answer of a parsed document: its items
// newest first with cursors, as the store would return them.
func notificationOf(topic string, doc *Document) *Notification {
	n := &Notification{
		Status: Status{Code: 200, HTTP: "fetched", Feed: topic, Period: 900, LastFetch: 1700000000, LastParse: 1700000000, NextFetch: 1700000900},
		Meta:   doc.Meta,
	}
	for i := len(doc.Items) - 1; i >= 0; i-- {
		it := doc.Items[i]
		it.Cursor = Cursor(i + 1)
		n.Items = append(n.Items, it)
	}
	n.Status.Cursor = Cursor(len(doc.Items))
	return n
}

// checkDocument checks the promises Parse makes about what it returns.
func checkDocument(doc *Document) error {
	if len(doc.Items) > MaxItems {
		return fmt.Errorf("%d items", len(doc.Items))
	}
	m := doc.Meta
	for _, s := range []string{m.Title, m.Subtitle, m.ID, m.PermalinkURL, m.Language} {
		if !isClean(s) {
			return fmt.Errorf("meta text %q is not clean", s)
		}
	}
	ids := map[string]bool{}
	for i := range doc.Items {
		it := &doc.Items[i]
		if it.ID == "" || ids[it.ID] {
			return fmt.Errorf("item %d: empty or repeated id %q", i, it.ID)
		}
		ids[it.ID] = true
		if it.Hash == "" || it.Hash != it.ContentHash() {
			return fmt.Errorf("item %d: hash %q", i, it.Hash)
		}
		texts := []string{it.ID, it.Title, it.Content, it.Summary, it.PermalinkURL, it.Language}
		texts = append(texts, it.Categories...)
		if a := it.Actor; a != nil {
			texts = append(texts, a.DisplayName, a.ID, a.PermalinkURL)
		}
		for _, s := range texts {
			if !isClean(s) {
				return fmt.Errorf("item %d: text %q is not clean", i, s)
			}
		}
		if len(it.Title) > maxTitleLength || len(it.Content) > maxContentLength || len(it.Summary) > maxContentLength || len(it.ID) > maxIDLength {
			return fmt.Errorf("item %d: a field exceeds its bound", i)
		}
	}
	return nil
}

// checkRoundTrip encodes a parsed document both ways and checks both.
func checkRoundTrip(topic string, doc *Document) error {
	n := notificationOf(topic, doc)
	if err := checkJSON(AppendJSON(nil, n), n); err != nil {
		return fmt.Errorf("json: %v", err)
	}
	if err := checkAtom(AppendAtom(nil, n, topic, "https://hub.example.net/"), n); err != nil {
		return fmt.Errorf("atom: %v", err)
	}
	return nil
}
