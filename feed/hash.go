package feed

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

// DerivedIDPrefix starts every id the parser makes up for an entry that has
// none of its own (no Atom id, RSS guid or JSON Feed id), or whose own id is
// unreasonably long. The rest is a hash, so the same entry always gets the
// same id, and the whole is a valid URN, so it can serve as an atom:id.
const DerivedIDPrefix = "urn:feedgate:derived:"

// derivedID makes a stable id from what identifies an entry that has no id:
// its link, title and date (or, when it has none of them, its text).
func derivedID(it *Item) string {
	h := newFieldHash("feedgate entry id v1")
	h.str(it.PermalinkURL)
	h.str(it.Title)
	date := it.Published
	if date == 0 {
		date = it.Updated
	}
	h.int(date)
	if it.PermalinkURL == "" && it.Title == "" && date == 0 {
		h.str(it.Content)
		h.str(it.Summary)
	}
	return DerivedIDPrefix + h.sum()
}

// longID replaces an id longer than maxIDLength by a stable derived one.
func longID(id string) string {
	h := newFieldHash("feedgate long id v1")
	h.str(id)
	return DerivedIDPrefix + h.sum()
}

// ContentHash identifies what an entry says: its title, content, summary,
// permalink, dates, categories and author. Two versions of an entry hash the
// same exactly when none of those changed. Parse sets Item.Hash to it.
func (it *Item) ContentHash() string {
	h := newFieldHash("feedgate item hash v1")
	h.str(it.Title)
	h.str(it.Content)
	h.str(it.Summary)
	h.str(it.PermalinkURL)
	h.int(it.Published)
	h.int(it.Updated)
	h.int(int64(len(it.Categories)))
	for _, c := range it.Categories {
		h.str(c)
	}
	if a := it.Actor; a != nil {
		h.int(1)
		h.str(a.DisplayName)
		h.str(a.ID)
		h.str(a.PermalinkURL)
	} else {
		h.int(0)
	}
	return h.sum()
}

// fieldHash hashes a sequence of length-prefixed fields, so that moving text
// from one field to the next always changes the hash.
type fieldHash struct {
	buf []byte
}

func newFieldHash(domain string) *fieldHash {
	f := &fieldHash{buf: make([]byte, 0, 256)}
	f.str(domain)
	return f
}

func (f *fieldHash) str(s string) {
	f.buf = binary.AppendUvarint(f.buf, uint64(len(s)))
	f.buf = append(f.buf, s...)
}

func (f *fieldHash) int(v int64) {
	f.buf = strconv.AppendInt(f.buf, v, 10)
	f.buf = append(f.buf, 0)
}

// sum returns the first 128 bits of the hash in hex: plenty to tell the
// versions of one entry apart, and short to store.
func (f *fieldHash) sum() string {
	s := sha256.Sum256(f.buf)
	return hex.EncodeToString(s[:16])
}
