package loadgen

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mmcdole/gofeed"
)

// fakeHub is a small in-memory server speaking the wire formats of
// API.md §5 (retrieve JSON, NDJSON stream, SSE, WebSocket, long-poll, fat
// ping) for one topic, so the load generator's clients can be tested
// without the gateway. Fat pings are parsed with gofeed, the gateway's own
// parser, so the generated documents are checked too.
type fakeHub struct {
	t     *testing.T
	login string
	token string

	mu        sync.Mutex
	items     []fakeItem // oldest first
	listeners map[chan []byte]bool
	changed   chan struct{} // closed and replaced on every append

	// Faults.
	dupEvery   int // send every n-th notification twice
	dropAfter  int // close a stream after this many notifications (0: never)
	closePolls bool
	maxStreams int // refuse streams beyond this many with 429 (0: no limit)
	streams    int // stream connections opened
}

type fakeItem struct {
	ID     string `json:"id"`
	Cursor string `json:"cursor"`
	Title  string `json:"title"`
}

func newFakeHub(t *testing.T) (*fakeHub, *httptest.Server) {
	h := &fakeHub{t: t, login: "bench", token: "secret-token-123", listeners: map[chan []byte]bool{}, changed: make(chan struct{})}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *fakeHub) authOK(r *http.Request) bool {
	l, p, ok := r.BasicAuth()
	if !ok {
		if a := r.URL.Query().Get("authorization"); a != "" {
			b, err := base64.StdEncoding.DecodeString(a)
			if err == nil {
				l, p, ok = strings.Cut(string(b), ":")
			}
		}
	}
	return ok && l == h.login && p == h.token
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authOK(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="feedgate"`)
		http.Error(w, "no or wrong credentials", 401)
		return
	}
	q := r.URL.Query()
	switch q.Get("hub.mode") {
	case "subscribe":
		w.WriteHeader(204)
	case "publish":
		h.publish(w, r)
	case "retrieve":
		switch {
		case websocket.IsWebSocketUpgrade(r):
			h.ws(w, r)
		case q.Get("wait") == "stream":
			h.stream(w, r, false)
		case strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
			h.stream(w, r, true)
		case q.Get("wait") == "poll":
			h.poll(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write(h.answer(h.newest(10)))
		}
	default:
		http.Error(w, "bad hub.mode", 422)
	}
}

func (h *fakeHub) publish(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	doc, err := gofeed.NewParser().ParseString(string(body))
	if err != nil {
		http.Error(w, "unparseable: "+err.Error(), 422)
		return
	}
	h.mu.Lock()
	var added []fakeItem
	for _, e := range doc.Items {
		it := fakeItem{ID: e.GUID, Title: e.Title, Cursor: fmt.Sprintf("%016d", len(h.items)+1)}
		h.items = append(h.items, it)
		added = append([]fakeItem{it}, added...) // newest first
	}
	note := h.notification(added)
	for ch := range h.listeners {
		select {
		case ch <- note:
		default: // a slow listener misses it, as a real gateway would drop it
		}
	}
	close(h.changed)
	h.changed = make(chan struct{})
	cur := h.items[len(h.items)-1].Cursor
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"topic": r.URL.Query().Get("hub.topic"), "stored": len(added), "cursor": cur})
}

func (h *fakeHub) newest(n int) []fakeItem {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []fakeItem
	for i := len(h.items) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, h.items[i])
	}
	return out
}

// after returns up to n items following cursor, newest first, and the
// channel closed at the next append.
func (h *fakeHub) after(cursor string, n int) ([]fakeItem, chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, _ := strconv.Atoi(cursor)
	var out []fakeItem
	for i := c; i < len(h.items) && len(out) < n; i++ {
		out = append([]fakeItem{h.items[i]}, out...)
	}
	return out, h.changed
}

func (h *fakeHub) answer(items []fakeItem) []byte {
	cur := ""
	if len(items) > 0 {
		cur = items[0].Cursor
	}
	if items == nil {
		items = []fakeItem{}
	}
	b, _ := json.Marshal(map[string]any{"status": map[string]any{"code": 200, "feed": "http://t/feed", "cursor": cur}, "title": "t", "items": items})
	return b
}

func (h *fakeHub) notification(items []fakeItem) []byte {
	b, _ := json.Marshal(map[string]any{"status": map[string]any{"feed": "http://t/feed"}, "items": items})
	return b
}

func (h *fakeHub) listen() chan []byte {
	ch, _ := h.admit()
	return ch
}

// admit registers a listener unless maxStreams are already open; the check and
// the count happen under one lock so concurrent clients cannot slip past it.
func (h *fakeHub) admit() (chan []byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.maxStreams > 0 && h.streams >= h.maxStreams {
		return nil, false
	}
	ch := make(chan []byte, 1024)
	h.listeners[ch] = true
	h.streams++
	return ch, true
}

func (h *fakeHub) unlisten(ch chan []byte) {
	h.mu.Lock()
	delete(h.listeners, ch)
	h.mu.Unlock()
}

func (h *fakeHub) faults() (dup, drop int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dupEvery, h.dropAfter
}

func (h *fakeHub) stream(w http.ResponseWriter, r *http.Request, sse bool) {
	ch, ok := h.admit()
	if !ok {
		http.Error(w, "too many connections for this user", http.StatusTooManyRequests)
		return
	}
	defer h.unlisten(ch)
	fl := w.(http.Flusher)
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprintf(w, "retry: 1000\n\n: hello\nevent: notification\ndata: %s\nid: 1\n\n", h.answer(h.newest(1)))
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write(h.answer(h.newest(1)))
		io.WriteString(w, "\n\n") // line 1, then a keep-alive
	}
	fl.Flush()
	dup, drop := h.faults()
	sent := 0
	write := func(note []byte) {
		if sse {
			fmt.Fprintf(w, "event: notification\ndata: %s\nid: x\n\n", note)
		} else {
			w.Write(note)
			io.WriteString(w, "\n")
		}
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case note := <-ch:
			sent++
			write(note)
			if dup > 0 && sent%dup == 0 {
				write(note)
			}
			fl.Flush()
			if drop > 0 && sent >= drop {
				return
			}
		}
	}
}

var upgrader = websocket.Upgrader{}

func (h *fakeHub) ws(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	ch := h.listen()
	defer h.unlisten(ch)
	done := make(chan struct{})
	go func() { // read (and discard) until the client goes
		defer close(done)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()
	if conn.WriteMessage(websocket.TextMessage, h.answer(h.newest(1))) != nil {
		return
	}
	for {
		select {
		case <-done:
			return
		case note := <-ch:
			if conn.WriteMessage(websocket.TextMessage, note) != nil {
				return
			}
		}
	}
}

func (h *fakeHub) poll(w http.ResponseWriter, r *http.Request) {
	after := r.URL.Query().Get("after")
	timeout, _ := strconv.Atoi(r.URL.Query().Get("timeout"))
	var items []fakeItem
	if after == "" {
		items = h.newest(50)
	} else {
		var changed chan struct{}
		items, changed = h.after(after, 50)
		if len(items) == 0 {
			t := time.NewTimer(time.Duration(timeout) * time.Second)
			defer t.Stop()
			select {
			case <-changed:
				items, _ = h.after(after, 50)
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
	}
	h.mu.Lock()
	closeConn := h.closePolls
	h.mu.Unlock()
	if closeConn {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(h.answer(items))
}

// seedItems stores n items directly.
func (h *fakeHub) seedItems(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for range n {
		h.items = append(h.items, fakeItem{ID: "seed", Cursor: fmt.Sprintf("%016d", len(h.items)+1)})
	}
}
