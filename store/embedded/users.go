package embedded

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/feedgate/feedgate/store"
)

// AddUser stores a new user, or returns an error wrapping store.ErrExists.
func (s *Store) AddUser(ctx context.Context, u store.User) error {
	return s.putUser(ctx, u, false)
}

// PutUser stores the user, replacing any with the same login.
func (s *Store) PutUser(ctx context.Context, u store.User) error {
	return s.putUser(ctx, u, true)
}

func (s *Store) putUser(ctx context.Context, u store.User, replace bool) error {
	if err := checkName("login", u.Login); err != nil {
		return fmt.Errorf("embedded store: cannot store user: %w", err)
	}
	v, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("embedded store: cannot encode user %q: %w", u.Login, err)
	}
	exists := false
	err = s.write(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		exists = b.Get([]byte(u.Login)) != nil
		if exists && !replace {
			return nil
		}
		return b.Put([]byte(u.Login), v)
	}, nil)
	if err != nil {
		return err
	}
	if exists && !replace {
		return fmt.Errorf("embedded store: user %q: %w", u.Login, store.ErrExists)
	}
	return nil
}

// User returns the user or an error wrapping store.ErrNotFound.
func (s *Store) User(ctx context.Context, login string) (store.User, error) {
	var u store.User
	found := false
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if login == "" || len(login) > maxNameLen {
			return nil
		}
		v := tx.Bucket(bucketUsers).Get([]byte(login))
		if v == nil {
			return nil
		}
		found = true
		return decodeUser(v, &u)
	})
	if err != nil {
		return store.User{}, err
	}
	if !found {
		return store.User{}, fmt.Errorf("embedded store: user %q: %w", login, store.ErrNotFound)
	}
	return u, nil
}

func decodeUser(v []byte, u *store.User) error {
	if err := json.Unmarshal(v, u); err != nil {
		return fmt.Errorf("embedded store: a user record is corrupt: %w", err)
	}
	return nil
}

// ListUsers returns every user, ordered by login.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	var out []store.User
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(_, v []byte) error {
			var u store.User
			if err := decodeUser(v, &u); err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteUser removes the user, or returns an error wrapping store.ErrNotFound.
func (s *Store) DeleteUser(ctx context.Context, login string) error {
	if login == "" || len(login) > maxNameLen {
		return fmt.Errorf("embedded store: user %q: %w", login, store.ErrNotFound)
	}
	found := false
	err := s.write(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		found = b.Get([]byte(login)) != nil
		if !found {
			return nil
		}
		return b.Delete([]byte(login))
	}, nil)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("embedded store: user %q: %w", login, store.ErrNotFound)
	}
	return nil
}
