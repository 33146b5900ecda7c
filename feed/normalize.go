package feed

import (
	"bytes"
	"cmp"
	stdjson "encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mmcdole/gofeed"
	"github.com/mmcdole/gofeed/atom"
	ext "github.com/mmcdole/gofeed/extensions"
	"github.com/mmcdole/gofeed/json"
	"github.com/mmcdole/gofeed/rss"
)

// rawLink is a link as the feed states it, before cleaning.
type rawLink struct{ rel, href, typ, title string }

// normalize turns gofeed's output into a Document. The original (format
// specific) feed supplies what the universal one drops: link relations,
// author URIs, Atom published dates, JSON Feed hubs.
func normalize(f *gofeed.Feed, body []byte, base *url.URL) *Document {
	doc := &Document{Format: f.FeedType}
	orig := f.OriginalFeed()

	raw := feedLinks(f, orig, body)
	if base == nil {
		base = linkBase(raw)
	}

	// Atom marks each text as text or HTML; items hold titles as text and
	// content as HTML (see textKind). A document whose marks cannot be read
	// to the end is taken as Atom's default, text, which can show markup
	// but never run it.
	var kinds atomKinds
	if o, ok := orig.(*atom.Feed); ok {
		if k, ok := scanAtomKinds(body); ok && len(k.entries) == len(o.Entries) {
			kinds = k
		} else {
			kinds.entries = make([]entryKinds, len(o.Entries))
		}
	}

	m := &doc.Meta
	m.Title = titleText(f.Title, kinds.title, maxTitleLength)
	m.Subtitle = titleText(f.Description, kinds.subtitle, maxTextLength)
	m.Language = text(f.Language, maxLanguageLength)
	m.Updated = unix(f.UpdatedParsed)
	if m.Updated == 0 {
		m.Updated = unix(f.PublishedParsed)
	}
	m.StandardLinks = buildLinks(raw, base)
	m.PermalinkURL = cleanURL(f.Link, base)
	if m.PermalinkURL == "" && m.StandardLinks != nil && len(m.StandardLinks.Alternate) > 0 {
		m.PermalinkURL = m.StandardLinks.Alternate[0].Href
	}
	switch o := orig.(type) {
	case *atom.Feed:
		m.ID = text(o.ID, maxIDLength)
	case *json.Feed:
		m.ID = cleanURL(o.FeedURL, base)
	}

	feedActor := feedAuthor(orig, base)

	type entry struct {
		item  Item
		index int   // position in the document
		date  int64 // the later of published and updated
	}
	entries := make([]entry, 0, len(f.Items))
	dated := true
	for i, gi := range f.Items {
		if gi == nil {
			continue
		}
		var k entryKinds
		if i < len(kinds.entries) {
			k = kinds.entries[i]
		}
		it := normalizeItem(gi, orig, i, k, base, feedActor, m.Language)
		date := max(it.Published, it.Updated)
		if date == 0 {
			dated = false
		}
		entries = append(entries, entry{item: it, index: i, date: date})
	}

	// Oldest first: by date when every entry has one, otherwise in reverse
	// document order. Ties go by reverse document order too, so the order is
	// the same on every parse.
	slices.SortFunc(entries, func(a, b entry) int {
		if dated {
			if c := cmp.Compare(a.date, b.date); c != 0 {
				return c
			}
		}
		return cmp.Compare(b.index, a.index)
	})

	// Keep the newest version of an id repeated within the document, and
	// the newest MaxItems entries.
	seen := make(map[string]struct{}, len(entries))
	items := make([]Item, 0, min(len(entries), MaxItems))
	for i := len(entries) - 1; i >= 0 && len(items) < MaxItems; i-- {
		it := entries[i].item
		if _, dup := seen[it.ID]; dup {
			continue
		}
		seen[it.ID] = struct{}{}
		items = append(items, it)
	}
	slices.Reverse(items)
	doc.Items = items
	return doc
}

