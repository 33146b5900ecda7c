package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/auth"
	hubpkg "github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/internal/teststore"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/poll"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// gateway is a full gateway node on a real listener.
type gateway struct {
	t     *testing.T
	url   string
	store store.Store
	admin string // login:token with every right
}

// forEachStore runs f against a fresh gateway on every backend, with the
// retrieve cache on as `gateway serve` has it.
func forEachStore(t *testing.T, opts store.Options, f func(t *testing.T, g *gateway)) {
	for _, b := range teststore.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			opts := opts
			opts.Changes = new(store.ChangeHook)
			f(t, newGateway(t, b.Open(t, opts), opts.Changes))
		})
	}
}

// newGateway serves st; with changes (the hook st was opened with) set,
// retrieves go through a retrieve cache.
func newGateway(t *testing.T, st store.Store, changes *store.ChangeHook) *gateway {
	t.Helper()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	hub, err := live.New(st, live.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	var cache *retrieve.Cache
	if changes != nil {
		cache = retrieve.NewCache(hub, st, retrieve.CacheOptions{Changes: changes, Registerer: reg})
		t.Cleanup(func() { cache.Close() })
	}
	ing, err := ingest.New(st, st.(store.IngestStore), ingest.Options{AllowPrivate: true, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	public := "http://" + srv.Listener.Addr().String()
	rs := retrieve.New(st, retrieve.Options{HubURL: public + "/", Limits: retrieve.Limits{MaxTimeout: 5 * time.Second}, Cache: cache})
	streams, err := stream.New(hub, rs, stream.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = server.New(server.Config{
		Role:           server.RoleAll,
		Store:          st,
		Auth:           auth.NewAuthenticator(st, time.Second),
		Retrieve:       rs,
		Stream:         streams,
		Poll:           poll.New(hub, rs),
		Live:           hub,
		Hub:            hubpkg.New(st, ing, hubpkg.Options{Live: hub}),
		Publish:        ing,
		Callback:       ing,
		AllowedOrigins: []string{"https://widget.example"},
		MaxBody:        1 << 20,
		Registry:       reg,
	})
	srv.Start()
	t.Cleanup(func() {
		hub.Shutdown(context.Background())
		srv.Close()
		streams.Close()
		hub.Close()
	})
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "root", Rights: store.AllRights})
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{t: t, url: srv.URL, store: st, admin: "root:" + token}
}

// user creates a user and returns login:token.
func (g *gateway) user(login, rights string, topics ...string) string {
	g.t.Helper()
	rs, err := auth.ParseRights(rights)
	if err != nil {
		g.t.Fatal(err)
	}
	token, err := auth.AddUser(context.Background(), g.store, auth.NewUser{Login: login, Rights: rs, Topics: topics})
	if err != nil {
		g.t.Fatal(err)
	}
	return login + ":" + token
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(a.body), &m); err != nil {
		t.Fatalf("answer is not JSON (%v): %s", err, a.body)
	}
	return m
}

// do sends a request; creds is login:token ("" for none).
func (g *gateway) do(method, query, creds string, body io.Reader, header ...string) answer {
	g.t.Helper()
	req, err := http.NewRequest(method, g.url+"/?"+query, body)
	if err != nil {
		g.t.Fatal(err)
	}
	if creds != "" {
		login, token, _ := strings.Cut(creds, ":")
		req.SetBasicAuth(login, token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func (g *gateway) get(query, creds string, header ...string) answer {
	return g.do(http.MethodGet, query, creds, nil, header...)
}

func (g *gateway) subscribe(creds, topic string) {
	g.t.Helper()
	a := g.do(http.MethodPost, "", creds, strings.NewReader(url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
	if a.code != http.StatusNoContent {
		g.t.Fatalf("subscribe %s: %d %s", topic, a.code, a.body)
	}
}

// fatPing publishes an Atom feed with the entries id=title pairs.
func (g *gateway) fatPing(creds, topic string, entries ...string) map[string]any {
	g.t.Helper()
	a := g.do(http.MethodPost, "hub.mode=publish&hub.topic="+url.QueryEscape(topic), creds, strings.NewReader(atomFeed(entries...)),
		"Content-Type", "application/atom+xml")
	if a.code != http.StatusOK {
		g.t.Fatalf("fat ping: %d %s", a.code, a.body)
	}
	return a.json(g.t)
}

// atomFeed renders entries given as id, title, id, title...; later
// entries are newer.
func atomFeed(entries ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Test feed</title><id>urn:test</id><updated>2026-11-22T10:00:00Z</updated>`)
	for i := len(entries) - 2; i >= 0; i -= 2 {
		ts := time.Date(2026, 11, 22, 10, 0, i, 0, time.UTC).Format(time.RFC3339)
		b.WriteString(`<entry><id>` + entries[i] + `</id><title>` + entries[i+1] + `</title><updated>` + ts + `</updated><link href="https://example.org/` + url.PathEscape(entries[i]) + `"/><summary>s</summary></entry>`)
	}
	b.WriteString(`</feed>`)
	return b.String()
}

func basic(creds string) string { return base64.StdEncoding.EncodeToString([]byte(creds)) }

func itemIDs(t *testing.T, m map[string]any) []string {
	t.Helper()
	items, _ := m["items"].([]any)
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.(map[string]any)["id"].(string))
	}
	return ids
}

func cursors(t *testing.T, m map[string]any) []string {
	t.Helper()
	items, _ := m["items"].([]any)
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, it.(map[string]any)["cursor"].(string))
	}
	return out
}
