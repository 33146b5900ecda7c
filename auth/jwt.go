package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/feedgate/feedgate/store"
)

// JWTOptions configure signed tokens. At least one of Secret and Keys must
// be set for JWTs to be accepted.
type JWTOptions struct {
	// Secret verifies HS256 tokens (--jwt-secret).
	Secret []byte
	// Keys verifies RS256, ES256 and EdDSA tokens (--jwt-jwks).
	Keys *JWKS
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer   string
	Audience string
	// Leeway is the clock skew allowed on exp and nbf (default 5s).
	Leeway time.Duration
}

// DefaultLeeway is the clock skew allowed on exp and nbf.
const DefaultLeeway = 5 * time.Second

// MinSecret is the shortest HS256 secret accepted: shorter ones can be
// brute-forced from a single token.
const MinSecret = 32

func (o JWTOptions) withDefaults() JWTOptions {
	if o.Leeway == 0 {
		o.Leeway = DefaultLeeway
	}
	return o
}

// Enabled reports whether signed tokens are accepted.
func (o JWTOptions) Enabled() bool { return len(o.Secret) > 0 || o.Keys != nil }

// Claims are the claims of a feedgate JWT: sub, exp (required) and nbf,
// optional iss/aud, and the token's rights and topic scopes.
type Claims struct {
	jwt.RegisteredClaims
	// Rights are those of stored tokens: subscribe, unsubscribe, list,
	// retrieve, publish, admin.
	Rights jwt.ClaimStrings `json:"rights,omitempty"`
	// Topics are exact topic URLs, or prefixes ending in "*"; none allows
	// every topic.
	Topics jwt.ClaimStrings `json:"topics,omitempty"`
}

// verifier checks signed tokens.
type verifier struct {
	o      JWTOptions
	parser *jwt.Parser
}

func newVerifier(o JWTOptions) (*verifier, error) {
	o = o.withDefaults()
	if len(o.Secret) > 0 && len(o.Secret) < MinSecret {
		return nil, fmt.Errorf("the JWT secret must be at least %d bytes (got %d): use a random one, e.g. openssl rand -base64 48", MinSecret, len(o.Secret))
	}
	var methods []string
	if len(o.Secret) > 0 {
		methods = append(methods, jwt.SigningMethodHS256.Alg())
	}
	if o.Keys != nil {
		methods = append(methods, jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg())
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(o.Leeway),
	}
	if o.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(o.Issuer))
	}
	if o.Audience != "" {
		popts = append(popts, jwt.WithAudience(o.Audience))
	}
	return &verifier{o: o, parser: jwt.NewParser(popts...)}, nil
}

func (v *verifier) keyFunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		switch t.Method.Alg() {
		case jwt.SigningMethodHS256.Alg():
			return v.o.Secret, nil
		default:
			kid, _ := t.Header["kid"].(string)
			return v.o.Keys.Key(ctx, kid, t.Method.Alg())
		}
	}
}

// verify checks a JWT and returns its principal, or a 401 saying why it is
// refused.
func (v *verifier) verify(ctx context.Context, raw string) (*Principal, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, v.keyFunc(ctx))
	if err != nil {
		return nil, jwtError(err)
	}
	if c.Subject == "" {
		return nil, credentialErr(ErrWrongCredentials, "the token has no sub claim: sign one naming the user it acts for")
	}
	rights, err := parseRightList(c.Rights)
	if err != nil {
		return nil, credentialErr(ErrWrongCredentials, "the token's rights claim: "+err.Error())
	}
	scopes, err := ParseScopes(strings.Join(c.Topics, ","))
	if err != nil {
		return nil, credentialErr(ErrWrongCredentials, "the token's topics claim: "+err.Error())
	}
	p := NewPrincipal(c.Subject, rights, scopes)
	p.JWT = true
	p.Expires = c.ExpiresAt.Time
	p.TokenID = c.ID
	if p.TokenID == "" {
		sum := sha256.Sum256([]byte(raw))
		p.TokenID = "jwt-" + hex.EncodeToString(sum[:8])
	}
	return p, nil
}

func parseRightList(rs []string) ([]store.Right, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	return ParseRights(strings.Join(rs, ","))
}

// jwtError turns a failed verification into a 401 a client can act on.
func jwtError(err error) error {
	var msg string
	kind := ErrWrongCredentials
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		msg = "the bearer token is not a well-formed JWT"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		msg = "the token has no exp claim: signed tokens must expire"
	case errors.Is(err, jwt.ErrTokenExpired):
		kind = ErrExpired
		msg = "the token has expired: get a fresh one and resume from your last cursor"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		msg = "the token is not valid yet (nbf is in the future): check the signer's clock"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		msg = "the token's iss claim is not the issuer this gateway trusts"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		msg = "the token's aud claim does not name this gateway's audience"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		msg = "the token's signature does not verify: sign it with the configured key (alg none is never accepted)"
		var ke *keyError
		if errors.As(err, &ke) {
			msg = "the token cannot be verified: " + ke.msg
		}
	default:
		msg = "the token is not valid: " + err.Error()
	}
	return credentialErr(kind, msg)
}

// Mint signs claims with an HS256 secret and returns the JWT (`gateway
// token mint`).
func Mint(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecret {
		return "", fmt.Errorf("the JWT secret must be at least %d bytes (got %d)", MinSecret, len(secret))
	}
	if c.Subject == "" {
		return "", errors.New("a token needs a subject (--sub)")
	}
	if c.ExpiresAt == nil {
		return "", errors.New("a token needs an expiry (--ttl)")
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
