package redisstore_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/feedgate/feedgate/feed"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

func fullItem() feed.Item {
	return feed.Item{
		ID: "urn:uuid:1", Title: "Title ✓", Published: -5, Updated: 1700000000,
		Content: strings.Repeat("<p>content \x00 \r\n</p>", 50), Summary: "sum", PermalinkURL: "https://example.com/1",
		StandardLinks: &feed.Links{
			Alternate: []feed.Link{{Href: "https://example.com/1", Type: "text/html", Title: "alt"}},
			Self:      []feed.Link{},
			Hub:       []feed.Link{{Href: "https://hub.example.com/"}, {Href: "https://hub2.example.com/"}},
		},
		Actor:      &feed.Actor{DisplayName: "Ann", ID: "ann", PermalinkURL: "https://example.com/ann"},
		Categories: []string{"a", "", "c"},
		Language:   "fr",
		Hash:       "h\x00",
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, it := range []feed.Item{{}, {ID: "x"}, fullItem(), {StandardLinks: &feed.Links{}}} {
		enc := redisstore.EncodeItem(nil, &it)
		got, err := redisstore.DecodeItem(string(enc))
		if err != nil {
			t.Fatalf("decode %+v: %v", it, err)
		}
		want, _ := json.Marshal(it)
		have, _ := json.Marshal(got)
		if string(want) != string(have) || got.Hash != it.Hash {
			t.Errorf("round trip:\n got %s hash %q\nwant %s hash %q", have, got.Hash, want, it.Hash)
		}
		// Every truncation is an error, never a panic.
		for n := 0; n < len(enc); n++ {
			if _, err := redisstore.DecodeItem(string(enc[:n])); err == nil {
				t.Fatalf("decoding %d of %d bytes succeeded", n, len(enc))
			}
		}
	}
	if _, err := redisstore.DecodeItem("\x02"); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("unknown version: %v", err)
	}
}

func TestDecodeLive(t *testing.T) {
	it := fullItem()
	enc := string(redisstore.EncodeItem(nil, &it))
	topic := "https://example.com/a:b.xml"
	payload := "fg1 " + strconv.Itoa(len(topic)) + ":" + topic +
		"7:" + strconv.Itoa(len(enc)) + ":" + enc + "8:" + strconv.Itoa(len(enc)) + ":" + enc
	gotTopic, items, err := redisstore.DecodeLive(payload)
	if err != nil || gotTopic != topic || len(items) != 2 || items[0].Cursor != 7 || items[1].Cursor != 8 {
		t.Fatalf("DecodeLive = %q, %d items, %v", gotTopic, len(items), err)
	}
	for _, bad := range []string{"", "fg1 ", "fg1 5:abc", "fg1 3:abc7", "fg1 3:abc7:9:x", "fg2 3:abc", "fg1 3:abcx:1:\x01"} {
		if _, _, err := redisstore.DecodeLive(bad); err == nil {
			t.Errorf("DecodeLive(%q) succeeded", bad)
		}
	}
}

func FuzzDecodeItem(f *testing.F) {
	it := fullItem()
	f.Add(string(redisstore.EncodeItem(nil, &it)))
	f.Add("\x01")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := redisstore.DecodeItem(s)
		if err != nil {
			return
		}
		// Whatever decodes survives a round trip unchanged.
		again, err := redisstore.DecodeItem(string(redisstore.EncodeItem(nil, &got)))
		if err != nil {
			t.Fatalf("re-encoded item does not decode: %v", err)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(again)
		if string(a) != string(b) || got.Hash != again.Hash {
			t.Errorf("round trip changed the item:\n%s\n%s", a, b)
		}
	})
}

func FuzzDecodeLive(f *testing.F) {
	f.Add("fg1 3:abc1:1:\x01")
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = redisstore.DecodeLive(s)
	})
}

func BenchmarkDecodeItem(b *testing.B) {
	it := fullItem()
	enc := string(redisstore.EncodeItem(nil, &it))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := redisstore.DecodeItem(enc); err != nil {
			b.Fatal(err)
		}
	}
}
