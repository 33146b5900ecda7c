package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/admin"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/ingest"
	"github.com/feedgate/feedgate/store"
)

// UserCmd groups the user subcommands.
type UserCmd struct {
	Add    UserAddCmd    `cmd:"" help:"Create a user with one token; the token is printed alone on the last line."`
	List   UserListCmd   `cmd:"" help:"List users and their rights."`
	Remove UserRemoveCmd `cmd:"" help:"Remove a user, its tokens and its subscriptions (its streams end and its webhooks stop within 5s)."`
	Rotate UserRotateCmd `cmd:"" help:"Replace a user's token with a new one, printed alone on the last line; the old one stops working within 5s on every node."`
}

// UserAddCmd is `gateway user add`.
type UserAddCmd struct {
	StoreConfig
	Login   string   `arg:"" help:"Login of the new user."`
	Rights  string   `default:"subscribe,unsubscribe,list,retrieve" help:"Comma-separated rights: subscribe, unsubscribe, list, retrieve, publish, admin, or all."`
	Topics  []string `help:"Limit the token to these topics: exact URLs, or prefixes ending in *. Comma-separated or repeated."`
	Token   string   `help:"Use this token (at least 16 characters) instead of a random one."`
	Expires string   `help:"When the token stops working: a duration from now (720h) or a date (2027-01-31, 2027-01-31T12:00:00Z). Default: never."`
}

// UserRotateCmd is `gateway user rotate`.
type UserRotateCmd struct {
	StoreConfig
	Login   string `arg:"" help:"Login of the user whose token to replace."`
	Token   string `help:"Use this token (at least 16 characters) instead of a random one."`
	Expires string `help:"When the new token stops working (a duration or a date). Default: the old token's lifetime again, or never."`
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
		return admin.Direct{Store: st, Subscriptions: subscriptionRemover(st)}, func() { st.Close() }, nil
	}
	if !c.usesRedis() && isLocked(err) {
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
	expires, err := auth.ParseExpiry(c.Expires, time.Now())
	if err != nil {
		return fmt.Errorf("--expires: %w", err)
	}
	users, done, err := c.users(ctx)
	if err != nil {
		return err
	}
	defer done()
	token, err := users.Add(ctx, auth.NewUser{Login: c.Login, Rights: rights, Topics: topics, Token: c.Token, Expires: expires})
	if err != nil {
		return err
	}
	until := ""
	if !expires.IsZero() {
		until = ", valid until " + expires.Format(time.RFC3339)
	}
	fmt.Fprintf(os.Stderr, "created user %s with rights %s%s; keep the token below, it is not shown again:\n", c.Login, c.Rights, until)
	fmt.Println(token)
	return nil
}

// Run rotates the user's token.
func (c *UserRotateCmd) Run(ctx context.Context) error {
	expires, err := auth.ParseExpiry(c.Expires, time.Now())
	if err != nil {
		return fmt.Errorf("--expires: %w", err)
	}
	users, done, err := c.users(ctx)
	if err != nil {
		return err
	}
	defer done()
	token, err := users.Rotate(ctx, auth.Rotation{Login: c.Login, Token: c.Token, Expires: expires})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "rotated the token of %s; the old one stops working within %s on every node; keep the new one below, it is not shown again:\n", c.Login, auth.RevocationDelay)
	fmt.Println(token)
	return nil
}

// subscriptionRemover removes a removed user's subscriptions straight in
// the store, untracking the topics nobody else follows, as a gateway does.
func subscriptionRemover(st store.Store) admin.SubscriptionRemover {
	is, ok := st.(store.IngestStore)
	if !ok {
		return nil
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ing, err := ingest.New(st, is, ingest.Options{Registerer: prometheus.NewRegistry(), Logger: quiet})
	if err != nil {
		return nil
	}
	return hub.New(st, ing, hub.Options{Logger: quiet})
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
	fmt.Fprintln(tw, "LOGIN\tRIGHTS\tTOPICS\tEXPIRES")
	for _, u := range list {
		rights := make([]string, len(u.Rights))
		for i, r := range u.Rights {
			rights[i] = string(r)
		}
		topics := strings.Join(u.Topics, ",")
		if topics == "" {
			topics = "*"
		}
		expires := "never"
		if !u.Expires.IsZero() {
			expires = u.Expires.UTC().Format(time.RFC3339)
			if !u.Expires.After(time.Now()) {
				expires += " (expired)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Login, strings.Join(rights, ","), topics, expires)
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
		if errors.Is(err, admin.ErrNoUser) {
			return fmt.Errorf("%w: see gateway user list", err)
		}
		return err
	}
	fmt.Fprintf(os.Stderr, "removed user %s and its subscriptions; its streams end within %s on every node\n", c.Login, auth.RevocationDelay)
	return nil
}
