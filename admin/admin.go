// Package admin owns user management — the operations behind `gateway user`
// — and the local control socket through which those commands reach a
// running gateway whose embedded store is locked by that process.
package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/store"
)

// Users manages accounts.
type Users interface {
	Add(ctx context.Context, nu auth.NewUser) (token string, err error)
	List(ctx context.Context) ([]UserInfo, error)
	// Remove deletes a user, its tokens and its subscriptions.
	Remove(ctx context.Context, login string) error
	// Rotate replaces a user's tokens with a new one and returns it.
	Rotate(ctx context.Context, r auth.Rotation) (token string, err error)
}

// UserInfo describes a user without secrets.
type UserInfo struct {
	Login  string        `json:"login"`
	Rights []store.Right `json:"rights"`
	Topics []string      `json:"topics,omitempty"`
	Tokens int           `json:"tokens"`
	// Expires is when the newest token expires; zero for never.
	Expires time.Time `json:"expires,omitzero"`
}

// ErrNoUser is returned for an unknown login.
var ErrNoUser = auth.ErrNoUser

// SubscriptionRemover removes a removed user's subscriptions (package hub):
// its webhook deliveries stop and topics nobody else follows are untracked.
type SubscriptionRemover interface {
	RemoveUser(ctx context.Context, login string) (int, error)
}

// Direct manages users straight in a store.
type Direct struct {
	Store store.Users
	// Subscriptions removes a removed user's subscriptions; may be nil
	// (then they stay until removed otherwise).
	Subscriptions SubscriptionRemover
	// Forget is called after a removal or rotation (drops cached
	// credentials on this node); may be nil.
	Forget func(login string)
}

var _ Users = Direct{}

// Add creates a user and returns its token.
func (d Direct) Add(ctx context.Context, nu auth.NewUser) (string, error) {
	return auth.AddUser(ctx, d.Store, nu)
}

// List returns every user.
func (d Direct) List(ctx context.Context) ([]UserInfo, error) {
	us, err := d.Store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]UserInfo, 0, len(us))
	for _, u := range us {
		info := UserInfo{Login: u.Login, Tokens: len(u.Tokens)}
		if n := len(u.Tokens); n > 0 {
			t := u.Tokens[n-1]
			info.Rights, info.Topics, info.Expires = t.Rights, t.Topics, t.ExpiresAt
		}
		out = append(out, info)
	}
	return out, nil
}

// Remove deletes a user's subscriptions (stopping its webhook deliveries),
// then the user and its tokens: its open streams end within
// auth.RevocationDelay on every node.
func (d Direct) Remove(ctx context.Context, login string) error {
	if _, err := d.Store.User(ctx, login); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w %q", ErrNoUser, login)
		}
		return err
	}
	if d.Subscriptions != nil {
		if _, err := d.Subscriptions.RemoveUser(ctx, login); err != nil {
			return fmt.Errorf("removing the subscriptions of %s (the user is kept; run the command again): %w", login, err)
		}
	}
	err := d.Store.DeleteUser(ctx, login)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w %q", ErrNoUser, login)
	}
	if err == nil && d.Forget != nil {
		d.Forget(login)
	}
	return err
}

// Rotate replaces the user's tokens with a new one.
func (d Direct) Rotate(ctx context.Context, r auth.Rotation) (string, error) {
	token, err := auth.RotateToken(ctx, d.Store, r)
	if err == nil && d.Forget != nil {
		d.Forget(r.Login)
	}
	return token, err
}
