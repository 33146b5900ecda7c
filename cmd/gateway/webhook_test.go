package main_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// post is one delivery a callback server received.
type post struct {
	header http.Header
	body   []byte
}

// callbackServer echoes verification challenges and records deliveries.
func callbackServer(t *testing.T) (*httptest.Server, <-chan url.Values, <-chan post) {
	t.Helper()
	verifications := make(chan url.Values, 16)
	posts := make(chan post, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			q := r.URL.Query()
			verifications <- q
			io.WriteString(w, q.Get("hub.challenge"))
		case http.MethodPost:
			b, _ := io.ReadAll(r.Body)
			posts <- post{r.Header.Clone(), b}
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, verifications, posts
}

func form(t *testing.T, base, creds string, q url.Values) (int, string) {
	t.Helper()
	return call(t, "POST", base+"/", creds, "application/x-www-form-urlencoded", q.Encode())
}

// TestWebhooks subscribes a callback to a running gateway (sync and async
// verification), fat-pings a feed and checks the signed delivery, the list
// entry and that a verified unsubscribe stops deliveries.
func TestWebhooks(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	env := []string{"FEEDGATE_LISTEN=" + addr, "FEEDGATE_DATA_DIR=" + t.TempDir(), "FEEDGATE_ALLOW_PRIVATE=true", "FEEDGATE_PUBLIC_URL=http://" + addr}
	p := start(t, addr, env)
	creds := "hook:" + userAdd(t, env, "hook", "--rights", "all")
	topic := "https://walk.example/hooked"
	cb, verifications, posts := callbackServer(t)

	sub := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {cb.URL + "/sync?id=1"},
		"hub.secret": {"s3cret"}, "format": {"json"}, "hub.lease_seconds": {"3600"}}
	if code, body := form(t, p.url, creds, sub); code != 204 {
		t.Fatalf("sync subscribe: %d %s", code, body)
	}
	v := <-verifications
	if v.Get("hub.mode") != "subscribe" || v.Get("hub.topic") != topic || v.Get("id") != "1" || v.Get("hub.lease_seconds") != "3600" {
		t.Fatalf("verification: %v", v)
	}
	async := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {cb.URL + "/async"}, "hub.verify": {"async"}}
	if code, body := form(t, p.url, creds, async); code != 202 {
		t.Fatalf("async subscribe: %d %s", code, body)
	}
	select {
	case v := <-verifications:
		if v.Get("hub.mode") != "subscribe" {
			t.Fatalf("async verification: %v", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no async verification within 5 s")
	}

	if code, body := call(t, "POST", p.url+"/?hub.mode=publish&hub.topic="+url.QueryEscape(topic), creds, "application/rss+xml", feedDoc); code != 200 {
		t.Fatalf("fat ping: %d %s", code, body)
	}
	var signed, atom bool
	for !signed || !atom {
		select {
		case d := <-posts:
			links := strings.Join(d.header.Values("Link"), ", ")
			if !strings.Contains(links, `<http://`+addr+`/hub>; rel="hub"`) || !strings.Contains(links, "<"+topic+`>; rel="self"`) {
				t.Fatalf("Link headers: %q", links)
			}
			switch ct := d.header.Get("Content-Type"); {
			case strings.HasPrefix(ct, "application/json"):
				mac := hmac.New(sha256.New, []byte("s3cret"))
				mac.Write(d.body)
				if got, want := d.header.Get("X-Hub-Signature"), "sha256="+hex.EncodeToString(mac.Sum(nil)); got != want {
					t.Fatalf("signature %q, want %q", got, want)
				}
				var n struct {
					Items []struct{ ID string } `json:"items"`
				}
				if err := json.Unmarshal(d.body, &n); err != nil || len(n.Items) != 2 {
					t.Fatalf("JSON delivery: %v %s", err, d.body)
				}
				signed = true
			case strings.HasPrefix(ct, "application/atom+xml"):
				if d.header.Get("X-Hub-Signature") != "" || !strings.Contains(string(d.body), "<entry") {
					t.Fatalf("Atom delivery: %v %s", d.header, d.body)
				}
				atom = true
			default:
				t.Fatalf("Content-Type %q", ct)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("deliveries missing: json %v atom %v\n%s", signed, atom, p.logs.String())
		}
	}

	code, body := call(t, "GET", p.url+"/?hub.mode=list", creds, "", "")
	if code != 200 || !strings.Contains(body, cb.URL+"/sync?id=1") || strings.Contains(body, "s3cret") || !strings.Contains(body, `"delivery"`) {
		t.Fatalf("list: %d %s", code, body)
	}

	unsub := url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {topic}, "hub.callback": {cb.URL + "/async"}, "hub.verify": {"async"}}
	if code, body := form(t, p.url, creds, unsub); code != 202 {
		t.Fatalf("async unsubscribe: %d %s", code, body)
	}
	select {
	case v := <-verifications:
		if v.Get("hub.mode") != "unsubscribe" {
			t.Fatalf("unsubscribe verification: %v", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no unsubscribe verification within 5 s")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := call(t, "GET", p.url+"/?hub.mode=list", creds, "", "")
		if !strings.Contains(body, cb.URL+"/async") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unsubscribed callback still listed: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop(t)
}
