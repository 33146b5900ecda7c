package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/store"
)

// Realm is the HTTP Basic realm announced on 401.
const Realm = "feedgate"

// maxCached bounds the credential cache; it is emptied when full.
const maxCached = 10000

// Authenticator checks credentials against the store. Successful checks are
// cached for a short time so that a busy stream or retrieve endpoint does
// not ask the store on every request; a removed user or token therefore
// stops working on other nodes within the cache TTL.
type Authenticator struct {
	users store.Users
	ttl   time.Duration

	mu    sync.Mutex
	cache map[[32]byte]cached
}

type cached struct {
	p       *Principal
	expires time.Time
}

// NewAuthenticator returns an Authenticator caching successes for ttl
// (0 disables the cache).
func NewAuthenticator(users store.Users, ttl time.Duration) *Authenticator {
	return &Authenticator{users: users, ttl: ttl, cache: map[[32]byte]cached{}}
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
	v := params.Get("authorization")
	if v == "" {
		return "", "", false
	}
	v = strings.TrimSpace(v)
	if len(v) > 6 && strings.EqualFold(v[:6], "basic ") {
		v = strings.TrimSpace(v[6:])
	}
	raw, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "=")); err != nil {
			return "", "", false
		}
	}
	login, token, ok = strings.Cut(string(raw), ":")
	return login, token, ok
}

// Authenticate returns the principal of the request, or a 401 (or 503 when
// the store cannot be asked). params are as for Credentials.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request, params url.Values) (*Principal, error) {
	login, token, ok := Credentials(r, params)
	if !ok {
		return nil, Unauthorized("authentication required: use HTTP Basic auth with your login and token, or authorization=<base64 of login:token> in the query string or form body")
	}
	return a.Check(ctx, login, token)
}

// Check verifies a login and token.
func (a *Authenticator) Check(ctx context.Context, login, token string) (*Principal, error) {
	key := sha256.Sum256([]byte(login + "\x00" + token))
	now := time.Now()
	if a.ttl > 0 {
		a.mu.Lock()
		c, ok := a.cache[key]
		a.mu.Unlock()
		if ok && now.Before(c.expires) {
			return c.p, nil
		}
	}
	wrong := Unauthorized("wrong login or token: check both, or ask an admin for a new token")
	u, err := a.users.User(ctx, login)
	if errors.Is(err, store.ErrNotFound) {
		HashToken(token) // same work as a known login, so timing does not tell logins apart
		return nil, wrong
	}
	if err != nil {
		return nil, err
	}
	want := []byte(HashToken(token))
	var match *store.Token
	for i := range u.Tokens {
		if subtle.ConstantTimeCompare(want, []byte(u.Tokens[i].Hash)) == 1 {
			match = &u.Tokens[i]
		}
	}
	if match == nil {
		return nil, wrong
	}
	p := newPrincipal(u.Login, *match)
	if a.ttl > 0 {
		a.mu.Lock()
		if len(a.cache) >= maxCached {
			clear(a.cache)
		}
		a.cache[key] = cached{p: p, expires: now.Add(a.ttl)}
		a.mu.Unlock()
	}
	return p, nil
}

// Forget drops cached credentials of login on this node.
func (a *Authenticator) Forget(login string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range a.cache {
		if c.p.Login == login {
			delete(a.cache, k)
		}
	}
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
