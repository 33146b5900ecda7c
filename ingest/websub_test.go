package ingest

import (
	"fmt"
	"html"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
)

// The websub.rocks subscriber tests (https://websub.rocks/subscriber),
// reproduced against a hub and a publisher written here: the publisher
// serves /blog the way each numbered test does, the hub at /blog/hub
// verifies synchronously before answering, as websub.rocks' hub does, and
// refuses a topic other than the one the test expects.

// rocksCase describes one websub.rocks subscriber test.
type rocksCase struct {
	num  int
	name string
	// blog serves the topic; self and hub are the URLs it should
	// advertise, base the server's URL.
	blog func(w http.ResponseWriter, r *http.Request, base string)
	// wantTopic is the hub.topic the hub expects (path relative to base).
	wantTopic string
	// setup adjusts the hub before the subscription.
	setup func(h *testHub, base string)
	// check runs once the subscription is settled.
	check func(t *testing.T, r *rocks)
	// failing says the subscription must not become active.
	failing bool
}

// rocks is one websub.rocks test run.
type rocks struct {
	hub       *testHub
	n         *node
	base      string
	topic     string
	wrongHub  atomic.Int64 // requests to the hub advertised only in the body (104)
	hubRedirs atomic.Int64
}

func rocksHTML(w http.ResponseWriter, headLinks string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!DOCTYPE html><html><head><title>WebSub Rocks!</title>%s</head>
<body><div class="h-entry"><p class="e-content">A post</p></div></body></html>`, headLinks)
}

func rocksAtom(w http.ResponseWriter, hub, self string) {
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write(atomDoc("WebSub Rocks!", []entry{{ID: "urn:rocks:1", Title: "A post", Content: "post"}},
		[2]string{"hub", hub}, [2]string{"self", self}))
}

func rocksRSS(w http.ResponseWriter, hub, self string) {
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>
<title>WebSub Rocks!</title><link>%[2]s</link><description>test</description>
<atom:link rel="hub" href="%[1]s"/>
<atom:link rel="self" href="%[2]s"/>
<item><guid>urn:rocks:rss:1</guid><title>A post</title><description>post</description></item>
</channel></rss>`, html.EscapeString(hub), html.EscapeString(self))
}

func linkHeaders(w http.ResponseWriter, hub, self string) {
	w.Header().Add("Link", "<"+self+`>; rel="self"`)
	w.Header().Add("Link", "<"+hub+`>; rel="hub"`)
}

