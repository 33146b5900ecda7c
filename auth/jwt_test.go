package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/fetch"
	"github.com/feedgate/feedgate/store"
)

const testSecret = "0123456789abcdef0123456789abcdef-test"

func claims(sub string, ttl time.Duration) auth.Claims {
	now := time.Now()
	return auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		IssuedAt:  jwt.NewNumericDate(now),
	}, Rights: []string{"retrieve"}}
}

func mintHS(t *testing.T, c auth.Claims, sub string, ttl time.Duration) string {
	t.Helper()
	if c.Subject == "" {
		base := claims(sub, ttl)
		base.Rights, base.Topics = c.Rights, c.Topics
		if base.Rights == nil {
			base.Rights = []string{"retrieve"}
		}
		c = base
	}
	s, err := auth.Mint([]byte(testSecret), c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testKeys struct {
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	otherEC *ecdsa.PrivateKey
}

func newTestKeys(t *testing.T) testKeys {
	t.Helper()
	var k testKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.otherEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	return k
}

// jwksJSON renders the public halves of keys as a JWK set, key i with id
// kids[i].
func jwksJSON(t *testing.T, kids []string, keys ...crypto.PublicKey) []byte {
	t.Helper()
	set := jwk.NewSet()
	for i, k := range keys {
		key, err := jwk.Import(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := key.Set(jwk.KeyIDKey, kids[i]); err != nil {
			t.Fatal(err)
		}
		if err := set.AddKey(key); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWT(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := newTestKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksJSON(t, []string{"rsa", "ec", "ed"}, &keys.rsa.PublicKey, &keys.ec.PublicKey, keys.ed.Public()), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := auth.LoadJWKS(ctx, auth.JWKSOptions{Source: path})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(openStore(t), auth.Options{JWT: auth.JWTOptions{
		Secret: []byte(testSecret), Keys: set, Issuer: "https://issuer.example", Audience: "feedgate",
	}})
	if err != nil {
		t.Fatal(err)
	}
	good := func() auth.Claims {
		c := claims("app", time.Hour)
		c.Issuer, c.Audience = "https://issuer.example", jwt.ClaimStrings{"feedgate"}
		c.Topics = []string{"http://a.example/*"}
		return c
	}
	with := func(fn func(*auth.Claims)) auth.Claims {
		c := good()
		fn(&c)
		return c
	}
	noneToken, err := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token string
		kind  error // nil: accepted
	}{
		{"HS256", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", good()), nil},
		{"RS256 by kid", sign(t, jwt.SigningMethodRS256, keys.rsa, "rsa", good()), nil},
		{"ES256 by kid", sign(t, jwt.SigningMethodES256, keys.ec, "ec", good()), nil},
		{"EdDSA by kid", sign(t, jwt.SigningMethodEdDSA, keys.ed, "ed", good()), nil},
		{"ES256 without kid, one EC key", sign(t, jwt.SigningMethodES256, keys.ec, "", good()), nil},
		{"alg none", noneToken, auth.ErrWrongCredentials},
		{"HS256 wrong secret", sign(t, jwt.SigningMethodHS256, []byte(testSecret+"x"), "", good()), auth.ErrWrongCredentials},
		{"ES256 wrong key", sign(t, jwt.SigningMethodES256, keys.otherEC, "ec", good()), auth.ErrWrongCredentials},
		{"ES256 unknown kid", sign(t, jwt.SigningMethodES256, keys.ec, "nope", good()), auth.ErrWrongCredentials},
		{"RS256 signed, EC kid", sign(t, jwt.SigningMethodRS256, keys.rsa, "ec", good()), auth.ErrWrongCredentials},
		{"HS384 not accepted", sign(t, jwt.SigningMethodHS384, []byte(testSecret), "", good()), auth.ErrWrongCredentials},
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
		})), auth.ErrExpired},
		{"not valid yet", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) {
			c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Minute))
		})), auth.ErrWrongCredentials},
		{"nbf within leeway", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) {
			c.NotBefore = jwt.NewNumericDate(time.Now().Add(2 * time.Second))
		})), nil},
		{"no exp", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) { c.ExpiresAt = nil })), auth.ErrWrongCredentials},
		{"no sub", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) { c.Subject = "" })), auth.ErrWrongCredentials},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) { c.Issuer = "https://evil.example" })), auth.ErrWrongCredentials},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) { c.Audience = jwt.ClaimStrings{"other"} })), auth.ErrWrongCredentials},
		{"unknown right", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) { c.Rights = []string{"root"} })), auth.ErrWrongCredentials},
		{"bad topic scope", sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", with(func(c *auth.Claims) { c.Topics = []string{"ftp://x"} })), auth.ErrWrongCredentials},
		{"tampered payload", tamper(sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", good())), auth.ErrWrongCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Verify(ctx, tc.token)
			if tc.kind != nil {
				e, ok := api.AsError(err)
				if !errors.Is(err, tc.kind) || !ok || e.Code != http.StatusUnauthorized {
					t.Fatalf("Verify = %v, want a 401 of kind %v", err, tc.kind)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Login != "app" || !p.JWT || p.Expires.IsZero() || p.TokenID == "" {
				t.Fatalf("principal %+v", p)
			}
			// Rights and scope of the claims: 403 beyond them.
			if err := auth.Require(p, store.RightRetrieve); err != nil {
				t.Fatalf("retrieve right: %v", err)
			}
			if e, ok := api.AsError(auth.Require(p, store.RightPublish)); !ok || e.Code != http.StatusForbidden {
				t.Fatalf("publish without the right: want 403, got %v", e)
			}
			if err := auth.RequireTopic(p, "http://a.example/feed"); err != nil {
				t.Fatalf("topic in scope: %v", err)
			}
			if e, ok := api.AsError(auth.RequireTopic(p, "http://b.example/feed")); !ok || e.Code != http.StatusForbidden {
				t.Fatalf("topic out of scope: want 403, got %v", e)
			}
			if err := a.Revalidate(ctx, p); err != nil {
				t.Fatalf("Revalidate of a valid JWT: %v", err)
			}
		})
	}
}

// tamper flips the payload's sub so the signature no longer matches.
func tamper(tok string) string {
	parts := []byte(tok)
	for i := range parts {
		if parts[i] == '.' {
			if parts[i+1] == 'A' {
				parts[i+1] = 'B'
			} else {
				parts[i+1] = 'A'
			}
			break
		}
	}
	return string(parts)
}

func TestJWTExpiresWhileOpen(t *testing.T) {
	t.Parallel()
	a, err := auth.New(openStore(t), auth.Options{JWT: auth.JWTOptions{Secret: []byte(testSecret)}})
	if err != nil {
		t.Fatal(err)
	}
	c := claims("app", 0)
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(2 * time.Second))
	p, err := a.Verify(context.Background(), mintHS(t, c, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Revalidate(context.Background(), p); err != nil {
		t.Fatalf("Revalidate before exp: %v", err)
	}
	// Revalidate compares against the clock: ask as if exp had passed.
	p.Expires = time.Now().Add(-time.Millisecond)
	if err := a.Revalidate(context.Background(), p); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("Revalidate after exp = %v, want ErrExpired", err)
	}
}

func TestJWKSFromURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := newTestKeys(t)
	var body atomic.Value
	body.Store(jwksJSON(t, []string{"one"}, &keys.ec.PublicKey))
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Write(body.Load().([]byte))
	}))
	t.Cleanup(srv.Close)

	// The guarded fetcher refuses loopback unless allowed.
	if _, err := auth.LoadJWKS(ctx, auth.JWKSOptions{Source: srv.URL, Fetcher: fetch.New(fetch.Options{})}); err == nil {
		t.Fatal("a JWKS on a loopback address was fetched without --allow-private")
	}
	set, err := auth.LoadJWKS(ctx, auth.JWKSOptions{Source: srv.URL, Fetcher: fetch.New(fetch.Options{AllowPrivate: true}), MinReload: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(openStore(t), auth.Options{JWT: auth.JWTOptions{Keys: set}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(ctx, sign(t, jwt.SigningMethodES256, keys.ec, "one", claims("app", time.Hour))); err != nil {
		t.Fatalf("key one: %v", err)
	}
	// The signer rotates to a new key: a token naming the new kid makes
	// the gateway reload the set.
	body.Store(jwksJSON(t, []string{"two"}, &keys.otherEC.PublicKey))
	before := hits.Load()
	if _, err := a.Verify(ctx, sign(t, jwt.SigningMethodES256, keys.otherEC, "two", claims("app", time.Hour))); err != nil {
		t.Fatalf("key two after rotation: %v", err)
	}
	if hits.Load() == before {
		t.Fatal("an unknown kid did not reload the key set")
	}
	if _, err := a.Verify(ctx, sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", claims("app", time.Hour))); !errors.Is(err, auth.ErrWrongCredentials) {
		t.Fatalf("HS256 with only a JWKS configured: %v", err)
	}
}

func TestJWKSRefresh(t *testing.T) {
	t.Parallel()
	keys := newTestKeys(t)
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksJSON(t, []string{"a"}, &keys.ec.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := auth.LoadJWKS(context.Background(), auth.JWKSOptions{Source: path, Refresh: 20 * time.Millisecond, MinReload: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); set.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Without a kid there is no reload on demand: only Run picks up the
	// new key.
	if err := os.WriteFile(path, jwksJSON(t, []string{"a"}, &keys.otherEC.PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		k, err := set.Key(context.Background(), "", "ES256")
		if err == nil && k.(*ecdsa.PublicKey).Equal(&keys.otherEC.PublicKey) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the key set was not refreshed within 5s")
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-done:
			t.Fatal("Run returned early")
		}
	}
}

func TestLoadJWKSErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, src := range []string{
		filepath.Join(dir, "missing.json"),
		write("garbage.json", "not json"),
		write("empty.json", `{"keys":[]}`),
		write("hmac.json", `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0"}]}`),
	} {
		if _, err := auth.LoadJWKS(context.Background(), auth.JWKSOptions{Source: src}); err == nil {
			t.Errorf("LoadJWKS(%s) succeeded", filepath.Base(src))
		}
	}
}
