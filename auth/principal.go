// Package auth owns users, tokens, rights and topic scopes, and the
// authentication of hub-endpoint calls: stored tokens by HTTP Basic auth or
// the authorization= parameter, signed tokens (JWT) by Authorization: Bearer
// or access_token=. The principal of a request travels in its context
// (WithPrincipal, FromContext); a live connection asks Revalidate whether
// the credential it was opened with still holds.
package auth

import (
	"strings"
	"time"

	"github.com/feedgate/feedgate/store"
)

// Principal is the authenticated caller of one request: a user and the
// rights and topic scopes of the credential used.
type Principal struct {
	// Login is the user: a stored user's login, or a JWT's sub claim.
	Login string
	// TokenID names the credential: a stored token's id, or a JWT's jti
	// claim (a digest of the JWT when it has none).
	TokenID string
	// Expires is when the credential stops working; zero for never. A JWT
	// always has one (its exp claim).
	Expires time.Time
	// JWT is true for a signed token: it cannot be revoked, only expire.
	JWT bool

	rights map[store.Right]bool
	// scopes limit the topics the token may touch; none means every topic.
	scopes []string
	// hash is the stored token's hash, to tell a rotated token that kept
	// its id (a token given with --token) from the old one.
	hash string
}

// NewPrincipal returns a principal with the rights and topic scopes given
// (exact URLs, or prefixes ending in "*"; none allows every topic).
func NewPrincipal(login string, rights []store.Right, scopes []string) *Principal {
	p := &Principal{Login: login, rights: make(map[store.Right]bool, len(rights)), scopes: scopes}
	for _, r := range rights {
		p.rights[r] = true
	}
	return p
}

func tokenPrincipal(login string, t store.Token) *Principal {
	p := NewPrincipal(login, t.Rights, t.Topics)
	p.TokenID, p.Expires, p.hash = t.ID, t.ExpiresAt, t.Hash
	return p
}

// Can reports whether the token carries the right; admin carries all.
func (p *Principal) Can(r store.Right) bool {
	return p.rights[r] || p.rights[store.RightAdmin]
}

// Admin reports whether the token carries the admin right (it sees every
// user's topics).
func (p *Principal) Admin() bool { return p.rights[store.RightAdmin] }

// Allows reports whether the token's topic scopes cover topic. A scope is
// an exact topic URL, or a prefix when it ends with "*".
func (p *Principal) Allows(topic string) bool {
	if len(p.scopes) == 0 {
		return true
	}
	for _, s := range p.scopes {
		if prefix, ok := strings.CutSuffix(s, "*"); ok {
			if strings.HasPrefix(topic, prefix) {
				return true
			}
		} else if s == topic {
			return true
		}
	}
	return false
}

// Scoped reports whether the token is limited to some topics.
func (p *Principal) Scoped() bool { return len(p.scopes) > 0 }

// Expired reports whether the credential has expired at now.
func (p *Principal) Expired(now time.Time) bool {
	return !p.Expires.IsZero() && !now.Before(p.Expires)
}
