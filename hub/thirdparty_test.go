package hub

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mmcdole/gofeed"
)

// subscriberDir holds a third-party WebSub subscriber: the npm package
// pubsubhubbub, run by node (see subscriber.js). `npm ci` in that directory
// installs it; the test does so itself when node_modules is missing.
const subscriberDir = "testdata/websub-subscriber"

type nodeEvent struct {
	Event       string `json:"event"`
	Port        int    `json:"port"`
	Method      string `json:"method"`
	Path        string `json:"path"`
	Status      int    `json:"status"`
	Topic       string `json:"topic"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

// startNodeSubscriber runs subscriber.js with the secret and returns its
// port and its events.
func startNodeSubscriber(t *testing.T, secret string) (int, <-chan nodeEvent) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to run the third-party WebSub subscriber: %v", err)
	}
	if _, err := os.Stat(filepath.Join(subscriberDir, "node_modules", "pubsubhubbub")); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = subscriberDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s failed (run it by hand to install the test subscriber): %v\n%s", subscriberDir, err, out)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "subscriber.js")
	cmd.Dir = subscriberDir
	cmd.Env = append(os.Environ(), "WEBSUB_SECRET="+secret)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	events := make(chan nodeEvent, 1000)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var ev nodeEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("subscriber printed %q: %v", sc.Text(), err)
				continue
			}
			events <- ev
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	select {
	case ev := <-events:
		if ev.Event != "listening" {
			t.Fatalf("first event %+v, want listening", ev)
		}
		return ev.Port, events
	case <-time.After(30 * time.Second):
		t.Fatal("the node subscriber did not start")
		return 0, nil
	}
}

// TestThirdPartySubscriberVerifiesSignedDeliveries subscribes the npm
// package pubsubhubbub's subscriber, in JSON and in Atom, with a secret: it
// confirms our verification requests, and accepts (checks the
// X-Hub-Signature of) our deliveries. A subscription made with another
// secret shows that it does check: those deliveries it refuses.
func TestThirdPartySubscriberVerifiesSignedDeliveries(t *testing.T) {
	t.Parallel()
	const secret = "a shared secret, 26 bytes"
	port, events := startNodeSubscriber(t, secret)
	e := newEnv(t)
	p := e.principal("ann")
	ctx := ctxT(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, s := range []struct{ path, format, secret string }{
		{"/json", "json", secret},
		{"/atom", "atom", secret},
		{"/forged", "json", "not the subscriber's secret"},
	} {
		if err := e.hub.Subscribe(ctx, p, request(t, "hub.topic", topic, "hub.callback", base+s.path, "format", s.format, "hub.secret", s.secret)); err != nil {
			t.Fatalf("subscribing %s: %v", s.path, err)
		}
	}
	items := e.publish(topic, 2)

	feeds := map[string]nodeEvent{}
	responses := map[string]int{}
	confirmed := 0
	deadline := time.After(20 * time.Second)
	for len(feeds) < 2 || responses["POST /forged"] == 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the node subscriber stopped")
			}
			switch ev.Event {
			case "subscribe":
				if ev.Topic != topic {
					t.Errorf("subscriber confirmed topic %q", ev.Topic)
				}
				confirmed++
			case "response":
				responses[ev.Method+" "+ev.Path] = ev.Status
			case "feed":
				feeds[ev.Path] = ev
			}
		case <-deadline:
			t.Fatalf("timed out: feeds %v, responses %v", keys(feeds), responses)
		}
	}
	if confirmed != 3 {
		t.Errorf("the subscriber confirmed %d verifications, want 3", confirmed)
	}
	for _, path := range []string{"/json", "/atom"} {
		if responses["POST "+path] != 204 {
			t.Errorf("POST %s answered %d, want 204 (signature accepted)", path, responses["POST "+path])
		}
		if feeds[path].Topic != topic {
			t.Errorf("%s: the subscriber read topic %q from our Link headers, want %s", path, feeds[path].Topic, topic)
		}
	}
	if responses["POST /forged"] != 202 {
		t.Errorf("POST /forged answered %d; the subscriber must refuse (202, no feed event) a wrong signature", responses["POST /forged"])
	}
	if _, ok := feeds["/forged"]; ok {
		t.Error("the subscriber accepted a delivery signed with another secret")
	}

	js, _ := base64.StdEncoding.DecodeString(feeds["/json"].Body)
	var n struct {
		Status struct {
			Feed string `json:"feed"`
		} `json:"status"`
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(js, &n); err != nil || n.Status.Feed != topic || len(n.Items) != 2 || n.Items[0].ID != items[1].ID {
		t.Errorf("JSON delivery as the subscriber got it: %v\n%s", err, js)
	}
	if !strings.HasPrefix(feeds["/json"].ContentType, "application/json") {
		t.Errorf("JSON content type %q", feeds["/json"].ContentType)
	}
	atom, _ := base64.StdEncoding.DecodeString(feeds["/atom"].Body)
	f, err := gofeed.NewParser().ParseString(string(atom))
	if err != nil || len(f.Items) != 2 || f.Items[0].Title != items[1].Title {
		t.Errorf("Atom delivery as the subscriber got it: %v\n%s", err, atom)
	}
	if !strings.HasPrefix(feeds["/atom"].ContentType, "application/atom+xml") {
		t.Errorf("Atom content type %q", feeds["/atom"].ContentType)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
