package redisstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/feedgate/feedgate/feed"
)

// Items are stored in a compact binary form rather than JSON: a retrieve
// decodes every item it returns, and this form decodes by slicing the string
// Redis returned, with almost no allocation (see BenchmarkDecodeItem).
//
// Format version 1, every string as a uvarint length then its bytes:
//
//	0x01
//	ID Title Content Summary PermalinkURL Language Hash
//	varint Published, varint Updated
//	0x00 | 0x01 Actor.DisplayName Actor.ID Actor.PermalinkURL
//	uvarint n, n × Categories
//	0x00 | 0x01 (Alternate, Self, Hub: uvarint n, n × (Href Type Title))
//
// The cursor is not stored: it is the stream entry's id.
const codecVersion = 1

// maxItemSize bounds one encoded item; Redis itself caps arguments at 512 MB.
const maxItemSize = 64 << 20

var errCorrupt = errors.New("stored item is corrupt")

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendLinks(dst []byte, ls []feed.Link) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ls)))
	for _, l := range ls {
		dst = appendString(dst, l.Href)
		dst = appendString(dst, l.Type)
		dst = appendString(dst, l.Title)
	}
	return dst
}

// encodeItem appends the stored form of it (without its cursor) to dst.
func encodeItem(dst []byte, it *feed.Item) []byte {
	dst = append(dst, codecVersion)
	for _, s := range [...]string{it.ID, it.Title, it.Content, it.Summary, it.PermalinkURL, it.Language, it.Hash} {
		dst = appendString(dst, s)
	}
	dst = binary.AppendVarint(dst, it.Published)
	dst = binary.AppendVarint(dst, it.Updated)
	if it.Actor == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		dst = appendString(dst, it.Actor.DisplayName)
		dst = appendString(dst, it.Actor.ID)
		dst = appendString(dst, it.Actor.PermalinkURL)
	}
	dst = binary.AppendUvarint(dst, uint64(len(it.Categories)))
	for _, c := range it.Categories {
		dst = appendString(dst, c)
	}
	if it.StandardLinks == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		dst = appendLinks(dst, it.StandardLinks.Alternate)
		dst = appendLinks(dst, it.StandardLinks.Self)
		dst = appendLinks(dst, it.StandardLinks.Hub)
	}
	return dst
}

// decoder reads the stored form. Strings it returns share the input's memory.
type decoder struct {
	s   string
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.s = ""
}

func (d *decoder) uvarint() uint64 {
	var v uint64
	for i := 0; i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		b := d.s[i]
		if i == binary.MaxVarintLen64-1 && b > 1 {
			break
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			d.s = d.s[i+1:]
			return v
		}
	}
	d.fail()
	return 0
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) byte() byte {
	if len(d.s) == 0 {
		d.fail()
		return 0
	}
	b := d.s[0]
	d.s = d.s[1:]
	return b
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.s)) {
		d.fail()
		return ""
	}
	v := d.s[:n]
	d.s = d.s[n:]
	return v
}

// count reads a list length, refusing lengths the remaining input cannot
// hold (each element takes at least min bytes) so corrupt data cannot make
// us allocate.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.s)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) links() []feed.Link {
	n := d.count(3)
	if n == 0 {
		return nil
	}
	out := make([]feed.Link, n)
	for i := range out {
		out[i] = feed.Link{Href: d.string(), Type: d.string(), Title: d.string()}
	}
	return out
}

// decodeItem reads an item stored by encodeItem; the cursor is set by the
// caller.
func decodeItem(s string) (feed.Item, error) {
	var it feed.Item
	d := decoder{s: s}
	if v := d.byte(); d.err == nil && v != codecVersion {
		return it, fmt.Errorf("stored item has format version %d, this feedgate reads version %d: run the newer feedgate that wrote it", v, codecVersion)
	}
	it.ID = d.string()
	it.Title = d.string()
	it.Content = d.string()
	it.Summary = d.string()
	it.PermalinkURL = d.string()
	it.Language = d.string()
	it.Hash = d.string()
	it.Published = d.varint()
	it.Updated = d.varint()
	if d.byte() == 1 {
		it.Actor = &feed.Actor{DisplayName: d.string(), ID: d.string(), PermalinkURL: d.string()}
	}
	if n := d.count(1); n > 0 {
		it.Categories = make([]string, n)
		for i := range it.Categories {
			it.Categories[i] = d.string()
		}
	}
	if d.byte() == 1 {
		it.StandardLinks = &feed.Links{Alternate: d.links(), Self: d.links(), Hub: d.links()}
	}
	if d.err != nil {
		return feed.Item{}, d.err
	}
	if len(d.s) != 0 {
		return feed.Item{}, errCorrupt
	}
	return it, nil
}

// The live payload, built by append.lua and read by listeners:
//
//	"fg2 " <len(topic)> ":" <topic> <len(state)> ":" <state> then, per
//	stored item, <cursor> ":" <len(item)> ":" <item>
//
// with lengths and cursors in decimal. The state is the topic's stored
// state (JSON, as UpdateTopic wrote it; empty when it has none) read in the
// same script as the append.
const livePrefix = "fg2 "

// liveHeader is the start of the payloads announcing appends to topic.
func liveHeader(topic string) string {
	return livePrefix + strconv.Itoa(len(topic)) + ":" + topic
}

// liveMessage is a decoded live payload.
type liveMessage struct {
	topic string
	state string // the stored JSON, "" when the topic has no state
	items []feed.Item
}

// decodeLive reads a live payload. On an error the topic is still returned
// when the payload's header names one, so that only that topic needs
// re-reading.
func decodeLive(payload string) (liveMessage, error) {
	var m liveMessage
	s, ok := strings.CutPrefix(payload, livePrefix)
	if !ok {
		// Another version of the payload (a node of another feedgate
		// version): its topic, if it can be read, is still worth naming.
		m.topic = foreignTopic(payload)
		return m, errors.New("live message has an unknown format")
	}
	topic, s, err := netstring(s)
	if err != nil {
		return m, err
	}
	m.topic = topic
	m.state, s, err = netstring(s)
	if err != nil {
		return m, err
	}
	for len(s) > 0 {
		i := strings.IndexByte(s, ':')
		if i < 0 || i > 20 {
			return m, errCorrupt
		}
		c, err := strconv.ParseUint(s[:i], 10, 64)
		if err != nil {
			return m, errCorrupt
		}
		var data string
		data, s, err = netstring(s[i+1:])
		if err != nil {
			return m, err
		}
		it, err := decodeItem(data)
		if err != nil {
			return m, err
		}
		it.Cursor = feed.Cursor(c)
		m.items = append(m.items, it)
	}
	return m, nil
}

// foreignTopic reads the topic of a payload of another version: every
// version starts "fg<version> " <len(topic)> ":" <topic>.
func foreignTopic(payload string) string {
	if !strings.HasPrefix(payload, "fg") {
		return ""
	}
	sp := strings.IndexByte(payload, ' ')
	if sp < 0 || sp > 8 {
		return ""
	}
	topic, _, err := netstring(payload[sp+1:])
	if err != nil {
		return ""
	}
	return topic
}

// netstring reads "<len>:<bytes>" and returns the bytes and the rest.
func netstring(s string) (string, string, error) {
	i := strings.IndexByte(s, ':')
	if i < 0 || i > 20 {
		return "", "", errCorrupt
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil || n > uint64(len(s)-i-1) {
		return "", "", errCorrupt
	}
	s = s[i+1:]
	return s[:n], s[n:], nil
}
