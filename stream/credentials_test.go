package stream_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/stream"
)

// Live connections and credentials, end to end through real listeners on
// both stores, wired as cmd/gateway wires them (the hub revalidates
// through the authenticator). How soon they end is checked on the fake
// clock (clock_test.go); here, that they end, how, and what the client
// does next.

// addUser adds a user with the retrieve right following topicA and
// returns its credentials ("login:token").
func (n *node) addUser(login string) string {
	n.t.Helper()
	token, err := auth.AddUser(context.Background(), n.st, auth.NewUser{Login: login, Rights: []store.Right{store.RightRetrieve}})
	if err != nil {
		n.t.Fatal(err)
	}
	n.follow(login, topicA)
	return login + ":" + token
}

// endedRevoked checks that every connection of ls ended as revoked
// connections do.
func endedRevoked(t *testing.T, ls liveSet, what string, since time.Time) {
	t.Helper()
	ls.nd.end(what)
	evs := ls.sse.ended(what)
	if len(evs) == 0 || evs[len(evs)-1].typ != "revoked" || !strings.Contains(evs[len(evs)-1].data, `"code":401`) {
		t.Errorf("%s: the event stream's last events %+v, want a revoked event carrying a 401", what, evs)
	}
	if ce := ls.ws.closed(what); ce.Code != websocket.ClosePolicyViolation {
		t.Errorf("%s: WebSocket closed with %v, want close code 1008", what, ce)
	}
	t.Logf("%s: NDJSON ended after %v, SSE after %v, WebSocket after %v", what,
		ls.nd.endedAt.Sub(since).Round(time.Millisecond), ls.sse.endedAt.Sub(since).Round(time.Millisecond), ls.ws.endedAt.Sub(since).Round(time.Millisecond))
}

// TestRemovedUserLosesLiveConnections removes a user with a stream, an
// event stream and a WebSocket open: each ends (SSE with a last revoked
// event, the socket with close code 1008), another user's stream goes on,
// and the removed user's credentials are refused.
func TestRemovedUserLosesLiveConnections(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		bob := n.openNDJSONWith(query([]string{topicA}, "wait", "stream", "format", "json"), "Authorization", basic(n.addUser("bob")))
		bob.next(waitFor)
		ann := n.openAll("")

		removed := time.Now()
		if err := st.DeleteUser(context.Background(), "ann"); err != nil {
			t.Fatal(err)
		}
		endedRevoked(t, ann, "user removed", removed)

		cs := n.publish(topicA, 1)
		bob.expectNext("another user's stream", cs...)
		if resp, body := n.get(query([]string{topicA}, "wait", "stream", "format", "json")); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a stream of the removed user: %s %s, want 401", resp.Status, body)
		}
	})
}

// TestRotatedTokenEndsLiveConnections rotates a user's token with its
// connections open: they end as revoked, the old token is refused, and
// the new one streams.
func TestRotatedTokenEndsLiveConnections(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := newNode(t, st, stream.Options{})
		old := n.openAll("")

		rotated := time.Now()
		token, err := auth.RotateToken(context.Background(), st, auth.Rotation{Login: "ann"})
		if err != nil {
			t.Fatal(err)
		}
		endedRevoked(t, old, "token rotated", rotated)

		if resp, body := n.get(query([]string{topicA}, "wait", "stream", "format", "json")); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a stream with the old token: %s %s, want 401", resp.Status, body)
		}
		fresh := n.openNDJSONWith(query([]string{topicA}, "wait", "stream", "format", "json"), "Authorization", basic("ann:"+token))
		fresh.next(waitFor)
		cs := n.publish(topicA, 1)
		fresh.expectNext("the new token's stream", cs...)
	})
}

const jwtSecret = "0123456789abcdef0123456789abcdef-stream-tests"

