// Command webhook-receiver is a WebSub subscriber to try feedgate's
// webhooks on one machine: it answers verifications of intent, checks the
// X-Hub-Signature of each delivery when given the subscription's secret,
// and prints what arrives.
//
//	go run ./examples/webhook-receiver -listen 127.0.0.1:9000 -secret a-long-random-secret
//
// Subscribe with hub.callback=http://127.0.0.1:9000/any/path (the gateway
// needs --allow-private to call an address on this machine).
package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"hash"
	"io"
	"log"
	"mime"
	"net/http"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on")
	secret := flag.String("secret", "", "the hub.secret of the subscription (empty: signatures are not checked)")
	flag.Parse()
	log.SetFlags(0)
	srv := &http.Server{Addr: *listen, Handler: receiver{secret: *secret}, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("webhook receiver listening on http://%s/", *listen)
	log.Fatal(srv.ListenAndServe())
}

type receiver struct{ secret string }

func (rc receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		// Verification of intent: echo the challenge to confirm.
		q := r.URL.Query()
		if q.Get("hub.challenge") == "" {
			http.Error(w, "a WebSub callback: GET with hub.challenge, or POST a delivery", http.StatusBadRequest)
			return
		}
		fmt.Printf("verified %s %s\n", q.Get("hub.mode"), q.Get("hub.topic"))
		io.WriteString(w, q.Get("hub.challenge"))
	case http.MethodPost:
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		topic := r.Header.Get("X-PubSubHubbub-Topic")
		if rc.secret != "" && !validSignature(rc.secret, r.Header.Get("X-Hub-Signature"), body) {
			// WebSub: answer 2xx, but ignore what was not signed with the secret.
			fmt.Printf("ignored a delivery for %s: wrong or missing X-Hub-Signature\n", topic)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		note := ""
		if n := r.Header.Get("X-Superfeedr-Retried"); n != "" {
			note += " (retry " + n + ")"
		}
		if r.Header.Get("Feedgate-Replay") == "true" {
			note += " (replay)"
		}
		fmt.Printf("delivery for %s%s: %s\n", topic, note, strings.Join(titles(r.Header.Get("Content-Type"), body), " | "))
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
	}
}

// validSignature checks X-Hub-Signature: method=hex HMAC of the body.
func validSignature(secret, header string, body []byte) bool {
	method, sig, ok := strings.Cut(header, "=")
	if !ok {
		return false
	}
	var h func() hash.Hash
	switch method {
	case "sha1":
		h = sha1.New
	case "sha256":
		h = sha256.New
	case "sha384":
		h = sha512.New384
	case "sha512":
		h = sha512.New
	default:
		return false
	}
	want, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(h, []byte(secret))
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), want)
}

// titles returns the titles of the items of a JSON or Atom delivery.
func titles(contentType string, body []byte) []string {
	var out []string
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/json" {
		var n struct {
			Items []struct{ Title string } `json:"items"`
		}
		if json.Unmarshal(body, &n) == nil {
			for _, it := range n.Items {
				out = append(out, it.Title)
			}
		}
		return out
	}
	var f struct {
		Entries []struct {
			Title string `xml:"title"`
		} `xml:"entry"`
	}
	if xml.Unmarshal(body, &f) == nil {
		for _, e := range f.Entries {
			out = append(out, e.Title)
		}
	}
	return out
}
