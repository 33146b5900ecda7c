package feed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/mmcdole/gofeed"
	"golang.org/x/net/html/charset"
)

// MaxItems bounds the entries Parse keeps from one document: the newest
// MaxItems (the default retention of a topic, so nothing a topic could hold
// is lost).
const MaxItems = 1000

// Bounds on the shape of a document, checked before it is parsed so that no
// body, however built, makes the parser use unbounded memory or stack.
const (
	maxEntries = 10 * MaxItems // entry elements (XML)
	maxNodes   = 200_000       // elements and attributes (XML), objects and arrays (JSON)
	maxDepth   = 256           // nesting of elements, objects and arrays
)

// ErrNotFeed is matched (errors.Is) by every error Parse returns: the body
// cannot be read as a feed, which callers answer with 422.
var ErrNotFeed = errors.New("not an RSS, Atom or JSON feed")

// ParseError says why a body could not be read as a feed, in words meant for
// the person who sent it.
type ParseError struct {
	// Reason is what is wrong, e.g. "it looks like an HTML page".
	Reason string
	// Err is the underlying parser error, if any.
	Err error
}

func (e *ParseError) Error() string {
	return "the body is not an RSS, Atom or JSON feed: " + e.Reason
}

// Unwrap returns the underlying parser error.
func (e *ParseError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrNotFeed) true for every *ParseError.
func (e *ParseError) Is(target error) bool { return target == ErrNotFeed }

func parseErrorf(err error, format string, args ...any) *ParseError {
	return &ParseError{Reason: fmt.Sprintf(format, args...), Err: err}
}

// Document is a parsed feed: what it says about itself, and its entries as
// items in the order they should be appended (oldest first).
type Document struct {
	Meta  Meta
	Items []Item
	// Format is "rss", "atom" or "json".
	Format string
}

// Parse reads an RSS 0.9x/1.0/2.0, Atom 0.3/1.0 or JSON Feed 1.x document.
// contentType is the Content-Type the body came with ("" when unknown); its
// charset is used when the body does not declare its own encoding.
//
// The entries become Items oldest first: by date when every entry has one
// (the later of published and updated, ties in reverse document order),
// otherwise in reverse document order, since feeds list their newest entry
// first. Entries repeating an id are kept once (the newest), and only the
// newest MaxItems are kept. Every Item has an ID (its own, else a derived one
// starting with DerivedIDPrefix) and its Hash (see Item.ContentHash).
//
// All text is valid UTF-8 without the characters XML 1.0 forbids. Titles are
// cut at 2 KiB, content and summary at 256 KiB each, other text at 4 KiB; at
// most 64 categories of 256 bytes and 16 links per relation are kept; URLs
// longer than 4 KiB or with a javascript:, vbscript: or data: scheme are
// dropped. Documents with more than 10,000 entries, 200,000 elements, or
// nesting deeper than 256 are refused.
//
// Parse never panics. Every error is a *ParseError matching ErrNotFeed.
func Parse(body []byte, contentType string) (*Document, error) {
	return ParseWithBase(body, contentType, "")
}

// ParseWithBase is Parse with the URL the body was fetched from (the topic):
// relative links in the feed are resolved against it. Without it, relative
// links are resolved against the feed's own absolute self or alternate link.
// Give the same base every time a topic is parsed, so that ids and hashes
// stay the same.
func ParseWithBase(body []byte, contentType, base string) (doc *Document, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc = nil
			err = parseErrorf(fmt.Errorf("feed parser panic: %v", r), "the parser could not read it; check that it is a well-formed feed")
		}
	}()

	body, err = prepare(body, contentType)
	if err != nil {
		return nil, err
	}
	fp := gofeed.NewParser()
	fp.KeepOriginalFeed = true
	fp.RSSTranslator = &gofeed.DefaultRSSTranslator{DisableContentImageScan: true}
	f, perr := fp.Parse(bytes.NewReader(body))
	if perr != nil {
		return nil, explain(perr, body, contentType)
	}
	if f.FeedType == "json" && f.FeedVersion == "" && f.Title == "" && len(f.Items) == 0 {
		return nil, parseErrorf(nil, `it is JSON but not a JSON Feed (no "version", "title" or "items"); see https://www.jsonfeed.org/version/1.1/`)
	}
	return normalize(f, body, absoluteURL(strings.TrimSpace(base))), nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// prepare checks the body's shape and repairs what would make the parser
