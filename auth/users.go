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
	sum := tokenDigest(token)
	return hex.EncodeToString(sum[:])
}

// tokenDigest is the SHA-256 of a token, which HashToken writes in hex.
func tokenDigest(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

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
	// Expires is when the token stops working; zero for never.
	Expires time.Time
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
	token, err := checkToken(nu.Token)
	if err != nil {
		return "", err
	}
	now := time.Now().UTC()
	if !nu.Expires.IsZero() && !nu.Expires.After(now) {
		return "", fmt.Errorf("the expiry %s is already past: give a later date or a duration such as 720h", nu.Expires.UTC().Format(time.RFC3339))
	}
	u := store.User{
		Login:     nu.Login,
		CreatedAt: now,
		Tokens:    []store.Token{newStoredToken(token, nu.Rights, nu.Topics, now, nu.Expires)},
	}
	if err := users.AddUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrExists) {
			return "", fmt.Errorf("user %q %w: remove it first or choose another login", nu.Login, store.ErrExists)
		}
		return "", err
	}
	return token, nil
}

func checkToken(token string) (string, error) {
	if token == "" {
		return NewToken(), nil
	}
	if len(token) < MinTokenLength || strings.ContainsAny(token, ": \t\r\n") {
		return "", fmt.Errorf("the token must be at least %d characters with no spaces or colons; omit --token to get a random one", MinTokenLength)
	}
	return token, nil
}

func newStoredToken(token string, rights []store.Right, topics []string, now, expires time.Time) store.Token {
	h := HashToken(token)
	t := store.Token{ID: h[:12], Hash: h, Rights: rights, Topics: topics, CreatedAt: now}
	if !expires.IsZero() {
		t.ExpiresAt = expires.UTC()
	}
	return t
}

// Rotation describes a token rotation.
type Rotation struct {
	Login string
	// Token is the new secret; a random one is made when empty.
	Token string
	// Expires is the new token's expiry. Zero keeps the old token's
	// lifetime: none if it had none, else as long again from now.
	Expires time.Time
}

// RotateToken replaces every token of a user with one new token carrying
// the rights and scopes of the newest one, and returns it. The old tokens
// stop working at once on this node and within the credential cache TTL on
// the others (live connections: within RevocationDelay).
func RotateToken(ctx context.Context, users store.Users, r Rotation) (string, error) {
	u, err := users.User(ctx, r.Login)
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("%w %q", ErrNoUser, r.Login)
	}
	if err != nil {
		return "", err
	}
	if len(u.Tokens) == 0 {
		return "", fmt.Errorf("user %q has no token to rotate: remove it and add it again", r.Login)
	}
	token, err := checkToken(r.Token)
	if err != nil {
		return "", err
	}
	old := u.Tokens[len(u.Tokens)-1]
	now := time.Now().UTC()
	expires := r.Expires
	if expires.IsZero() && !old.ExpiresAt.IsZero() {
		expires = now.Add(max(old.ExpiresAt.Sub(old.CreatedAt), time.Minute))
	}
	if !expires.IsZero() && !expires.After(now) {
		return "", fmt.Errorf("the expiry %s is already past: give a later date or a duration such as 720h", expires.UTC().Format(time.RFC3339))
	}
	u.Tokens = []store.Token{newStoredToken(token, old.Rights, old.Topics, now, expires)}
	if err := users.PutUser(ctx, u); err != nil {
		return "", err
	}
	return token, nil
}

// ErrNoUser is returned for an unknown login.
var ErrNoUser = errors.New("no such user")

// ParseExpiry reads an expiry: a duration from now ("720h", "90m"), a date
// ("2027-01-31", midnight UTC) or an RFC 3339 time. Empty is never.
func ParseExpiry(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("the expiry %q must be a positive duration", s)
		}
		return now.Add(d).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("the expiry %q is neither a duration (720h, 90m) nor a date (2027-01-31 or 2027-01-31T12:00:00Z)", s)
}
