package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/store"
)

// Realm is the HTTP Basic realm announced on 401.
const Realm = "feedgate"

// RevocationDelay is how long a removed, rotated or expired credential may
// go on working anywhere: new requests on every node are refused within
// the cache TTL, and live connections that call Revalidate every
// RevalidateEvery are ended within this delay.
const RevocationDelay = 5 * time.Second

// MaxCacheTTL is the longest credential cache Options accept: longer ones
// would break RevocationDelay.
const MaxCacheTTL = 3 * time.Second

// maxCached bounds the user cache; it is emptied when full.
const maxCached = 10000

// Options configure an Authenticator.
type Options struct {
	// CacheTTL is how long a node keeps a user's record to check tokens
	// against before asking the store again (0: ask every time). A token
	// removed or rotated on another node stops working here within it.
	CacheTTL time.Duration
	// JWT enables signed tokens.
	JWT JWTOptions
}

// Authenticator checks credentials: stored tokens against the store (a
// user's record is cached for CacheTTL so that busy endpoints do not ask
// the store on every request), signed tokens against the configured keys.
type Authenticator struct {
	users store.Users
	o     Options
	jwt   *verifier // nil: signed tokens are refused

	mu    sync.Mutex
	cache map[string]*cachedUser
	loads singleflight.Group
}

// cachedUser is a user's record as read at at, and the principals of its
// tokens checked since (by token hash), so that a busy credential is
// hashed once per request and nothing else is redone.
type cachedUser struct {
	u          store.User
	at         time.Time
	principals map[[sha256.Size]byte]*Principal
}

// New returns an Authenticator.
func New(users store.Users, o Options) (*Authenticator, error) {
	if o.CacheTTL < 0 || o.CacheTTL > MaxCacheTTL {
		return nil, fmt.Errorf("the credential cache must be from 0 to %s (got %s), or removed tokens would work longer than %s", MaxCacheTTL, o.CacheTTL, RevocationDelay)
	}
	a := &Authenticator{users: users, o: o, cache: map[string]*cachedUser{}}
	if o.JWT.Enabled() {
		v, err := newVerifier(o.JWT)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	return a, nil
}

// NewAuthenticator returns an Authenticator for stored tokens only,
// caching user records for ttl (clamped to MaxCacheTTL).
func NewAuthenticator(users store.Users, ttl time.Duration) *Authenticator {
	a, _ := New(users, Options{CacheTTL: min(max(ttl, 0), MaxCacheTTL)})
	return a
}

// The kinds of credential failures, matched with errors.Is.
var (
	// ErrNoCredentials: the request carried none.
	ErrNoCredentials = errors.New("no credentials")
	// ErrWrongCredentials: a wrong login, token or signature (a failed
	// login, counted per address).
	ErrWrongCredentials = errors.New("wrong credentials")
	// ErrExpired: the token's expiry has passed.
	ErrExpired = errors.New("credential expired")
	// ErrRevoked: the user was removed or the token rotated away.
	ErrRevoked = errors.New("credential revoked")
)

// CredentialError is a refused credential: a 401 (API) of one of the kinds
// above.
type CredentialError struct {
	// Kind is ErrNoCredentials, ErrWrongCredentials, ErrExpired or
	// ErrRevoked.
	Kind error
	// API is the 401 to answer.
	API *api.Error
}

func (e *CredentialError) Error() string   { return e.API.Message }
func (e *CredentialError) Unwrap() []error { return []error{e.Kind, e.API} }

func credentialErr(kind error, msg string) *CredentialError {
	return &CredentialError{Kind: kind, API: Unauthorized(msg)}
}

// Unauthorized is the 401 for missing or wrong credentials.
func Unauthorized(msg string) *api.Error {
	e := api.Errorf(http.StatusUnauthorized, "%s", msg)
	e.Header = http.Header{"Www-Authenticate": {`Basic realm="` + Realm + `"`}}
	return e
}

// Credentials returns the login and token of a request: HTTP Basic auth, or
// the authorization parameter holding base64(login:token) for clients that
// cannot set headers (EventSource, <script>, WebSocket) or that send it in a
// form body. params are the request's parameters, query string and form body
// (api.ReadParams); nil reads the query string alone.
func Credentials(r *http.Request, params url.Values) (login, token string, ok bool) {
	if login, token, ok = r.BasicAuth(); ok {
		return login, token, true
	}
	if params == nil {
		params = r.URL.Query()
	}
	return decodeBasic(params.Get("authorization"))
}

// HasCredentials reports whether the request's header or query string
// carries credentials of any kind (a form body is not read).
func HasCredentials(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return true
	}
	q := r.URL.Query()
	return q.Get("authorization") != "" || q.Get("access_token") != ""
}

