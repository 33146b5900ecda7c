package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// usersKey is one hash of every user, login -> JSON: users are few (and
// every read of one is cached by the nodes), a single key makes AddUser's
// check-and-create atomic (HSETNX) and keeps the whole set in one Cluster
// slot.
func (s *Store) usersKey() string { return s.key("users") }

func encodeUser(u store.User) (string, error) {
	b, err := json.Marshal(u)
	if err != nil {
		return "", fmt.Errorf("encode user %q: %w", u.Login, err)
	}
	return string(b), nil
}

func decodeUser(login, v string) (store.User, error) {
	var u store.User
	if err := json.Unmarshal([]byte(v), &u); err != nil {
		return store.User{}, fmt.Errorf("user %q: stored record is not valid JSON: %w", login, err)
	}
	return u, nil
}

// AddUser implements store.Users.
func (s *Store) AddUser(ctx context.Context, u store.User) error {
	v, err := encodeUser(u)
	if err != nil {
		return err
	}
	ok, err := s.rdb.HSetNX(ctx, s.usersKey(), u.Login, v).Result()
	if err != nil {
		return s.wrap("add user", err)
	}
	if !ok {
		return fmt.Errorf("user %q: %w", u.Login, store.ErrExists)
	}
	return nil
}

// PutUser implements store.Users.
func (s *Store) PutUser(ctx context.Context, u store.User) error {
	v, err := encodeUser(u)
	if err != nil {
		return err
	}
	return s.wrap("put user", s.rdb.HSet(ctx, s.usersKey(), u.Login, v).Err())
}

// User implements store.Users.
func (s *Store) User(ctx context.Context, login string) (store.User, error) {
	v, err := s.rdb.HGet(ctx, s.usersKey(), login).Result()
	if errors.Is(err, redis.Nil) {
		return store.User{}, fmt.Errorf("user %q: %w", login, store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, s.wrap("user", err)
	}
	return decodeUser(login, v)
}

// ListUsers implements store.Users.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	all, err := s.rdb.HGetAll(ctx, s.usersKey()).Result()
	if err != nil {
		return nil, s.wrap("list users", err)
	}
	out := make([]store.User, 0, len(all))
	for login, v := range all {
		u, err := decodeUser(login, v)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Login < out[j].Login })
	return out, nil
}

// DeleteUser implements store.Users.
func (s *Store) DeleteUser(ctx context.Context, login string) error {
	n, err := s.rdb.HDel(ctx, s.usersKey(), login).Result()
	if err != nil {
		return s.wrap("delete user", err)
	}
	if n == 0 {
		return fmt.Errorf("user %q: %w", login, store.ErrNotFound)
	}
	return nil
}