// fail on text alone: a body in the charset its Content-Type names, invalid
// UTF-8, and characters (or character references) XML 1.0 forbids.
func prepare(body []byte, contentType string) ([]byte, error) {
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(body, utf8BOM), " \t\r\n")
	if len(trimmed) == 0 {
		return nil, parseErrorf(nil, "it is empty")
	}
	switch trimmed[0] {
	case '<':
		enc, declared := xmlEncoding(trimmed)
		utf := !declared || isUTF8Label(enc)
		if !declared && !utf8.Valid(body) {
			if b, ok := transcode(body, contentType); ok {
				body = b
			}
		}
		if utf {
			body = repairXML(body)
		}
		if err := scanXML(body); err != nil {
			return nil, err
		}
		body = dropProlog(body)
	case '{':
		if !utf8.Valid(body) {
			if b, ok := transcode(body, contentType); ok {
				body = b
			}
		}
		if err := scanJSON(body); err != nil {
			return nil, err
		}
	default:
		return nil, notDetected(body, contentType)
	}
	return body, nil
}

// dropProlog removes the comments and processing instructions between the
// XML declaration and the root element (or DOCTYPE): gofeed looks for the
// root in the first 4 KiB only, and how long a prolog is must not decide
// whether a feed is accepted. The body is well-formed (scanXML).
func dropProlog(body []byte) []byte {
	rest := bytes.TrimPrefix(body, utf8BOM)
	var decl []byte
	if bytes.HasPrefix(rest, []byte("<?xml ")) || bytes.HasPrefix(rest, []byte("<?xml?")) {
		end := bytes.Index(rest, []byte("?>"))
		if end < 0 {
			return body
		}
		decl, rest = rest[:end+2], rest[end+2:]
	}
	start := rest
	for {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		var end []byte
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			end = []byte("-->")
		case bytes.HasPrefix(rest, []byte("<?")):
			end = []byte("?>")
		}
		if end == nil {
			break
		}
		i := bytes.Index(rest, end)
		if i < 0 {
			return body
		}
		rest = rest[i+len(end):]
	}
	if len(start)-len(rest) < 1024 {
		return body // short enough: leave the document as it came
	}
	out := make([]byte, 0, len(decl)+1+len(rest))
	out = append(append(append(out, decl...), '\n'), rest...)
	return out
}

// explain turns a gofeed error into a ParseError a publisher can act on.
func explain(err error, body []byte, contentType string) error {
	if errors.Is(err, gofeed.ErrFeedTypeNotDetected) {
		return notDetected(body, contentType)
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := strings.Trim(strings.ReplaceAll(typeErr.Field, "alias.", ""), ".")
		return parseErrorf(err, "it is JSON but does not follow JSON Feed: %q holds %s where a %s belongs",
			text(field, 100), typeErr.Value, typeErr.Type)
	}
	kind := "XML"
	if t := bytes.TrimLeft(bytes.TrimPrefix(body, utf8BOM), " \t\r\n"); len(t) > 0 && t[0] == '{' {
		kind = "JSON"
	}
	return parseErrorf(err, "it is not well-formed %s (%s)", kind, text(err.Error(), 200))
}

func notDetected(body []byte, contentType string) error {
	head := body
	if len(head) > 1024 {
		head = head[:1024]
	}
	ct := ""
	if contentType != "" {
		ct = fmt.Sprintf(" (Content-Type %q)", text(contentType, 100))
	}
	if bytes.Contains(bytes.ToLower(head), []byte("<html")) {
		return parseErrorf(gofeed.ErrFeedTypeNotDetected, "it looks like an HTML page%s; give the URL of the feed itself", ct)
	}
	return parseErrorf(gofeed.ErrFeedTypeNotDetected, "it does not start with an <rss>, <rdf:RDF> or <feed> element or a JSON Feed object%s", ct)
}