// mint signs a token for ann with the retrieve right, valid for ttl.
func mint(t *testing.T, ttl time.Duration) (string, time.Time) {
	t.Helper()
	exp := jwt.NewNumericDate(time.Now().Add(ttl)) // whole seconds
	token, err := auth.Mint([]byte(jwtSecret), auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "ann", ExpiresAt: exp},
		Rights:           []string{"retrieve"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return token, exp.Time
}

// TestJWTStreamExpiresAndResumes opens an event stream and a WebSocket
// with a short-lived signed token while items are published: at its
// expiry (not before) the event stream ends with an expired event and the
// socket with close code 4001; the client resumes with a fresh token and
// the id of the last event it got, and receives exactly what it missed.
func TestJWTStreamExpiresAndResumes(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		n := startNode(t, st, nodeConfig{auth: auth.Options{JWT: auth.JWTOptions{Secret: []byte(jwtSecret)}}})
		n.publish(topicA, 2)
		// Long enough for both connections to open on a busy machine
		// (the end must still come at expiry if not: the check below).
		token, exp := mint(t, 3*time.Second)
		// EventSource passes it in access_token=, a WebSocket client in
		// its Authorization header.
		sse := n.openSSE(query([]string{topicA}, "access_token", token), "Authorization", "")
		first, id := sse.next(waitFor)
		if !equalCursors(first.cursors(), 1, 2) {
			t.Fatalf("first event %v, want 1,2", first.cursors())
		}
		ws, _, err := n.dialWS("/ws", query([]string{topicA}), http.Header{"Authorization": {"Bearer " + token}})
		if err != nil {
			t.Fatalf("WebSocket with a JWT: %v", err)
		}
		// Published while the token is valid: received before the end,
		// or after the resumption, once either way.
		n.publish(topicA, 1)

		last := feed.Cursor(2)
		evs := sse.ended("token expiry")
		if len(evs) == 0 || evs[len(evs)-1].typ != "expired" || !strings.Contains(evs[len(evs)-1].data, `"code":401`) {
			t.Fatalf("the event stream's last events %+v, want an expired event carrying a 401", evs)
		}
		for _, ev := range evs[:len(evs)-1] {
			n := decode(t, ev.data)
			if len(n.Items) == 0 || n.Items[len(n.Items)-1].Cursor != last+1 || ev.id != n.Items[0].Cursor.String() {
				t.Fatalf("event %+v does not follow cursor %d", ev, last)
			}
			last, id = n.Items[0].Cursor, ev.id
		}
		if sse.endedAt.Before(exp) {
			t.Errorf("the event stream ended at %v, before its token expired at %v", sse.endedAt, exp)
		}
		if ce := ws.closed("token expiry"); ce.Code != 4001 {
			t.Errorf("WebSocket closed with %v, want close code 4001", ce)
		}
		if ws.endedAt.Before(exp) {
			t.Errorf("the WebSocket ended at %v, before its token expired at %v", ws.endedAt, exp)
		}

		missed := n.publish(topicA, 2)
		want := append(cursorsAfter(last, missed[0]-1), missed...)
		fresh, _ := mint(t, time.Hour)
		r := n.openSSE(query([]string{topicA}, "access_token", fresh), "Authorization", "", "Last-Event-ID", id)
		got, _ := r.collect(len(want))
		if !equalCursors(got[topicA], want...) {
			t.Fatalf("resumed after cursor %d: %v, want exactly %v", last, got[topicA], want)
		}
		next := n.publish(topicA, 1)
		if got, _ := r.collect(1); !equalCursors(got[topicA], next...) {
			t.Fatalf("resumed, then live: %v, want exactly %v", got[topicA], next)
		}
	})
}

// cursorsAfter lists the cursors from after+1 to upTo.
func cursorsAfter(after, upTo feed.Cursor) []feed.Cursor {
	var out []feed.Cursor
	for c := after + 1; c <= upTo; c++ {
		out = append(out, c)
	}
	return out
}

// TestRevocationDelay removes a user, or rotates its token, at offsets
// spanning the credential cache and two revalidation periods (a step that
// falls on neither's ticks, so that every phase is tried): every live
// connection opened with the credential ends within auth.RevocationDelay
// (the API's 5 s), told why; a connection opened with the new token lives
// on.
func TestRevocationDelay(t *testing.T) {
	const step = 173 * time.Millisecond
	every := auth.NewAuthenticator(nil, authCache).RevalidateEvery()
	for _, change := range []string{"remove", "rotate"} {
		for offset := time.Duration(0); offset <= authCache+2*every; offset += step {
			t.Run(fmt.Sprintf("%s/at+%v", change, offset), func(t *testing.T) {
				inBubble(t, nodeConfig{}, func(t *testing.T, n *node) {
					testRevocationDelay(t, n, change, offset)
				})
			})
		}
	}
}

