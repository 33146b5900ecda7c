package server_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

// TestFirstNotificationNamesTheFeed opens a stream on a topic that has
// nothing yet and fat-pings its first document: the notification carries
// the feed's title, stored before the items it announces.
func TestFirstNotificationNamesTheFeed(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		for i, topic := range []string{"https://first.example/a", "https://first.example/b", "https://first.example/c"} {
			g.subscribe(g.admin, topic)
			req, err := http.NewRequest(http.MethodGet, g.url+"/?"+url.Values{
				"hub.mode": {"retrieve"}, "hub.topic": {topic}, "wait": {"stream"}, "format": {"json"},
			}.Encode(), nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Basic "+basic(g.admin))
			client := &http.Client{Timeout: 10 * time.Second}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(resp.Body)
			if !lines.Scan() {
				t.Fatalf("no first answer: %v", lines.Err())
			}
			g.fatPing(g.admin, topic, "urn:first", "First entry")
			var n struct {
				Status struct {
					Title string `json:"title"`
				} `json:"status"`
				Items []json.RawMessage `json:"items"`
			}
			for lines.Scan() {
				if len(lines.Bytes()) == 0 {
					continue
				}
				if err := json.Unmarshal(lines.Bytes(), &n); err != nil {
					t.Fatal(err)
				}
				break
			}
			resp.Body.Close()
			if len(n.Items) != 1 || n.Status.Title != "Test feed" {
				t.Fatalf("topic %d: first notification has %d items and title %q, want 1 and %q", i, len(n.Items), n.Status.Title, "Test feed")
			}
		}
	})
}