// xmlEncoding returns the encoding named by the XML declaration at the start
// of b, and whether there is one.
func xmlEncoding(b []byte) (string, bool) {
	if !bytes.HasPrefix(b, []byte("<?xml")) {
		return "", false
	}
	end := bytes.Index(b, []byte("?>"))
	if end < 0 {
		return "", false
	}
	decl := b[:end]
	i := bytes.Index(decl, []byte("encoding"))
	if i < 0 {
		return "", false
	}
	rest := bytes.TrimLeft(decl[i+len("encoding"):], " \t\r\n")
	if len(rest) == 0 || rest[0] != '=' {
		return "", false
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	if len(rest) == 0 || (rest[0] != '"' && rest[0] != '\'') {
		return "", false
	}
	q := rest[0]
	j := bytes.IndexByte(rest[1:], q)
	if j < 0 {
		return "", false
	}
	return string(rest[1 : 1+j]), true
}

func isUTF8Label(label string) bool {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return true
	}
	return false
}

// transcode converts a body to UTF-8 from the charset its Content-Type names.
func transcode(body []byte, contentType string) ([]byte, bool) {
	if contentType == "" {
		return nil, false
	}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["charset"] == "" || isUTF8Label(params["charset"]) {
		return nil, false
	}
	enc, _ := charset.Lookup(params["charset"])
	if enc == nil {
		return nil, false
	}
	out, err := enc.NewDecoder().Bytes(body)
	if err != nil {
		return nil, false
	}
	return out, true
}

// repairXML makes a UTF-8 XML body readable by the XML decoder, which stops
// at the first invalid UTF-8 sequence, raw U+FFFE/U+FFFF, or character
// reference to a character XML forbids (&#0;, &#x1;...): invalid sequences
// become U+FFFD and the others are removed. The (common) clean body is
// returned as is.
func repairXML(body []byte) []byte {
	if !utf8.Valid(body) {
		body = bytes.ToValidUTF8(body, []byte("\uFFFD"))
	}
	if bytes.Contains(body, []byte("\uFFFE")) || bytes.Contains(body, []byte("\uFFFF")) {
		body = bytes.ReplaceAll(body, []byte("\uFFFE"), nil)
		body = bytes.ReplaceAll(body, []byte("\uFFFF"), nil)
	}
	if i := badCharRef(body, 0); i >= 0 {
		out := make([]byte, 0, len(body))
		start := 0
		for i >= 0 {
			end := i + bytes.IndexByte(body[i:], ';') + 1
			out = append(out, body[start:i]...)
			start = end
			i = badCharRef(body, end)
		}
		body = append(out, body[start:]...)
	}
	return body
}

// badCharRef returns the index, at or after from, of the next character
// reference to a character XML 1.0 forbids, or -1.
func badCharRef(b []byte, from int) int {
	for from < len(b) {
		j := bytes.Index(b[from:], []byte("&#"))
		if j < 0 {
			return -1
		}
		i := from + j
		k := i + 2
		base := 10
		if k < len(b) && (b[k] == 'x' || b[k] == 'X') {
			base = 16
			k++
		}
		var v int64
		digits := 0
		for ; k < len(b); k++ {
			d := digitValue(b[k], base)
			if d < 0 {
				break
			}
			if v <= utf8.MaxRune {
				v = v*int64(base) + int64(d)
			}
			digits++
		}
		if digits > 0 && k < len(b) && b[k] == ';' {
			if v > utf8.MaxRune || (0xD800 <= v && v <= 0xDFFF) || !xmlChar(rune(v)) {
				return i
			}
		}
		from = i + 2
	}
	return -1
}

