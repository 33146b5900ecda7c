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
	state := `{"meta":{"title":"a:b"},"status":{"code":200}}`
	payload := "fg2 " + strconv.Itoa(len(topic)) + ":" + topic + strconv.Itoa(len(state)) + ":" + state +
		"7:" + strconv.Itoa(len(enc)) + ":" + enc + "8:" + strconv.Itoa(len(enc)) + ":" + enc
	gotTopic, gotState, items, err := redisstore.DecodeLive(payload)
	if err != nil || gotTopic != topic || gotState != state || len(items) != 2 || items[0].Cursor != 7 || items[1].Cursor != 8 {
		t.Fatalf("DecodeLive = %q, %q, %d items, %v", gotTopic, gotState, len(items), err)
	}
	// A topic without a stored state.
	if _, st, items, err := redisstore.DecodeLive("fg2 1:a0:1:" + strconv.Itoa(len(enc)) + ":" + enc); err != nil || st != "" || len(items) != 1 {
		t.Fatalf("DecodeLive without state = %q, %d items, %v", st, len(items), err)
	}
	for _, c := range []struct{ payload, topic string }{
		{"", ""},
		{"fg2 ", ""},
		{"fg2 5:abc", ""},
		{"fg2 3:abc", "abc"},
		{"fg2 3:abc0:7", "abc"},
		{"fg2 3:abc0:7:9:x", "abc"},
		{"fg2 3:abc0:x:1:\x01", "abc"},
		{"fg2 3:abc2:{}7:1:\x02", "abc"},
		{"fg1 3:abc7:1:\x01", "abc"},
		{"fg9 3:abc", "abc"},
		{"xx 3:abc", ""},
	} {
		topic, _, _, err := redisstore.DecodeLive(c.payload)
		if err == nil {
			t.Errorf("DecodeLive(%q) succeeded", c.payload)
		}
		if topic != c.topic {
			t.Errorf("DecodeLive(%q) named topic %q, want %q", c.payload, topic, c.topic)
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
	f.Add("fg2 3:abc2:{}1:1:\x01")
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _, _ = redisstore.DecodeLive(s)
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
