package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/feedgate/feedgate/store"
)

// TestWebSocketWithoutTopic opens /ws with no hub.topic and subscribes by
// message.
func TestWebSocketWithoutTopic(t *testing.T) {
	forEachStore(t, store.Options{}, func(t *testing.T, g *gateway) {
		g.subscribe(g.admin, topic)
		hdr := http.Header{"Authorization": {"Basic " + basic(g.admin)}}
		conn, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(g.url, "http")+"/ws", hdr)
		if err != nil {
			t.Fatalf("dial: %v %v", err, resp)
		}
		defer conn.Close()
		if err := conn.WriteJSON(map[string]string{"mode": "subscribe", "topic": topic}); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		var first map[string]any
		if err := conn.ReadJSON(&first); err != nil {
			t.Fatal(err)
		}
		if first["status"].(map[string]any)["feed"] != topic {
			t.Fatalf("first message: %v", first)
		}
		g.fatPing(g.admin, topic, "urn:ws", "Over the socket")
		for {
			var m map[string]any
			if err := conn.ReadJSON(&m); err != nil {
				t.Fatalf("waiting for the item: %v", err)
			}
			if ids := itemIDs(t, m); len(ids) == 1 && ids[0] == "urn:ws" {
				return
			}
		}
	})
}
