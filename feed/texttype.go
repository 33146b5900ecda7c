package feed

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
)

// textKind is what a feed says a piece of text is. Items hold titles as
// plain text and content and summaries as HTML (as Superfeedr's schema
// does), so text marked as the other kind is converted when it is parsed:
// plain content is escaped into HTML, an HTML title is reduced to its text.
// The marks themselves are not kept.
type textKind uint8

const (
	plainText textKind = iota
	htmlText
)

// atomKind reads an Atom text construct's type: text is the default; html,
// xhtml and their media types (Atom 0.3's text/html, application/xhtml+xml)
// are HTML. Any other type is treated as text, which can only show markup,
// never run it. (Atom 0.3's mode says how content is written, not what it
// is.)
func atomKind(typ string) textKind {
	t := strings.ToLower(strings.TrimSpace(typ))
	if t == "html" || t == "text/html" || strings.Contains(t, "xhtml") {
		return htmlText
	}
	return plainText
}

// atomKinds are the kinds of an Atom document's text constructs, read from
// its type attributes (which gofeed does not keep for titles and summaries).
type atomKinds struct {
	title, subtitle textKind
	// entries are in document order, as gofeed's entries are.
	entries []entryKinds
}

type entryKinds struct {
	title, summary, content textKind
}

// scanAtomKinds reads the type attributes of an Atom document's feed title
// and subtitle and of each entry's title, summary and content, the way
// gofeed's Atom parser finds those elements (Atom or no namespace, the last
// of repeated elements winning). It reports false when the document cannot
// be read to its end.
func scanAtomKinds(body []byte) (atomKinds, bool) {
	var k atomKinds
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	d.CharsetReader = charset.NewReaderLabel
	depth := 0
	inEntry := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return k, true
		}
		if err != nil {
			return k, false
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if !atomSpace(t.Name.Space) {
				continue
			}
			name := strings.ToLower(t.Name.Local)
			kind := atomKind(attr(t, "type"))
			switch {
			case depth == 2 && name == "entry":
				inEntry = true
				k.entries = append(k.entries, entryKinds{})
			case depth == 2 && name == "title":
				k.title = kind
			case depth == 2 && (name == "subtitle" || name == "tagline"):
				k.subtitle = kind
			case depth == 3 && inEntry:
				e := &k.entries[len(k.entries)-1]
				switch name {
				case "title":
					e.title = kind
				case "summary":
					e.summary = kind
				case "content":
					e.content = kind
				}
			}
		case xml.EndElement:
			if depth == 2 {
				inEntry = false
			}
			depth--
		}
	}
}

func attr(e xml.StartElement, name string) string {
	for _, a := range e.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// atomSpace reports whether an element's namespace is one gofeed reads as
// Atom rather than as an extension.
func atomSpace(space string) bool {
	switch strings.TrimSpace(space) {
	case "", AtomNS, "http://purl.org/atom/ns#":
		return true
	}
	return false
}

// escapeText turns plain text into the HTML that shows it: &, < and > are
// escaped, nothing else changes, so text without them is its own HTML.
func escapeText(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	return htmlEscaper.Replace(s)
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// htmlToText returns the text an HTML fragment shows, as one line: its text
// nodes (not those of scripts, styles or templates) with runs of white
// space collapsed.
func htmlToText(s string) string {
	if !strings.ContainsAny(s, "<&") {
		return strings.Join(strings.Fields(s), " ")
	}
	ctx := &html.Node{Type: html.ElementNode, Data: "div", DataAtom: atom.Div}
	nodes, err := html.ParseFragment(strings.NewReader(s), ctx)
	if err != nil {
		return strings.Join(strings.Fields(s), " ")
	}
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		switch n.Type {
		case html.TextNode:
			b.WriteString(n.Data)
			return
		case html.ElementNode:
			switch n.DataAtom {
			case atom.Script, atom.Style, atom.Template, atom.Noscript:
				return
			case atom.Br, atom.P, atom.Div, atom.Li, atom.Tr, atom.Td, atom.Th,
				atom.H1, atom.H2, atom.H3, atom.H4, atom.H5, atom.H6:
				// Words on either side of a line or a block stay apart.
				b.WriteByte(' ')
				defer b.WriteByte(' ')
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	for _, n := range nodes {
		walk(n)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
