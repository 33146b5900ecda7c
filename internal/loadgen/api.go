package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Hub is a small net/http client of the hub endpoint for the few calls
// around a run (subscribe, fat pings, checks). The load itself goes through
// the lean clients.
type Hub struct {
	T    *Target
	Auth Auth
	hc   *http.Client
}

// NewHub returns a hub client with conns keep-alive connections.
func NewHub(t *Target, auth Auth, conns int) *Hub {
	d, _ := NewDialer(t.Addr, 1)
	tr := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: max(conns, 1),
		MaxConnsPerHost:     max(conns, 1),
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		TLSClientConfig:     t.TLS, // https targets; fat pings go over HTTP/1.1
	}
	return &Hub{T: t, Auth: auth, hc: &http.Client{
		Transport: tr,
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the gateway answered a redirect; loadgen does not follow redirects")
		},
	}}
}

// Close closes idle connections.
func (h *Hub) Close() { h.hc.CloseIdleConnections() }

// HTTPError is a non-2xx answer of the gateway.
type HTTPError struct {
	Op     string
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("%s: the gateway answered %d: %s", e.Op, e.Status, strings.TrimSpace(e.Body))
}

func (h *Hub) do(ctx context.Context, op, method string, q url.Values, ctype string, body []byte) (int, []byte, error) {
	u := h.T.Endpoint() + "?" + q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", h.Auth.Basic())
	req.Header.Set("User-Agent", "feedgate-loadgen")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w (is the gateway running at %s?)", op, err, h.T.Base)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: reading the answer: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, b, &HTTPError{Op: op, Status: resp.StatusCode, Body: string(b)}
	}
	return resp.StatusCode, b, nil
}

// Subscribe makes a retrieve-only subscription of the user to topic.
func (h *Hub) Subscribe(ctx context.Context, topic string) error {
	q := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}}
	_, _, err := h.do(ctx, "subscribing to "+topic, http.MethodPost, q, "", nil)
	return err
}

// PublishAnswer is the gateway's answer to a fat ping.
type PublishAnswer struct {
	Topic  string `json:"topic"`
	Stored int    `json:"stored"`
	Cursor string `json:"cursor"`
}

// FatPing posts a feed document to topic and returns the gateway's answer.
func (h *Hub) FatPing(ctx context.Context, topic string, f BodyFormat, body []byte) (PublishAnswer, error) {
	q := url.Values{"hub.mode": {"publish"}, "hub.topic": {topic}}
	_, b, err := h.do(ctx, "fat ping to "+topic, http.MethodPost, q, f.ContentType(), body)
	if err != nil {
		return PublishAnswer{}, err
	}
	var a PublishAnswer
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &a); err != nil {
			return a, fmt.Errorf("fat ping to %s: the answer is not the expected JSON {topic, stored, cursor}: %w", topic, err)
		}
	}
	return a, nil
}

// RetrieveAnswer is the part of a JSON retrieve answer loadgen reads.
type RetrieveAnswer struct {
	Status struct {
		Feed   string `json:"feed"`
		Cursor string `json:"cursor"`
	} `json:"status"`
	Items []struct {
		ID     string `json:"id"`
		Cursor string `json:"cursor"`
	} `json:"items"`
}

// Retrieve reads the newest count items of topic as JSON.
func (h *Hub) Retrieve(ctx context.Context, topic string, count int) (RetrieveAnswer, error) {
	q := url.Values{"hub.mode": {"retrieve"}, "hub.topic": {topic}, "format": {"json"}, "count": {fmt.Sprint(count)}}
	var a RetrieveAnswer
	_, b, err := h.do(ctx, "retrieving "+topic, http.MethodGet, q, "", nil)
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("retrieving %s: the answer is not retrieve JSON: %w", topic, err)
	}
	return a, nil
}

// Seed subscribes the user to topic and fat-pings n new items (in pings of
// at most 50 entries); it returns how many the gateway stored.
func (h *Hub) Seed(ctx context.Context, topic string, n int, f BodyFormat, size int) (int, error) {
	if err := h.Subscribe(ctx, topic); err != nil {
		return 0, err
	}
	m := NewMarker("seed-" + NewRunID())
	stored := 0
	for done := 0; done < n; {
		batch := min(50, n-done)
		entries := make([]Entry, batch)
		now := time.Now().UnixNano()
		for i := range entries {
			entries[i] = Entry{Seq: done + i, PubNanos: now}
		}
		a, err := h.FatPing(ctx, topic, f, FeedBody(nil, f, m, entries, size))
		if err != nil {
			return stored, err
		}
		stored += a.Stored
		done += batch
	}
	return stored, nil
}
