package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/fetch"
)

// JWTConfig enables signed tokens on `gateway serve`.
type JWTConfig struct {
	JWTSecret   string        `name:"jwt-secret" env:"FEEDGATE_JWT_SECRET" help:"Accept HS256 signed tokens (JWT) signed with this secret (at least 32 bytes), in Authorization: Bearer or access_token=."`
	JWTJWKS     string        `name:"jwt-jwks" env:"FEEDGATE_JWT_JWKS" help:"Accept RS256, ES256 and EdDSA signed tokens verified by this JSON Web Key Set: a file or an http(s) URL (fetched with the same address checks as feeds, reloaded every --jwt-jwks-refresh)."`
	JWTRefresh  time.Duration `name:"jwt-jwks-refresh" env:"FEEDGATE_JWT_JWKS_REFRESH" default:"5m" help:"How often the JWKS is reloaded (also when a token names an unknown key id, at most every 30s)."`
	JWTIssuer   string        `name:"jwt-issuer" env:"FEEDGATE_JWT_ISSUER" help:"When set, signed tokens must carry this iss claim."`
	JWTAudience string        `name:"jwt-audience" env:"FEEDGATE_JWT_AUDIENCE" help:"When set, signed tokens must name this audience in their aud claim."`
}

// options loads the key set (if any) and returns the JWT options; jwks is
// nil unless a key set was configured (its Run keeps it fresh).
func (c JWTConfig) options(ctx context.Context, allowPrivate bool) (auth.JWTOptions, *auth.JWKS, error) {
	o := auth.JWTOptions{Secret: []byte(c.JWTSecret), Issuer: c.JWTIssuer, Audience: c.JWTAudience}
	if c.JWTJWKS == "" {
		return o, nil, nil
	}
	set, err := auth.LoadJWKS(ctx, auth.JWKSOptions{
		Source:  c.JWTJWKS,
		Fetcher: fetch.New(fetch.Options{AllowPrivate: allowPrivate, UserAgent: fetch.UserAgent(version, ""), MaxBody: 1 << 20}),
		Refresh: c.JWTRefresh,
	})
	if err != nil {
		return o, nil, fmt.Errorf("--jwt-jwks: %w", err)
	}
	o.Keys = set
	return o, set, nil
}

// TokenCmd groups the signed-token subcommands.
type TokenCmd struct {
	Mint TokenMintCmd `cmd:"" help:"Print a signed token (JWT, HS256) for --jwt-secret; an application can mint the same itself."`
}

// TokenMintCmd is `gateway token mint`.
type TokenMintCmd struct {
	JWTSecret   string        `name:"jwt-secret" env:"FEEDGATE_JWT_SECRET" required:"" help:"The gateway's HS256 secret."`
	JWTIssuer   string        `name:"jwt-issuer" env:"FEEDGATE_JWT_ISSUER" help:"iss claim (the gateway checks it when it has --jwt-issuer)."`
	JWTAudience string        `name:"jwt-audience" env:"FEEDGATE_JWT_AUDIENCE" help:"aud claim (the gateway checks it when it has --jwt-audience)."`
	Sub         string        `required:"" help:"The user the token acts for (sub claim): whose subscriptions it sees."`
	Rights      string        `default:"retrieve" help:"Comma-separated rights: subscribe, unsubscribe, list, retrieve, publish, admin, or all."`
	Topics      []string      `help:"Limit the token to these topics: exact URLs, or prefixes ending in *. Comma-separated or repeated."`
	TTL         time.Duration `default:"1h" help:"How long the token is valid (exp claim)."`
	ID          string        `help:"Token id (jti claim); default: random."`
}

// Run prints the token.
func (c *TokenMintCmd) Run(ctx context.Context) error {
	if c.TTL <= 0 {
		return errors.New("--ttl must be positive: signed tokens always expire")
	}
	rights, err := auth.ParseRights(c.Rights)
	if err != nil {
		return err
	}
	topics, err := auth.ParseScopes(strings.Join(c.Topics, ","))
	if err != nil {
		return err
	}
	now := time.Now()
	claims := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   c.Sub,
		Issuer:    c.JWTIssuer,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(c.TTL)),
		ID:        c.ID,
	}, Topics: topics}
	if claims.ID == "" {
		claims.ID = auth.NewToken()[:16]
	}
	if c.JWTAudience != "" {
		claims.Audience = jwt.ClaimStrings{c.JWTAudience}
	}
	for _, r := range rights {
		claims.Rights = append(claims.Rights, string(r))
	}
	token, err := auth.Mint([]byte(c.JWTSecret), claims)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "signed token for %s, valid until %s:\n", c.Sub, now.Add(c.TTL).UTC().Format(time.RFC3339))
	fmt.Println(token)
	return nil
}