func decodeBasic(v string) (login, token string, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", "", false
	}
	if len(v) > 6 && strings.EqualFold(v[:6], "basic ") {
		v = strings.TrimSpace(v[6:])
	}
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "=")); err != nil {
			return "", "", false
		}
	}
	return strings.Cut(string(raw), ":")
}

const noCredentials = "authentication required: use HTTP Basic auth with your login and token (or authorization=<base64 of login:token>), or a signed token in Authorization: Bearer (or access_token=)"

// Authenticate returns the principal of the request, or a
// *CredentialError (401), or a store error. It reads, in order: the
// Authorization header (Basic or Bearer), access_token= and authorization=
// from params (the query string when params is nil; the caller merges a
// form body in).
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request, params url.Values) (*Principal, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, value, _ := strings.Cut(strings.TrimSpace(h), " ")
		switch {
		case strings.EqualFold(scheme, "basic"):
			login, token, ok := decodeBasic(value)
			if !ok {
				return nil, credentialErr(ErrWrongCredentials, "the Basic credentials are not base64 of login:token")
			}
			return a.Check(ctx, login, token)
		case strings.EqualFold(scheme, "bearer"):
			return a.Verify(ctx, strings.TrimSpace(value))
		default:
			return nil, credentialErr(ErrWrongCredentials, fmt.Sprintf("the Authorization scheme %q is not supported: use Basic or Bearer", truncate(scheme)))
		}
	}
	if params == nil {
		params = r.URL.Query()
	}
	if v := params.Get("access_token"); v != "" {
		return a.Verify(ctx, v)
	}
	if v := params.Get("authorization"); v != "" {
		login, token, ok := decodeBasic(v)
		if !ok {
			return nil, credentialErr(ErrWrongCredentials, "authorization= must be base64 of login:token")
		}
		return a.Check(ctx, login, token)
	}
	return nil, credentialErr(ErrNoCredentials, noCredentials)
}

func truncate(s string) string {
	if len(s) > 30 {
		return s[:30] + "..."
	}
	return s
}

// Verify checks a signed token (JWT).
func (a *Authenticator) Verify(ctx context.Context, token string) (*Principal, error) {
	if a.jwt == nil {
		return nil, credentialErr(ErrWrongCredentials, "signed tokens (Bearer, access_token=) are not enabled on this gateway: use HTTP Basic with a login and token")
	}
	return a.jwt.verify(ctx, token)
}

// Check verifies a login and stored token.
func (a *Authenticator) Check(ctx context.Context, login, token string) (*Principal, error) {
	// The busy path compares digests; the stored form (hex) is made only
	// to check against a record read from the store.
	sum := tokenDigest(token)
	now := time.Now()
	p := a.cachedPrincipal(login, sum, now)
	if p == nil {
		hash := hex.EncodeToString(sum[:])
		u, err := a.user(ctx, login)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errWrongLogin()
		}
		if err != nil {
			return nil, err
		}
		want := []byte(hash)
		var match *store.Token
		for i := range u.Tokens {
			if subtle.ConstantTimeCompare(want, []byte(u.Tokens[i].Hash)) == 1 {
				match = &u.Tokens[i]
			}
		}
		if match == nil {
			return nil, errWrongLogin()
		}
		p = tokenPrincipal(u.Login, *match)
		a.keepPrincipal(login, sum, p)
	}
	if p.Expired(now) {
		return nil, credentialErr(ErrExpired, fmt.Sprintf("the token expired at %s: ask an admin for a new one (gateway user rotate %s)", p.Expires.UTC().Format(time.RFC3339), p.Login))
	}
	return p, nil
}

func errWrongLogin() error {
	return credentialErr(ErrWrongCredentials, "wrong login or token: check both, or ask an admin for a new token")
}

// cachedPrincipal returns the principal of a token (by its hash) checked
// against login's cached record while it is fresh; nil otherwise.
func (a *Authenticator) cachedPrincipal(login string, hash [sha256.Size]byte, now time.Time) *Principal {
	if a.o.CacheTTL <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[login]
	if !ok || now.Sub(c.at) >= a.o.CacheTTL {
		return nil
	}
	return c.principals[hash]
}

