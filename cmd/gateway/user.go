package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/feedgate/feedgate/admin"
	"github.com/feedgate/feedgate/auth"
)

// UserCmd groups the user subcommands.
type UserCmd struct {
	Add    UserAddCmd    `cmd:"" help:"Create a user with one token; the token is printed alone on the last line."`
	List   UserListCmd   `cmd:"" help:"List users and their rights."`
	Remove UserRemoveCmd `cmd:"" help:"Remove a user and its tokens."`
}

// UserAddCmd is `gateway user add`.
type UserAddCmd struct {
	StoreConfig
	Login  string   `arg:"" help:"Login of the new user."`
	Rights string   `default:"subscribe,unsubscribe,list,retrieve" help:"Comma-separated rights: subscribe, unsubscribe, list, retrieve, publish, admin, or all."`
	Topics []string `help:"Limit the token to these topics: exact URLs, or prefixes ending in *. Comma-separated or repeated."`
	Token  string   `help:"Use this token (at least 16 characters) instead of a random one."`
}

// UserListCmd is `gateway user list`.
type UserListCmd struct {
	StoreConfig
}

// UserRemoveCmd is `gateway user remove`.
type UserRemoveCmd struct {
	StoreConfig
	Login string `arg:"" help:"Login of the user to remove."`
}

// users returns user management on the configured store; when the embedded
// store is held by a running gateway, its control socket is used instead.
func (c StoreConfig) users(ctx context.Context) (admin.Users, func(), error) {
	st, err := c.open(ctx, nil)
	if err == nil {
		return admin.Direct{Store: st}, func() { st.Close() }, nil
	}
	if c.RedisURL == "" && isLocked(err) {
		sock := filepath.Join(c.DataDir, admin.SocketName)
		if _, serr := os.Stat(sock); serr == nil {
			return admin.Dial(sock), func() {}, nil
		}
	}
	return nil, nil, err
}

// Run creates the user.
func (c *UserAddCmd) Run(ctx context.Context) error {
	rights, err := auth.ParseRights(c.Rights)
	if err != nil {
		return err
	}
	topics, err := auth.ParseScopes(strings.Join(c.Topics, ","))
	if err != nil {
		return err
	}
	users, done, err := c.users(ctx)
	if err != nil {
		return err
	}
	defer done()
	token, err := users.Add(ctx, auth.NewUser{Login: c.Login, Rights: rights, Topics: topics, Token: c.Token})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "created user %s with rights %s; keep the token below, it is not shown again:\n", c.Login, c.Rights)
	fmt.Println(token)
	return nil
}

// Run lists users.
func (c *UserListCmd) Run(ctx context.Context) error {
	users, done, err := c.users(ctx)
	if err != nil {
		return err
	}
	defer done()
	list, err := users.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOGIN\tRIGHTS\tTOPICS")
	for _, u := range list {
		rights := make([]string, len(u.Rights))
		for i, r := range u.Rights {
			rights[i] = string(r)
		}
		topics := strings.Join(u.Topics, ",")
		if topics == "" {
			topics = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Login, strings.Join(rights, ","), topics)
	}
	return tw.Flush()
}

// Run removes the user.
func (c *UserRemoveCmd) Run(ctx context.Context) error {
	users, done, err := c.users(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := users.Remove(ctx, c.Login); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "removed user %s\n", c.Login)
	return nil
}