func testRevocationDelay(t *testing.T, n *node, change string, offset time.Duration) {
	ctx := context.Background()
	ls := n.openAll("")
	time.Sleep(offset)
	changed := time.Now()
	var fresh string
	switch change {
	case "remove":
		if err := n.st.DeleteUser(ctx, "ann"); err != nil {
			t.Fatal(err)
		}
	case "rotate":
		token, err := auth.RotateToken(ctx, n.st, auth.Rotation{Login: "ann"})
		if err != nil {
			t.Fatal(err)
		}
		fresh = basic("ann:" + token)
	}
	time.Sleep(auth.RevocationDelay)
	if open := ls.open(); len(open) > 0 {
		t.Fatalf("%v still open %v after the credential's %s", open, auth.RevocationDelay, change)
	}
	for what, at := range map[string]time.Time{"NDJSON": ls.nd.endedAt, "SSE": ls.sse.endedAt, "WebSocket": ls.ws.endedAt} {
		if d := at.Sub(changed); d < 0 || d > auth.RevocationDelay {
			t.Errorf("the %s connection ended %v after the %s", what, d, change)
		}
	}
	evs := ls.sse.ended(change)
	if len(evs) == 0 || evs[len(evs)-1].typ != "revoked" || !strings.Contains(evs[len(evs)-1].data, `"code":401`) {
		t.Errorf("the event stream's last events %+v, want a revoked event carrying a 401", evs)
	}
	if ce := ls.ws.closed(change); ce.Code != websocket.ClosePolicyViolation {
		t.Errorf("WebSocket closed with %v, want close code 1008", ce)
	}
	if fresh == "" {
		return
	}
	// The new token's connections are not revoked.
	next := n.openNDJSONWith(query([]string{topicA}, "wait", "stream", "format", "json"), "Authorization", fresh)
	next.next(waitFor)
	time.Sleep(2 * auth.RevocationDelay)
	if isClosed(next.done) {
		t.Fatal("a stream opened with the rotated-in token ended")
	}
	cs := n.publish(topicA, 1)
	next.expectNext("the rotated-in token's stream", cs...)
}

// TestJWTExpiry: streams opened with a signed token end at its expiry —
// at the first revalidation at or after exp, not before — an event
// stream with a last "expired" event, a WebSocket with close code 4001.
func TestJWTExpiry(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef-stream-tests")
	cfg := nodeConfig{auth: auth.Options{JWT: auth.JWTOptions{Secret: secret}}}
	inBubble(t, cfg, func(t *testing.T, n *node) {
		exp := time.Now().Add(10 * time.Minute)
		token, err := auth.Mint(secret, auth.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "ann", ExpiresAt: jwt.NewNumericDate(exp)},
			Rights:           []string{"retrieve"},
		})
		if err != nil {
			t.Fatal(err)
		}
		// EventSource carries it in access_token=, a WebSocket client in
		// its Authorization header.
		sse := n.openSSE(query([]string{topicA}, "access_token", token), "Authorization", "")
		sse.next(waitFor)
		ws, _, err := n.dialWS("/ws", query([]string{topicA}), map[string][]string{"Authorization": {"Bearer " + token}})
		if err != nil {
			t.Fatalf("WebSocket with a JWT: %v", err)
		}
		ws.notification()

		time.Sleep(time.Until(exp) - time.Nanosecond)
		if isClosed(sse.done) || isClosed(ws.done) {
			t.Fatal("a connection ended before its token expired")
		}
		time.Sleep(n.authn.RevalidateEvery())
		if !isClosed(sse.done) || !isClosed(ws.done) {
			t.Fatalf("connections still open %v after their token expired", n.authn.RevalidateEvery())
		}
		evs := sse.ended("expiry")
		if len(evs) == 0 || evs[len(evs)-1].typ != "expired" || !strings.Contains(evs[len(evs)-1].data, `"code":401`) {
			t.Errorf("the event stream's last events %+v, want an expired event carrying a 401", evs)
		}
		if ce := ws.closed("expiry"); ce.Code != 4001 {
			t.Errorf("WebSocket closed with %v, want close code 4001", ce)
		}
	})
}