// keepPrincipal remembers p with login's cached record, if it is cached.
func (a *Authenticator) keepPrincipal(login string, hash [sha256.Size]byte, p *Principal) {
	if a.o.CacheTTL <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[login]
	if !ok || len(c.principals) >= maxPrincipalsPerUser {
		return
	}
	if c.principals == nil {
		c.principals = make(map[[sha256.Size]byte]*Principal, 1)
	}
	c.principals[hash] = p
}

// maxPrincipalsPerUser bounds the principals kept per cached user (its
// tokens, and hashes of wrong ones are never kept).
const maxPrincipalsPerUser = 16

// user returns a user's record, from the cache when it is fresh enough.
// Concurrent misses for one login share one store read.
func (a *Authenticator) user(ctx context.Context, login string) (store.User, error) {
	if a.o.CacheTTL > 0 {
		a.mu.Lock()
		c, ok := a.cache[login]
		a.mu.Unlock()
		if ok && time.Since(c.at) < a.o.CacheTTL {
			return c.u, nil
		}
	}
	v, err, _ := a.loads.Do(login, func() (any, error) {
		at := time.Now()
		u, err := a.users.User(context.WithoutCancel(ctx), login)
		if err != nil {
			return nil, err
		}
		if a.o.CacheTTL > 0 {
			a.mu.Lock()
			if len(a.cache) >= maxCached {
				clear(a.cache)
			}
			a.cache[login] = &cachedUser{u: u, at: at}
			a.mu.Unlock()
		}
		return u, nil
	})
	if err != nil {
		return store.User{}, err
	}
	return v.(store.User), nil
}

// Forget drops the cached record of login on this node, so that a change
// made here takes effect at once.
func (a *Authenticator) Forget(login string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.cache, login)
}

// Revalidate reports whether the credential p was authenticated with still
// holds: nil while it does; a *CredentialError of kind ErrExpired once it
// has expired, or ErrRevoked once its user was removed or the token
// rotated away (on any node: the answer is at most the cache TTL old); any
// other error (the store is unreachable) says nothing either way. A signed
// token can only expire. Live connections call it every RevalidateEvery.
func (a *Authenticator) Revalidate(ctx context.Context, p *Principal) error {
	if p == nil {
		return nil
	}
	now := time.Now()
	expired := func(at time.Time) error {
		return credentialErr(ErrExpired, fmt.Sprintf("your token expired at %s: reconnect with a fresh one and resume from your last cursor", at.UTC().Format(time.RFC3339)))
	}
	if p.Expired(now) {
		return expired(p.Expires)
	}
	if p.JWT {
		return nil
	}
	u, err := a.user(ctx, p.Login)
	if errors.Is(err, store.ErrNotFound) {
		return credentialErr(ErrRevoked, fmt.Sprintf("user %s was removed", p.Login))
	}
	if err != nil {
		return err
	}
	for _, t := range u.Tokens {
		if t.ID == p.TokenID && t.Hash == p.hash {
			if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
				return expired(t.ExpiresAt)
			}
			return nil
		}
	}
	return credentialErr(ErrRevoked, "your token was rotated or removed: reconnect with the new one and resume from your last cursor")
}

// RevalidateEvery is how often a live connection should call Revalidate
// so that a change made on any node ends it within RevocationDelay.
func (a *Authenticator) RevalidateEvery() time.Duration {
	return min(max((RevocationDelay-a.o.CacheTTL)/2, 250*time.Millisecond), 2*time.Second)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p, the authenticated caller of the
// request ctx belongs to.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal set by WithPrincipal (nil if none).
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Require returns a 403 unless the principal carries the right.
func Require(p *Principal, r store.Right) error {
	if p == nil {
		return Unauthorized("authentication required")
	}
	if !p.Can(r) {
		return api.Errorf(http.StatusForbidden, "your token does not carry the %q right; ask an admin for a token with it", r)
	}
	return nil
}

// RequireTopic returns a 403 unless the principal's scopes cover topic.
func RequireTopic(p *Principal, topic string) error {
	if !p.Allows(topic) {
		return api.Errorf(http.StatusForbidden, "your token is scoped to other topics and may not use %s; use a token whose --topics cover it", topic)
	}
	return nil
}
