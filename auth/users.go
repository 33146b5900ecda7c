package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/feedgate/feedgate/store"
)

// MinTokenLength is the shortest token accepted from `user add --token`.
const MinTokenLength = 16

var loginPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// NewToken returns a random token carrying 192 bits.
func NewToken() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the OS has no randomness left: nothing is safe
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// HashToken is how a token is stored: tokens are random and long, so a plain
// SHA-256 is enough to make a leaked store useless to an attacker.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ParseRights reads a comma-separated list of rights ("all" for every one).
func ParseRights(s string) ([]store.Right, error) {
	var out []store.Right
	for _, part := range strings.Split(s, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		switch {
		case part == "":
			continue
		case part == "all":
			return slices.Clone(store.AllRights), nil
		case slices.Contains(store.AllRights, store.Right(part)):
			if !slices.Contains(out, store.Right(part)) {
				out = append(out, store.Right(part))
			}
		default:
			return nil, fmt.Errorf("unknown right %q: use any of subscribe, unsubscribe, list, retrieve, publish, admin (or all)", part)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no rights given: use any of subscribe, unsubscribe, list, retrieve, publish, admin (or all)")
	}
	return out, nil
}

// ParseScopes reads a comma-separated list of topic scopes: http(s) URLs,
// exact, or prefixes when they end with "*".
func ParseScopes(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(strings.TrimSuffix(part, "*"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("topic scope %q is not an http(s) URL (end it with * to allow every topic under that prefix)", part)
		}
		out = append(out, part)
	}
	return out, nil
}

// NewUser describes a user to create.
type NewUser struct {
	Login  string
	Rights []store.Right
	Topics []string
	// Token is the secret to use; a random one is made when empty.
	Token string
}

// AddUser creates a user with one token and returns the token, which is not
// kept anywhere in clear: it must be shown to the user now.
func AddUser(ctx context.Context, users store.Users, nu NewUser) (string, error) {
	if !loginPattern.MatchString(nu.Login) {
		return "", fmt.Errorf("login %q is not valid: use 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", nu.Login)
	}
	if len(nu.Rights) == 0 {
		return "", errors.New("a user needs at least one right")
	}
	token := nu.Token
	if token == "" {
		token = NewToken()
	} else if len(token) < MinTokenLength || strings.ContainsAny(token, ": \t\r\n") {
		return "", fmt.Errorf("the token must be at least %d characters with no spaces or colons; omit --token to get a random one", MinTokenLength)
	}
	now := time.Now().UTC()
	u := store.User{
		Login:     nu.Login,
		CreatedAt: now,
		Tokens: []store.Token{{
			ID:        HashToken(token)[:12],
			Hash:      HashToken(token),
			Rights:    nu.Rights,
			Topics:    nu.Topics,
			CreatedAt: now,
		}},
	}
	if err := users.AddUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrExists) {
			return "", fmt.Errorf("user %q already exists: remove it first or choose another login", nu.Login)
		}
		return "", err
	}
	return token, nil
}
