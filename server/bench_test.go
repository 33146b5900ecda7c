package server_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
)

// discard is a ResponseWriter that keeps nothing: the benchmark measures
// the gateway's work, not a recorder's.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

// BenchmarkRetrieveCached is a plain retrieve of the newest 10 items of a
// hot topic, answered from the retrieve cache, through the whole handler
// (routing, middleware, authentication, parameters, rendering): the
// gateway's own work per request, without the network.
func BenchmarkRetrieveCached(b *testing.B) {
	changes := new(store.ChangeHook)
	st, err := embedded.Open(b.TempDir(), store.Options{Changes: changes})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	h, err := live.New(st, live.Options{Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	cache := retrieve.NewCache(h, st, retrieve.CacheOptions{Changes: changes, Registerer: reg})
	defer cache.Close()
	rs := retrieve.New(st, retrieve.Options{HubURL: "http://gw.example/", Cache: cache, AccessTTL: 2 * time.Second, Changes: changes})
	handler := server.New(server.Config{
		Role: server.RoleAll, Store: st, Auth: auth.NewAuthenticator(st, 2*time.Second),
		Retrieve: rs, Live: h, Registry: reg,
	})
	// A subscriber, as users are (an admin's reads skip the check of its
	// subscription).
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "bench", Rights: []store.Right{store.RightSubscribe, store.RightRetrieve}})
	if err != nil {
		b.Fatal(err)
	}
	const topic = "http://127.0.0.1:9/loadgen/feed"
	if _, err := st.PutSubscription(ctx, store.Subscription{Login: "bench", Topic: topic, CreatedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	items := make([]feed.Item, 50)
	for i := range items {
		items[i] = feed.Item{ID: "urn:bench:" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Title: "loadgen item", Content: "lorem ipsum dolor sit amet consectetur adipiscing elit lorem ipsum dolor sit amet consectetur adipiscing elit lorem ipsum dolor sit amet consectetur adipiscing elit lorem ipsum dolor sit amet consecte"}
		items[i].Hash = items[i].ID
	}
	if _, err := st.Append(ctx, topic, items); err != nil {
		b.Fatal(err)
	}
	for !h.Healthy() {
		time.Sleep(time.Millisecond) // the hub's link comes up once; benchmark setup
	}
	q := url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "format": {"json"}, "count": {"10"}}
	req, _ := http.NewRequest(http.MethodGet, "/?"+q.Encode(), nil)
	req.SetBasicAuth("bench", token)
	w := &discard{h: http.Header{}}
	for range 3 { // the cache holds a topic from its second read
		handler.ServeHTTP(w, req)
	}
	if w.code != http.StatusOK {
		b.Fatalf("the retrieve answered %d, want 200", w.code)
	}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		handler.ServeHTTP(w, req)
	}
}
