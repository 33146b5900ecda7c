// Package auth owns users, tokens, rights and topic scopes, and the
// authentication of hub-endpoint calls by HTTP Basic auth or the
// authorization= parameter. The principal of a request travels in its
// context (WithPrincipal, FromContext).
package auth

import (
	"strings"

	"github.com/feedgate/feedgate/store"
)

// Principal is the authenticated caller of one request: a user and the
// rights and topic scopes of the token used.
type Principal struct {
	Login  string
	rights map[store.Right]bool
	// scopes limit the topics the token may touch; none means every topic.
	scopes []string
}

func newPrincipal(login string, t store.Token) *Principal {
	p := &Principal{Login: login, rights: make(map[store.Right]bool, len(t.Rights)), scopes: t.Topics}
	for _, r := range t.Rights {
		p.rights[r] = true
	}
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