func digitValue(c byte, base int) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case base == 16 && 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case base == 16 && 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// scanXML walks the markup of an XML document without building anything and
// refuses documents nested too deep or with too many elements, attributes or
// entries. Like the lenient parser, an end tag closes every element opened
// since the matching start tag, so unclosed HTML such as <br> in a feed does
// not count as nesting.
func scanXML(b []byte) error {
	var stack [][]byte
	nodes, entries := 0, 0
	i := 0
	for {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 || i+j+1 >= len(b) {
			return unclosed(stack)
		}
		i += j + 1
		c := b[i]
		switch {
		case c == '!':
			switch {
			case bytes.HasPrefix(b[i:], []byte("!--")):
				k := bytes.Index(b[i+3:], []byte("-->"))
				if k < 0 {
					return unclosed(stack)
				}
				i += 3 + k + 3
			case bytes.HasPrefix(b[i:], []byte("![CDATA[")):
				k := bytes.Index(b[i+8:], []byte("]]>"))
				if k < 0 {
					return unclosed(stack)
				}
				i += 8 + k + 3
			default: // <!DOCTYPE ...> with an optional [internal subset]
				brackets := 0
				for ; i < len(b); i++ {
					if b[i] == '[' {
						brackets++
					} else if b[i] == ']' {
						brackets--
					} else if b[i] == '>' && brackets <= 0 {
						break
					}
				}
			}
		case c == '?':
			k := bytes.Index(b[i:], []byte("?>"))
			if k < 0 {
				return unclosed(stack)
			}
			i += k + 2
		case c == '/':
			name := xmlName(b[i+1:])
			for d := len(stack) - 1; d >= 0; d-- {
				if bytes.Equal(stack[d], name) {
					stack = stack[:d]
					break
				}
			}
			k := bytes.IndexByte(b[i:], '>')
			if k < 0 {
				return unclosed(stack)
			}
			i += k + 1
		case c == '_' || c == ':' || c >= utf8.RuneSelf || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z'):
			name := xmlName(b[i:])
			i += len(name)
			nodes++
			local := name
			if k := bytes.LastIndexByte(local, ':'); k >= 0 {
				local = local[k+1:]
			}
			if string(local) == "item" || string(local) == "entry" {
				entries++
				if entries > maxEntries {
					return parseErrorf(nil, "it has more than %d entries", maxEntries)
				}
			}
			closed := false
		attrs:
			for i < len(b) {
				switch b[i] {
				case '"', '\'':
					k := bytes.IndexByte(b[i+1:], b[i])
					if k < 0 {
						return unclosed(stack)
					}
					i += k + 2
					continue
				case '=':
					nodes++
				case '>':
					closed = i > 0 && b[i-1] == '/'
					i++
					break attrs
				}
				i++
			}
			if nodes > maxNodes {
				return parseErrorf(nil, "it has more than %d elements and attributes", maxNodes)
			}
			if !closed {
				stack = append(stack, name)
				if len(stack) > maxDepth {
					return parseErrorf(nil, "it nests elements more than %d deep", maxDepth)
				}
			}
		}
	}
}

// unclosed refuses a document that ends inside its root element: it was cut
// short, and what a lenient parser would make of it is not what was sent.
func unclosed(stack [][]byte) error {
	if len(stack) == 0 {
		return nil
	}
	return parseErrorf(nil, "it ends before its <%s> element is closed; the document looks truncated", stack[0])
}

// xmlName returns the tag name at the start of b.
func xmlName(b []byte) []byte {
	for i, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n', '/', '>':
			return b[:i]
		}
	}
	return b
}

// scanJSON refuses JSON documents nested too deep or with too many objects
// and arrays.
func scanJSON(b []byte) error {
	depth, nodes := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b); i++ {
				if b[i] == '\\' {
					i++
				} else if b[i] == '"' {
					break
				}
			}
		case '{', '[':
			depth++
			nodes++
			if depth > maxDepth {
				return parseErrorf(nil, "it nests objects and arrays more than %d deep", maxDepth)
			}
			if nodes > maxNodes {
				return parseErrorf(nil, "it has more than %d objects and arrays", maxNodes)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}
