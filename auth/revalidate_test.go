package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

// twoNodes returns two authenticators, each on its own connection to one
// Redis: two gateway nodes.
func twoNodes(t *testing.T, ttl time.Duration) (store.Store, *auth.Authenticator, *auth.Authenticator) {
	t.Helper()
	srv := redistest.Start(t)
	var nodes [2]*auth.Authenticator
	var first store.Store
	for i := range nodes {
		st, err := redisstore.New(context.Background(), srv.URL(), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if first == nil {
			first = st
		}
		if nodes[i], err = auth.New(st, auth.Options{CacheTTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	return first, nodes[0], nodes[1]
}

// waitRevalidate calls Revalidate every RevalidateEvery, as a live
// connection does, until it reports kind; it fails unless that happens
// within auth.RevocationDelay of since.
func waitRevalidate(t *testing.T, a *auth.Authenticator, p *auth.Principal, kind error, since time.Time) time.Duration {
	t.Helper()
	tick := time.NewTicker(a.RevalidateEvery())
	defer tick.Stop()
	for {
		err := a.Revalidate(context.Background(), p)
		if errors.Is(err, kind) {
			var ce *auth.CredentialError
			if !errors.As(err, &ce) || ce.API.Code != 401 {
				t.Fatalf("Revalidate error %v is not a CredentialError with a 401", err)
			}
			return time.Since(since)
		}
		if err != nil {
			t.Fatalf("Revalidate: %v, want nil or %v", err, kind)
		}
		if time.Since(since) > auth.RevocationDelay {
			t.Fatalf("Revalidate still accepts the credential %s after the change (want %v within %s)", time.Since(since), kind, auth.RevocationDelay)
		}
		<-tick.C
	}
}

func TestRevalidateRemovalOnAnotherNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, nodeA, nodeB := twoNodes(t, 2*time.Second)
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "carol", Rights: store.AllRights})
	if err != nil {
		t.Fatal(err)
	}
	// Node B authenticated carol's stream (and so cached her record).
	p, err := nodeB.Check(ctx, "carol", token)
	if err != nil {
		t.Fatal(err)
	}
	if err := nodeB.Revalidate(ctx, p); err != nil {
		t.Fatalf("Revalidate of a valid token: %v", err)
	}
	// Node A removes her.
	if err := st.DeleteUser(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	nodeA.Forget("carol")
	removed := time.Now()
	if _, err := nodeA.Check(ctx, "carol", token); !errors.Is(err, auth.ErrWrongCredentials) {
		t.Fatalf("node A still accepts the removed user: %v", err)
	}
	took := waitRevalidate(t, nodeB, p, auth.ErrRevoked, removed)
	t.Logf("node B saw the removal after %s", took)
	if _, err := nodeB.Check(ctx, "carol", token); err == nil {
		t.Fatal("node B accepts a removed user's token for new requests")
	}
}

func TestRevalidateRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, nodeA, nodeB := twoNodes(t, 2*time.Second)
	old, err := auth.AddUser(ctx, st, auth.NewUser{Login: "dave", Rights: []store.Right{store.RightRetrieve}, Topics: []string{"http://a.example/*"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := nodeB.Check(ctx, "dave", old)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := auth.RotateToken(ctx, st, auth.Rotation{Login: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	nodeA.Forget("dave")
	rotated := time.Now()
	if fresh == old {
		t.Fatal("rotation returned the old token")
	}
	if _, err := nodeA.Check(ctx, "dave", old); err == nil {
		t.Fatal("node A accepts the old token after rotation")
	}
	np, err := nodeA.Check(ctx, "dave", fresh)
	if err != nil {
		t.Fatalf("the new token: %v", err)
	}
	if !np.Can(store.RightRetrieve) || np.Can(store.RightPublish) || !np.Allows("http://a.example/x") || np.Allows("http://b.example/") {
		t.Fatal("the new token did not keep the rights and scopes of the old one")
	}
	waitRevalidate(t, nodeB, p, auth.ErrRevoked, rotated)
	if _, err := auth.RotateToken(ctx, st, auth.Rotation{Login: "nobody"}); !errors.Is(err, auth.ErrNoUser) {
		t.Fatalf("rotating an unknown user: %v", err)
	}
}

func TestRevalidateExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _, nodeB := twoNodes(t, 2*time.Second)
	expires := time.Now().Add(1500 * time.Millisecond)
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "erin", Rights: store.AllRights, Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	p, err := nodeB.Check(ctx, "erin", token)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Expires.Equal(expires.UTC()) {
		t.Fatalf("principal expiry %v, want %v", p.Expires, expires)
	}
	waitRevalidate(t, nodeB, p, auth.ErrExpired, expires)
	if _, err := nodeB.Check(ctx, "erin", token); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("an expired token for a new request: %v", err)
	}
}

func TestRevalidateStoreDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	st, err := redisstore.New(ctx, srv.URL(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := auth.New(st, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	token, err := auth.AddUser(ctx, st, auth.NewUser{Login: "frank", Rights: store.AllRights})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Check(ctx, "frank", token)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = a.Revalidate(tctx, p)
	if err == nil || errors.Is(err, auth.ErrRevoked) || errors.Is(err, auth.ErrExpired) {
		t.Fatalf("Revalidate with the store down = %v: it must say nothing either way", err)
	}
}