var rocksCases = []rocksCase{
	{num: 100, name: "HTTP header discovery", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub", base+"/blog")
			rocksHTML(w, "")
		}},
	{num: 101, name: "HTML tag discovery", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			rocksHTML(w, fmt.Sprintf(`<link rel="hub" href="%s/blog/hub">`+"\n"+`<link rel="self" href="%s/blog">`, base, base))
		}},
	{num: 102, name: "Atom feed discovery", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			rocksAtom(w, base+"/blog/hub", base+"/blog")
		}},
	{num: 103, name: "RSS feed discovery", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			rocksRSS(w, base+"/blog/hub", base+"/blog")
		}},
	{num: 104, name: "Discovery priority", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub", base+"/blog")
			rocksAtom(w, base+"/blog/hub?error=wrongtag", base+"/blog")
		},
		check: func(t *testing.T, r *rocks) {
			if n := r.wrongHub.Load(); n != 0 {
				t.Fatalf("the subscriber used the hub of the document body (%d requests) instead of the Link header's", n)
			}
		}},
	{num: 200, name: "Subscribing to a URL that reports a different rel=self", wantTopic: "/blog?self=other",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub", base+"/blog?self=other")
			rocksHTML(w, "")
		}},
	{num: 201, name: "Subscribing to a topic URL that sends an HTTP 302 temporary redirect", wantTopic: "/blog?redirect=complete",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			if r.URL.Query().Get("redirect") == "" {
				http.Redirect(w, r, base+"/blog?redirect=complete", http.StatusFound)
				return
			}
			linkHeaders(w, base+"/blog/hub", base+"/blog?redirect=complete")
			rocksHTML(w, "")
		},
		check: func(t *testing.T, r *rocks) {
			testkit.Eventually(t, settle, "the ingest state", func() bool {
				ist, _ := r.n.st.IngestState(ctxT(t), r.topic)
				return !ist.LastFetch.IsZero()
			})
			ist, _ := r.n.st.IngestState(ctxT(t), r.topic)
			if ist.FetchURL != "" {
				t.Fatalf("a temporary redirect changed the fetch URL to %q", ist.FetchURL)
			}
		}},
	{num: 202, name: "Subscribing to a topic URL that sends an HTTP 301 permanent redirect", wantTopic: "/blog?redirect=complete",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			if r.URL.Query().Get("redirect") == "" {
				http.Redirect(w, r, base+"/blog?redirect=complete", http.StatusMovedPermanently)
				return
			}
			linkHeaders(w, base+"/blog/hub", base+"/blog?redirect=complete")
			rocksHTML(w, "")
		},
		check: func(t *testing.T, r *rocks) {
			testkit.Eventually(t, settle, "the fetch URL to move to the 301's target", func() bool {
				ist, _ := r.n.st.IngestState(ctxT(t), r.topic)
				return ist.FetchURL == r.base+"/blog?redirect=complete"
			})
		}},
	{num: 203, name: "Subscribing to a hub that sends a 307 temporary redirect", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub?redirect=307", base+"/blog")
			rocksHTML(w, "")
		},
		check: func(t *testing.T, r *rocks) {
			ups, _ := r.n.st.TopicUpstreams(ctxT(t), r.topic)
			if r.hubRedirs.Load() == 0 || len(ups) != 1 || ups[0].Endpoint != "" {
				t.Fatalf("after a 307 from the hub: %d redirects, upstreams %+v (the endpoint must not change)", r.hubRedirs.Load(), ups)
			}
		}},
	{num: 204, name: "Subscribing to a hub that sends a 308 permanent redirect", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub?redirect=308", base+"/blog")
			rocksHTML(w, "")
		},
		check: func(t *testing.T, r *rocks) {
			testkit.Eventually(t, settle, "the endpoint to move", func() bool {
				ups, _ := r.n.st.TopicUpstreams(ctxT(t), r.topic)
				return len(ups) == 1 && ups[0].Endpoint != ""
			})
			ups, _ := r.n.st.TopicUpstreams(ctxT(t), r.topic)
			if r.hubRedirs.Load() == 0 || len(ups) != 1 || ups[0].Endpoint != r.base+"/blog/hub" {
				t.Fatalf("after a 308 from the hub: upstreams %+v, want the endpoint moved to %s/blog/hub", ups, r.base)
			}
		}},
	{num: 205, name: "Rejects a verification request with an invalid topic URL", wantTopic: "/blog", failing: true,
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub", base+"/blog")
			rocksHTML(w, "")
		},
		setup: func(h *testHub, base string) { h.verifyTopic = base + "/blog/other" },
		check: func(t *testing.T, r *rocks) {
			if codes := r.hub.verificationCodes("subscribe"); len(codes) != 1 || codes[0] != http.StatusNotFound {
				t.Fatalf("verification answers %v, want [404]", codes)
			}
			ups, _ := r.n.st.TopicUpstreams(ctxT(t), r.topic)
			if len(ups) != 1 || ups[0].State != store.UpstreamFailed {
				t.Fatalf("upstreams %+v, want one failed", ups)
			}
		}},
	{num: 300, name: "Returns HTTP 2xx when the notification payload is delivered", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub", base+"/blog")
			rocksHTML(w, "")
		},
		check: func(t *testing.T, r *rocks) {
			sub := r.hub.onlyActive(t)
			if code := r.hub.deliver(sub, rocksPost(3), "sha256"); code/100 != 2 {
				t.Fatalf("a signed delivery answered %d, want 2xx", code)
			}
			if items := readAll(t, r.n.st, r.topic); len(items) != 1 || items[0].ID != "urn:rocks:post:3" {
				t.Fatalf("delivered entry not stored: %d items", len(items))
			}
		}},
	{num: 301, name: "Rejects a distribution request with an invalid signature", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub", base+"/blog")
			rocksHTML(w, "")
		},
		check: func(t *testing.T, r *rocks) {
			sub := r.hub.onlyActive(t)
			if sub.secret == "" {
				t.Fatal("the subscription was made without a secret")
			}
			if code := r.hub.deliver(sub, rocksPost(4), "bad"); code/100 != 2 {
				t.Fatalf("an invalid signature answered %d; feedgate answers 2xx and discards", code)
			}
			if items := readAll(t, r.n.st, r.topic); len(items) != 0 {
				t.Fatalf("content with an invalid signature was stored: %d items", len(items))
			}
		}},
	{num: 302, name: "Rejects a distribution request with no signature when the subscription was made with a secret", wantTopic: "/blog",
		blog: func(w http.ResponseWriter, r *http.Request, base string) {
			linkHeaders(w, base+"/blog/hub", base+"/blog")
			rocksHTML(w, "")
		},
		check: func(t *testing.T, r *rocks) {
			sub := r.hub.onlyActive(t)
			if code := r.hub.deliver(sub, rocksPost(5), ""); code/100 == 2 {
				t.Fatalf("an unsigned delivery answered %d; it must be rejected", code)
			}
			if items := readAll(t, r.n.st, r.topic); len(items) != 0 {
				t.Fatalf("unsigned content was stored: %d items", len(items))
			}
		}},
}

