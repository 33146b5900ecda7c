package main_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/internal/testkit"
)

// pubsubConns returns, for every Redis client connection holding
// subscriptions, how many channels (plain or sharded) it is subscribed to.
func pubsubConns(t *testing.T, srv *redistest.Server) []int {
	t.Helper()
	v, err := srv.Do("CLIENT", "LIST")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, line := range strings.Split(fmt.Sprint(v), "\n") {
		subs := 0
		for _, f := range strings.Fields(line) {
			k, val, _ := strings.Cut(f, "=")
			if k == "sub" || k == "psub" || k == "ssub" {
				n, _ := strconv.Atoi(val)
				subs += n
			}
		}
		if subs > 0 {
			out = append(out, subs)
		}
	}
	return out
}

// TestOneLiveSubscriptionPerNode: streams, held long-polls, the retrieve
// cache and webhook scheduling on the same 100 topics make the node hold
// exactly one pub/sub connection to Redis, subscribed once per topic; a
// topic whose last consumer leaves is unsubscribed.
func TestOneLiveSubscriptionPerNode(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(hooks.Close)
	feeds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/rss+xml")
		_, _ = io.WriteString(w, feedDoc)
	}))
	t.Cleanup(feeds.Close)

	addr := freeAddr(t)
	env := []string{"FEEDGATE_REDIS_URL=" + srv.URL(), "FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_MAX_UNAUTH_CONNS=0", "FEEDGATE_LISTEN=" + addr}
	g := start(t, addr, env)
	creds := "ann:" + userAdd(t, env, "ann", "--rights", "all")
	login, token, _ := strings.Cut(creds, ":")

	const n = 100
	topics := make([]string, n+1)
	for i := range topics {
		topics[i] = fmt.Sprintf("%s/feed/%d", feeds.URL, i)
	}
	// Every one of the 100 has a webhook subscription; the last topic only
	// a retrieve-only one (and, below, one stream).
	for i, topic := range topics {
		q := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}
		if i < n {
			q.Set("hub.callback", hooks.URL+"/hook")
		}
		if code, body := call(t, "POST", g.url+"/", creds, "application/x-www-form-urlencoded", q.Encode()); code != http.StatusNoContent {
			t.Fatalf("subscribe %s: %d %s", topic, code, body)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	get := func(q url.Values) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, "GET", g.url+"/?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.SetBasicAuth(login, token)
		return http.DefaultClient.Do(req)
	}
	// One NDJSON stream over the 100 topics.
	q := url.Values{"hub.mode": {"retrieve"}, "wait": {"stream"}, "format": {"json"}, "hub.topic": topics[:n]}
	resp, err := get(q)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream over %d topics: %v %v", n, err, resp)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("the stream's first line: %v", err)
	}
	// A held long-poll on each (far ahead of any cursor: held until
	// cancelled).
	var polls sync.WaitGroup
	for _, topic := range topics[:n] {
		polls.Go(func() {
			q := url.Values{"hub.mode": {"retrieve"}, "wait": {"poll"}, "format": {"json"}, "hub.topic": {topic}, "timeout": {"60"}}
			if resp, err := get(q); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	defer polls.Wait()
	// The retrieve cache holds a topic from its second read.
	for _, topic := range topics[:n] {
		for range 2 {
			q := url.Values{"hub.mode": {"retrieve"}, "format": {"json"}, "hub.topic": {topic}}
			if code, body := call(t, "GET", g.url+"/?"+q.Encode(), creds, "", ""); code != http.StatusOK {
				t.Fatalf("retrieve %s: %d %s", topic, code, body)
			}
		}
	}
	testkit.Eventually(t, 20*time.Second, "one pub/sub connection subscribed to the 100 topics", func() bool {
		c := pubsubConns(t, srv)
		return len(c) == 1 && c[0] == n
	})

	// A stream is the only consumer of the last topic: it is subscribed
	// while the stream lives, and unsubscribed (after the linger) once it
	// ends.
	lctx, lcancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(lctx, "GET", g.url+"/?"+url.Values{"hub.mode": {"retrieve"}, "wait": {"stream"}, "format": {"json"}, "hub.topic": {topics[n]}}.Encode(), nil)
	req.SetBasicAuth(login, token)
	last, err := http.DefaultClient.Do(req)
	if err != nil || last.StatusCode != http.StatusOK {
		t.Fatalf("stream of the last topic: %v %v", err, last)
	}
	testkit.Eventually(t, 20*time.Second, "the last topic subscribed on the same connection", func() bool {
		c := pubsubConns(t, srv)
		return len(c) == 1 && c[0] == n+1
	})
	lcancel()
	last.Body.Close()
	testkit.Eventually(t, 30*time.Second, "the last topic unsubscribed once its stream ended", func() bool {
		c := pubsubConns(t, srv)
		return len(c) == 1 && c[0] == n
	})
	cancel()
}
