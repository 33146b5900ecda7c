package poll_test

// A held long-poll ends with the credential it was opened with: through a
// real listener on both stores, and on the fake clock for how soon.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/internal/testkit"
	"github.com/feedgate/feedgate/store"
)

// TestHeldPollEndsWithItsCredential: a held poll of a user whose token is
// rotated, or who is removed, is answered 401 (JSONP: the error, called
// back); the new token polls.
func TestHeldPollEndsWithItsCredential(t *testing.T) {
	forEachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		n := newNode(t, st, config{})
		after := n.publish(topicA, 1)[0].String()
		js := n.start(pollQuery(topicA, "format", "json", "timeout", hold, "after", after))
		jp := n.start(pollQuery(topicA, "callback", "cb", "timeout", hold, "after", after))
		testkit.Eventually(t, waitFor, "two held polls", func() bool { return n.held() == 2 })
		token, err := auth.RotateToken(ctx, st, auth.Rotation{Login: "ann"})
		if err != nil {
			t.Fatal(err)
		}
		if a := n.wait(js, "token rotated"); a.status != http.StatusUnauthorized || decode(t, a.body, "").Error == nil {
			t.Errorf("held poll, token rotated: %d %s, want 401 with the error", a.status, a.body)
		}
		if a := n.wait(jp, "token rotated, JSONP"); a.status != http.StatusOK || decode(t, a.body, "cb").Error == nil {
			t.Errorf("held JSONP poll, token rotated: %d %s, want the error called back", a.status, a.body)
		}

		fresh := basicAuth("ann:" + token)
		q := pollQuery(topicA, "format", "json", "timeout", hold, "after", after)
		p := n.start(q, "Authorization", fresh)
		testkit.Eventually(t, waitFor, "a held poll with the new token", func() bool { return n.held() == 1 })
		if err := st.DeleteUser(ctx, "ann"); err != nil {
			t.Fatal(err)
		}
		if a := n.wait(p, "user removed"); a.status != http.StatusUnauthorized || decode(t, a.body, "").Error == nil {
			t.Errorf("held poll, user removed: %d %s, want 401 with the error", a.status, a.body)
		}
	})
}

// TestRevocationDelay removes the user of a held poll, or rotates its
// token, at offsets spanning the credential cache and two revalidation
// periods (a step that falls on neither's ticks): the poll is answered 401
// within auth.RevocationDelay (the API's 5 s).
func TestRevocationDelay(t *testing.T) {
	const step = 173 * time.Millisecond
	every := auth.NewAuthenticator(nil, authCache).RevalidateEvery()
	for _, change := range []string{"remove", "rotate"} {
		for offset := time.Duration(0); offset <= authCache+2*every; offset += step {
			t.Run(fmt.Sprintf("%s/at+%v", change, offset), func(t *testing.T) {
				inBubble(t, config{}, func(t *testing.T, n *node) {
					ctx := context.Background()
					after := n.publish(topicA, 1)[0].String()
					p := n.start(pollQuery(topicA, "format", "json", "timeout", "120", "after", after))
					time.Sleep(offset)
					changed := time.Now()
					var err error
					if change == "remove" {
						err = n.st.DeleteUser(ctx, "ann")
					} else {
						_, err = auth.RotateToken(ctx, n.st, auth.Rotation{Login: "ann"})
					}
					if err != nil {
						t.Fatal(err)
					}
					time.Sleep(auth.RevocationDelay)
					a, ok := answered(p)
					if !ok {
						t.Fatalf("the held poll outlived its credential's %s by %v", change, auth.RevocationDelay)
					}
					if d := a.at.Sub(changed); a.status != http.StatusUnauthorized || d < 0 || d > auth.RevocationDelay {
						t.Fatalf("answered %d %s %v after the %s, want 401 within %v", a.status, a.body, d, change, auth.RevocationDelay)
					}
				})
			})
		}
	}
}

// TestJWTExpiry: a poll held with a signed token is answered 401 at the
// token's expiry — at the first revalidation at or after exp, not before.
func TestJWTExpiry(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef-poll-tests")
	inBubble(t, config{auth: auth.Options{JWT: auth.JWTOptions{Secret: secret}}}, func(t *testing.T, n *node) {
		exp := time.Now().Add(time.Minute)
		token, err := auth.Mint(secret, auth.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "ann", ExpiresAt: jwt.NewNumericDate(exp)},
			Rights:           []string{"retrieve"},
		})
		if err != nil {
			t.Fatal(err)
		}
		after := n.publish(topicA, 1)[0].String()
		p := n.start(pollQuery(topicA, "format", "json", "timeout", "120", "after", after), "Authorization", "Bearer "+token)
		time.Sleep(time.Until(exp) - time.Nanosecond)
		if a, ok := answered(p); ok {
			t.Fatalf("answered before its token expired: %d %s", a.status, a.body)
		}
		time.Sleep(n.authn.RevalidateEvery())
		a, ok := answered(p)
		if !ok {
			t.Fatalf("still held %v after its token expired", n.authn.RevalidateEvery())
		}
		if r := decode(t, a.body, ""); a.status != http.StatusUnauthorized || r.Error == nil || !strings.Contains(r.Error.Message, "expired") {
			t.Fatalf("answered %d %s, want 401 saying the token expired", a.status, a.body)
		}
	})
}