func rocksPost(n int) []byte {
	return atomDoc("WebSub Rocks!", []entry{{ID: fmt.Sprintf("urn:rocks:post:%d", n), Title: "A new post", Content: "quote"}})
}

func TestWebSubRocksSubscriber(t *testing.T) {
	for _, c := range rocksCases {
		t.Run(fmt.Sprintf("%d %s", c.num, c.name), func(t *testing.T) {
			t.Parallel()
			r := &rocks{hub: newTestHub(t)}
			mux := http.NewServeMux()
			mux.HandleFunc("/blog", func(w http.ResponseWriter, req *http.Request) { c.blog(w, req, r.base) })
			mux.HandleFunc("/blog/hub", func(w http.ResponseWriter, req *http.Request) {
				q := req.URL.Query()
				switch {
				case q.Get("error") == "wrongtag":
					r.wrongHub.Add(1)
					http.Error(w, "wrong_discovery_priority", http.StatusBadRequest)
				case q.Get("redirect") == "307":
					r.hubRedirs.Add(1)
					http.Redirect(w, req, r.base+"/blog/hub", http.StatusTemporaryRedirect)
				case q.Get("redirect") == "308":
					r.hubRedirs.Add(1)
					http.Redirect(w, req, r.base+"/blog/hub", http.StatusPermanentRedirect)
				default:
					r.hub.ServeHTTP(w, req)
				}
			})
			srv := serve(t, mux)
			r.base = srv.URL
			r.hub.wantTopic = r.base + c.wantTopic
			if c.setup != nil {
				c.setup(r.hub, r.base)
			}
			r.n = startNode(t, openEmbedded(t), testOptions(), true)
			r.topic = r.base + "/blog"
			subscribe(t, r.n, r.topic)
			if c.failing {
				testkit.Eventually(t, settle, "the refused subscription", func() bool {
					ups, _ := r.n.st.TopicUpstreams(ctxT(t), r.topic)
					return len(ups) == 1 && ups[0].State == store.UpstreamFailed
				})
				if len(r.hub.active()) != 0 {
					t.Fatal("the subscription became active")
				}
			} else {
				sub := r.hub.onlyActive(t)
				if sub.topic != r.hub.wantTopic {
					t.Fatalf("subscribed with hub.topic %q, want %q", sub.topic, r.hub.wantTopic)
				}
				if !strings.HasPrefix(sub.callback, r.n.url+"/callback/") {
					t.Fatalf("callback %q", sub.callback)
				}
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}