// normalizeItem makes an item of a gofeed item; kinds are the marks of an
// Atom entry's texts (ignored for other formats).
func normalizeItem(gi *gofeed.Item, orig any, i int, kinds entryKinds, base *url.URL, feedActor *Actor, lang string) Item {
	it := Item{
		Title:      text(gi.Title, maxTitleLength),
		Content:    content(gi.Content),
		Summary:    content(gi.Description),
		Published:  unix(gi.PublishedParsed),
		Updated:    unix(gi.UpdatedParsed),
		Categories: categories(gi.Categories),
		Language:   lang,
	}
	var raw []rawLink
	guidIsPermalink := false
	switch o := orig.(type) {
	case *atom.Feed:
		if i < len(o.Entries) && o.Entries[i] != nil {
			e := o.Entries[i]
			it.Title = titleText(gi.Title, kinds.title, maxTitleLength)
			if e.Content != nil {
				// gofeed keeps content's own type: trust it over the scan.
				kinds.content = atomKind(e.Content.Type)
			}
			it.Content = asHTML(it.Content, kinds.content)
			it.Summary = asHTML(it.Summary, kinds.summary)
			// gofeed falls back to updated for published; keep only what
			// the entry says.
			it.Published = unix(e.PublishedParsed)
			for _, l := range e.Links {
				if l != nil {
					raw = append(raw, rawLink{l.Rel, l.Href, l.Type, l.Title})
				}
			}
			if a := atomActor(e.Authors, base); a != nil {
				it.Actor = a
			}
		}
	case *rss.Feed:
		if i < len(o.Items) && o.Items[i] != nil {
			ri := o.Items[i]
			if gi.Link != "" {
				raw = append(raw, rawLink{rel: "alternate", href: gi.Link})
			}
			raw = append(raw, extLinks(ri.Extensions)...)
			guidIsPermalink = ri.GUID != nil && !strings.EqualFold(strings.TrimSpace(ri.GUID.IsPermalink), "false")
		}
		if len(gi.Authors) > 0 && gi.Authors[0] != nil {
			it.Actor = actor(gi.Authors[0].Name, gi.Authors[0].Email, "", base)
		}
	case *json.Feed:
		if i < len(o.Items) && o.Items[i] != nil {
			ji := o.Items[i]
			// JSON Feed's summary and content_text are plain text;
			// content_html, which gofeed prefers, is HTML.
			if ji.ContentHTML == "" {
				it.Content = escapeText(it.Content)
			}
			it.Summary = escapeText(it.Summary)
			if ji.URL != "" {
				raw = append(raw, rawLink{rel: "alternate", href: ji.URL, typ: "text/html"})
			}
			it.Actor = jsonActor(ji.Authors, ji.Author, base)
			if l := text(ji.Language, maxLanguageLength); l != "" {
				it.Language = l
			}
		}
	}
	if it.Actor == nil {
		it.Actor = feedActor
	}

	it.StandardLinks = buildLinks(raw, base)
	it.PermalinkURL = cleanURL(gi.Link, base)
	if it.PermalinkURL == "" && it.StandardLinks != nil && len(it.StandardLinks.Alternate) > 0 {
		it.PermalinkURL = it.StandardLinks.Alternate[0].Href
	}

	id := strings.TrimSpace(clean(gi.GUID))
	if it.PermalinkURL == "" && guidIsPermalink {
		if u := absoluteURL(id); u != nil {
			it.PermalinkURL = cleanURL(id, nil)
		}
	}
	switch {
	case id == "":
		it.ID = derivedID(&it)
	case len(id) > maxIDLength:
		it.ID = longID(id)
	default:
		it.ID = id
	}
	it.Hash = it.ContentHash()
	return it
}

// titleText returns a title or subtitle as the text it shows: HTML is
// reduced to its text.
func titleText(s string, kind textKind, n int) string {
	if kind == htmlText {
		s = htmlToText(clean(s))
	}
	return text(s, n)
}

// asHTML returns content or a summary as HTML: plain text is escaped.
func asHTML(s string, kind textKind) string {
	if kind == plainText {
		return escapeText(s)
	}
	return s
}

// unix converts a parsed date to Unix seconds; 0 stands for no date, and for
// dates outside the years 1 to 9999, which no feed means.
func unix(t *time.Time) int64 {
	if t == nil || t.Year() < 1 || t.Year() > 9999 {
		return 0
	}
	return t.Unix()
}

func categories(in []string) []string {
	var out []string
	for _, c := range in {
		c = text(c, maxCategoryLength)
		if c == "" || slices.Contains(out, c) {
			continue
		}
		out = append(out, c)
		if len(out) == maxCategories {
			break
		}
	}
	return out
}

func actor(name, email, uri string, base *url.URL) *Actor {
	a := Actor{
		DisplayName:  text(name, maxTextLength),
		ID:           text(email, maxTextLength),
		PermalinkURL: cleanURL(uri, base),
	}
	if a == (Actor{}) {
		return nil
	}
	return &a
}

func atomActor(ps []*atom.Person, base *url.URL) *Actor {
	for _, p := range ps {
		if p == nil {
			continue
		}
		if a := actor(p.Name, p.Email, p.URI, base); a != nil {
			return a
		}
	}
	return nil
}

