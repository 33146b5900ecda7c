// Package admin owns user management — the operations behind `gateway user`
// — and the local control socket through which those commands reach a
// running gateway whose embedded store is locked by that process.
package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/store"
)

// Users manages accounts.
type Users interface {
	Add(ctx context.Context, nu auth.NewUser) (token string, err error)
	List(ctx context.Context) ([]UserInfo, error)
	Remove(ctx context.Context, login string) error
}

// UserInfo describes a user without secrets.
type UserInfo struct {
	Login  string        `json:"login"`
	Rights []store.Right `json:"rights"`
	Topics []string      `json:"topics,omitempty"`
	Tokens int           `json:"tokens"`
}

// ErrNoUser is returned when removing an unknown login.
var ErrNoUser = errors.New("no such user")

// Direct manages users straight in a store.
type Direct struct {
	Store store.Users
	// Forget is called after a removal (drops cached credentials); may be nil.
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
		if len(u.Tokens) > 0 {
			info.Rights, info.Topics = u.Tokens[0].Rights, u.Tokens[0].Topics
		}
		out = append(out, info)
	}
	return out, nil
}

// Remove deletes a user.
func (d Direct) Remove(ctx context.Context, login string) error {
	err := d.Store.DeleteUser(ctx, login)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w %q", ErrNoUser, login)
	}
	if err == nil && d.Forget != nil {
		d.Forget(login)
	}
	return err
}
