package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/feedgate/feedgate/fetch"
)

// JWKSOptions configure a JSON Web Key Set.
type JWKSOptions struct {
	// Source is a file path or an http(s) URL.
	Source string
	// Fetcher fetches a URL source (the guarded client: the address checks
	// apply to the key server too).
	Fetcher *fetch.Fetcher
	// Refresh is how often the set is reloaded (default 5 minutes).
	Refresh time.Duration
	// MinReload bounds reloads asked for by tokens naming an unknown key id
	// (default 30 seconds): a stream of made-up kids cannot hammer the key
	// server.
	MinReload time.Duration
	Logger    *slog.Logger
}

func (o JWKSOptions) withDefaults() JWKSOptions {
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Minute
	}
	if o.MinReload <= 0 {
		o.MinReload = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// JWKS holds the public keys that verify RS256, ES256 and EdDSA tokens,
// reloaded from their source every Refresh (see Run) and when a token
// names a key id the set does not have.
type JWKS struct {
	o JWKSOptions

	mu     sync.Mutex
	keys   []publicKey
	loaded time.Time // last load attempt

	loadMu sync.Mutex // one load at a time
}

type publicKey struct {
	kid string
	alg string // the key's own alg parameter, "" when it has none
	key crypto.PublicKey
}

// keyError says why no key verifies a token.
type keyError struct{ msg string }

func (e *keyError) Error() string { return e.msg }

// LoadJWKS loads a key set; it fails when the source cannot be read or
// holds no usable key.
func LoadJWKS(ctx context.Context, o JWKSOptions) (*JWKS, error) {
	o = o.withDefaults()
	if o.Source == "" {
		return nil, fmt.Errorf("no JWKS source: give a file path or an http(s) URL")
	}
	if isURL(o.Source) && o.Fetcher == nil {
		return nil, fmt.Errorf("JWKS %s: a URL source needs a fetcher", o.Source)
	}
	k := &JWKS{o: o}
	if err := k.load(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// Run reloads the set every Refresh until ctx ends; a failed reload keeps
// the keys held and is retried with back-off.
func (k *JWKS) Run(ctx context.Context) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = time.Second, k.o.Refresh
	wait := k.o.Refresh
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := k.load(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = b.NextBackOff()
			k.o.Logger.LogAttrs(ctx, slog.LevelWarn, "reloading the JWT key set failed; keeping the keys held",
				slog.String("source", k.o.Source), slog.Any("err", err), slog.Duration("retry_in", wait))
			continue
		}
		b.Reset()
		wait = k.o.Refresh
	}
}

func (k *JWKS) read(ctx context.Context) ([]byte, error) {
	if !isURL(k.o.Source) {
		return os.ReadFile(k.o.Source)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.o.Source, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := k.o.Fetcher.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the key server answered %s", resp.Status)
	}
	return resp.Body, nil
}

// load reads and parses the set and replaces the keys held.
func (k *JWKS) load(ctx context.Context) error {
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	k.mu.Lock()
	k.loaded = time.Now()
	k.mu.Unlock()
	raw, err := k.read(ctx)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", k.o.Source, err)
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		return fmt.Errorf("JWKS %s is not a valid JSON Web Key Set: %w", k.o.Source, err)
	}
	var keys []publicKey
	for i := range set.Len() {
		key, _ := set.Key(i)
		pub, err := jwk.PublicKeyOf(key)
		if err != nil {
			continue
		}
		var raw any
		if err := jwk.Export(pub, &raw); err != nil {
			continue
		}
		pk := publicKey{key: raw}
		pk.kid, _ = key.KeyID()
		if a, ok := key.Algorithm(); ok {
			pk.alg = a.String()
		}
		if keyAlg(raw) == "" {
			continue
		}
		keys = append(keys, pk)
	}
	if len(keys) == 0 {
		return fmt.Errorf("JWKS %s holds no RSA, P-256 or Ed25519 public key", k.o.Source)
	}
	k.mu.Lock()
	k.keys = keys
	k.mu.Unlock()
	return nil
}

// keyAlg is the JWT alg a public key verifies ("" for none feedgate takes).
func keyAlg(key any) string {
	switch key := key.(type) {
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		if key.Curve == elliptic.P256() {
			return "ES256"
		}
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return ""
}

// Key returns the key that verifies a token signed with alg and naming kid
// (none: the set's only key for alg). An unknown kid reloads the set, at
// most once per MinReload.
func (k *JWKS) Key(ctx context.Context, kid, alg string) (any, error) {
	key, err := k.find(kid, alg)
	if err == nil || kid == "" {
		return key, err
	}
	k.mu.Lock()
	stale := time.Since(k.loaded) >= k.o.MinReload
	k.mu.Unlock()
	if !stale {
		return nil, err
	}
	if lerr := k.load(ctx); lerr != nil {
		k.o.Logger.LogAttrs(ctx, slog.LevelWarn, "reloading the JWT key set for an unknown key id failed",
			slog.String("source", k.o.Source), slog.Any("err", lerr))
	}
	return k.find(kid, alg)
}

func (k *JWKS) find(kid, alg string) (any, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var match []any
	for _, pk := range k.keys {
		if keyAlg(pk.key) != alg || (pk.alg != "" && pk.alg != alg) {
			continue
		}
		if kid == "" || pk.kid == kid {
			match = append(match, pk.key)
		}
	}
	switch {
	case len(match) == 1:
		return match[0], nil
	case len(match) > 1 && kid == "":
		return nil, &keyError{fmt.Sprintf("the token names no key id (kid) and the key set has several %s keys", alg)}
	case len(match) > 1:
		return match[0], nil
	case kid == "":
		return nil, &keyError{fmt.Sprintf("the key set has no %s key", alg)}
	}
	return nil, &keyError{fmt.Sprintf("the key set has no %s key with id %q", alg, kid)}
}
