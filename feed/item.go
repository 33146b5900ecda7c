// Package feed owns feedgate's item model: normalising parsed feeds into
// items, stable entry ids and content hashes, and the JSON (Superfeedr schema)
// and Atom encodings of retrieve answers and live notifications.
package feed

import (
	"strconv"
)

// Cursor is the gateway's position of an item within its topic. Cursors are
// assigned by the store, start at 1 and grow by one with every stored item, so
// two cursors of one topic say exactly how many items lie between them.
// On the wire a cursor is an opaque string (see String).
type Cursor uint64

// cursorWidth pads cursors so that they also sort as strings and cannot be
// mistaken for the short numeric ids some feeds use.
const cursorWidth = 16

// String renders the cursor as a fixed-width decimal string.
func (c Cursor) String() string {
	var buf [20]byte
	return string(c.appendTo(buf[:0]))
}

func (c Cursor) appendTo(dst []byte) []byte {
	var buf [20]byte
	s := strconv.AppendUint(buf[:0], uint64(c), 10)
	for i := len(s); i < cursorWidth; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// MarshalText implements encoding.TextMarshaler.
func (c Cursor) MarshalText() ([]byte, error) { return c.appendTo(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Cursor) UnmarshalText(b []byte) error {
	v, ok := ParseCursor(string(b))
	if !ok {
		return strconv.ErrSyntax
	}
	*c = v
	return nil
}

// ParseCursor reads a cursor as rendered by String. It reports false for
// anything else, which callers then treat as an entry id.
func ParseCursor(s string) (Cursor, bool) {
	if len(s) != cursorWidth {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return Cursor(v), true
}

// Link is one entry of standardLinks.
type Link struct {
	Href  string `json:"href"`
	Type  string `json:"type,omitempty"`
	Title string `json:"title,omitempty"`
}

// Links groups links by relation, as Superfeedr's standardLinks does.
type Links struct {
	Alternate []Link `json:"alternate,omitempty"`
	Self      []Link `json:"self,omitempty"`
	Hub       []Link `json:"hub,omitempty"`
}

// Actor is the author of an entry.
type Actor struct {
	DisplayName  string `json:"displayName,omitempty"`
	ID           string `json:"id,omitempty"`
	PermalinkURL string `json:"permalinkUrl,omitempty"`
}

// Item is one stored version of a feed entry. Dates are Unix seconds.
type Item struct {
	ID            string   `json:"id"`
	Cursor        Cursor   `json:"cursor"`
	Title         string   `json:"title,omitempty"`
	Published     int64    `json:"published,omitempty"`
	Updated       int64    `json:"updated,omitempty"`
	Content       string   `json:"content,omitempty"`
	Summary       string   `json:"summary,omitempty"`
	PermalinkURL  string   `json:"permalinkUrl,omitempty"`
	StandardLinks *Links   `json:"standardLinks,omitempty"`
	Actor         *Actor   `json:"actor,omitempty"`
	Categories    []string `json:"categories,omitempty"`
	Language      string   `json:"language,omitempty"`
	// Source names the topic of the item in an answer that merges several
	// topics (retrieve by hub.callback); it is never stored.
	Source *Source `json:"source,omitempty"`

	// Hash identifies the entry's content: an entry stored again with the
	// same id and hash is a duplicate; with another hash it is an update.
	// It is set by the parser and kept by the store, never rendered.
	Hash string `json:"-"`
}

// Source is the topic an item comes from.
type Source struct {
	// Feed is the topic URL, as status.feed names it.
	Feed  string `json:"feed"`
	Title string `json:"title,omitempty"`
}

// Meta is what a feed says about itself.
type Meta struct {
	Title         string `json:"title,omitempty"`
	Subtitle      string `json:"subtitle,omitempty"`
	ID            string `json:"id,omitempty"`
	Updated       int64  `json:"updated,omitempty"`
	PermalinkURL  string `json:"permalinkUrl,omitempty"`
	StandardLinks *Links `json:"standardLinks,omitempty"`
	Language      string `json:"language,omitempty"`
}

// Status is the gateway's account of a topic: the last fetch and the newest
// cursor. Dates are Unix seconds; Period is in seconds.
type Status struct {
	Code              int    `json:"code"`
	HTTP              string `json:"http"`
	Feed              string `json:"feed"`
	Title             string `json:"title,omitempty"`
	Period            int    `json:"period"`
	LastFetch         int64  `json:"lastFetch"`
	LastParse         int64  `json:"lastParse"`
	NextFetch         int64  `json:"nextFetch"`
	LastMaintenanceAt int64  `json:"lastMaintenanceAt,omitempty"`
	// EntriesCountSinceLastMaintenance is how many items the topic stored
	// since LastMaintenanceAt, Superfeedr's measure of a feed's verbosity.
	EntriesCountSinceLastMaintenance int    `json:"entriesCountSinceLastMaintenance,omitempty"`
	Cursor                           Cursor `json:"cursor,omitempty"`
	Gap                              bool   `json:"gap"`
}

// Notification is a retrieve answer or a live notification: a topic's status
// and metadata with a list of items, newest first.
type Notification struct {
	Status Status
	Meta   Meta
	Items  []Item
}

// MemSize approximates the memory the item holds (its struct and what it
// points to), for caches that bound their size.
func (it *Item) MemSize() int {
	n := 256 + len(it.ID) + len(it.Title) + len(it.Content) + len(it.Summary) +
		len(it.PermalinkURL) + len(it.Language) + len(it.Hash)
	if l := it.StandardLinks; l != nil {
		for _, g := range [][]Link{l.Alternate, l.Self, l.Hub} {
			for _, x := range g {
				n += 48 + len(x.Href) + len(x.Type) + len(x.Title)
			}
		}
	}
	if a := it.Actor; a != nil {
		n += 48 + len(a.DisplayName) + len(a.ID) + len(a.PermalinkURL)
	}
	for _, c := range it.Categories {
		n += 16 + len(c)
	}
	return n
}