func jsonActor(authors []*json.Author, author *json.Author, base *url.URL) *Actor {
	if author != nil {
		authors = append(authors, author)
	}
	for _, p := range authors {
		if p == nil {
			continue
		}
		if a := actor(p.Name, "", p.URL, base); a != nil {
			return a
		}
	}
	return nil
}

// feedAuthor is the author entries inherit when they name none. Atom and
// JSON Feed define that inheritance; RSS's managingEditor is not an author
// of the items, so RSS items inherit nothing.
func feedAuthor(orig any, base *url.URL) *Actor {
	switch o := orig.(type) {
	case *atom.Feed:
		return atomActor(o.Authors, base)
	case *json.Feed:
		return jsonActor(o.Authors, o.Author, base)
	}
	return nil
}

// feedLinks collects the feed-level links with their relations.
func feedLinks(f *gofeed.Feed, orig any, body []byte) []rawLink {
	var raw []rawLink
	switch o := orig.(type) {
	case *atom.Feed:
		for _, l := range o.Links {
			if l != nil {
				raw = append(raw, rawLink{l.Rel, l.Href, l.Type, l.Title})
			}
		}
	case *rss.Feed:
		for _, l := range o.Links {
			raw = append(raw, rawLink{rel: "alternate", href: l})
		}
		raw = append(raw, extLinks(o.Extensions)...)
	case *json.Feed:
		if o.HomePageURL != "" {
			raw = append(raw, rawLink{rel: "alternate", href: o.HomePageURL, typ: "text/html"})
		}
		if o.FeedURL != "" {
			raw = append(raw, rawLink{rel: "self", href: o.FeedURL, typ: "application/feed+json"})
		}
		raw = append(raw, jsonHubs(body)...)
	default:
		if f.Link != "" {
			raw = append(raw, rawLink{rel: "alternate", href: f.Link})
		}
	}
	return raw
}

// extLinks returns the atom:link elements embedded in an RSS channel or item
// (how RSS feeds announce their WebSub hub and self URL).
func extLinks(e ext.Extensions) []rawLink {
	var raw []rawLink
	for _, ns := range []string{"atom", "atom10", "atom03"} {
		for _, l := range e[ns]["link"] {
			raw = append(raw, rawLink{l.Attrs["rel"], l.Attrs["href"], l.Attrs["type"], l.Attrs["title"]})
		}
	}
	return raw
}

// jsonHubs reads the "hubs" of a JSON Feed, which gofeed does not keep.
func jsonHubs(body []byte) []rawLink {
	if !bytes.Contains(body, []byte(`"hubs"`)) {
		return nil
	}
	var v struct {
		Hubs []struct {
			Type string `json:"type"`
			URL  string `json:"url"`
		} `json:"hubs"`
	}
	if stdjson.Unmarshal(body, &v) != nil {
		return nil
	}
	var raw []rawLink
	for _, h := range v.Hubs {
		raw = append(raw, rawLink{rel: "hub", href: h.URL})
	}
	return raw
}

// linkBase picks the URL relative links are resolved against when the caller
// gave none: the feed's absolute self link, else its absolute alternate link.
func linkBase(raw []rawLink) *url.URL {
	for _, rel := range []string{"self", "alternate"} {
		for _, l := range raw {
			r := normRel(l.rel)
			if r == rel {
				if u := absoluteURL(strings.TrimSpace(clean(l.href))); u != nil {
					return u
				}
			}
		}
	}
	return nil
}

func normRel(rel string) string {
	rel = strings.ToLower(strings.TrimSpace(rel))
	rel = strings.TrimPrefix(rel, "http://www.iana.org/assignments/relation/")
	if rel == "" {
		return "alternate"
	}
	return rel
}

// buildLinks groups links by relation (alternate, self, hub; others are not
// kept), cleaned, resolved, without duplicates, and bounded.
func buildLinks(raw []rawLink, base *url.URL) *Links {
	var l Links
	for _, r := range raw {
		var dst *[]Link
		switch normRel(r.rel) {
		case "alternate":
			dst = &l.Alternate
		case "self":
			dst = &l.Self
		case "hub":
			dst = &l.Hub
		default:
			continue
		}
		href := cleanURL(r.href, base)
		if href == "" || len(*dst) >= maxLinksPerRel {
			continue
		}
		if slices.ContainsFunc(*dst, func(x Link) bool { return x.Href == href }) {
			continue
		}
		*dst = append(*dst, Link{Href: href, Type: text(r.typ, 255), Title: text(r.title, maxTitleLength)})
	}
	if l.Alternate == nil && l.Self == nil && l.Hub == nil {
		return nil
	}
	return &l
}
