package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/embedded"
	redisstore "github.com/feedgate/feedgate/store/redis"
)

// CLI is the whole command line. Every flag has a FEEDGATE_* environment
// equivalent; defaults and help live in the tags, so flags, environment and
// `gateway --help` cannot drift apart.
type CLI struct {
	ConfigFile kong.ConfigFlag  `name:"config" env:"FEEDGATE_CONFIG" placeholder:"FILE" help:"YAML configuration file: keys are the long flag names (listen, redis-url, ...); the environment and flags override it."`
	Version    kong.VersionFlag `help:"Print the version and exit."`

	Serve      ServeCmd   `cmd:"" default:"withargs" help:"Run the gateway (the default command)."`
	User       UserCmd    `cmd:"" help:"Manage users and their tokens."`
	Token      TokenCmd   `cmd:"" help:"Signed tokens (JWT)."`
	Health     HealthCmd  `cmd:"" help:"Check a running gateway's /healthz (for container health checks)."`
	ConfigCmd  ConfigCmd  `cmd:"" name:"config" help:"Check the configuration."`
	VersionCmd VersionCmd `cmd:"" name:"version" help:"Print the version."`
}

// StoreConfig selects and tunes the store.
type StoreConfig struct {
	RedisURL  string `name:"redis-url" env:"FEEDGATE_REDIS_URL" help:"Redis URL (redis://[:password@]host:port/db). Empty: the embedded store in --data-dir."`
	DataDir   string `name:"data-dir" env:"FEEDGATE_DATA_DIR" default:"./data" help:"Directory of the embedded store."`
	Retention int    `env:"FEEDGATE_RETENTION" default:"1000" help:"Items kept per topic; older ones are trimmed."`
}

// open opens the configured store; changes (may be nil) hears of the
// writes made through it.
func (c StoreConfig) open(ctx context.Context, changes *store.ChangeHook) (store.Store, error) {
	if c.Retention < 1 {
		return nil, fmt.Errorf("--retention must be at least 1 (got %d)", c.Retention)
	}
	opts := store.Options{Retention: c.Retention, Changes: changes}
	if c.RedisURL != "" {
		return redisstore.New(ctx, c.RedisURL, opts)
	}
	return embedded.Open(c.DataDir, opts)
}

func (c StoreConfig) describe() string {
	if c.RedisURL != "" {
		return "redis"
	}
	return "embedded"
}

// LogConfig sets up structured logging.
type LogConfig struct {
	LogLevel  string `env:"FEEDGATE_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level (debug, info, warn, error)."`
	LogFormat string `env:"FEEDGATE_LOG_FORMAT" default:"text" enum:"text,json" help:"Log format (text or json)."`
	AccessLog bool   `name:"access-log" env:"FEEDGATE_ACCESS_LOG" help:"Log every HTTP request (method, route, status, bytes, duration, user; never credentials or query strings)."`
}

func (c LogConfig) logger() *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h)
}

func isLocked(err error) bool { return errors.Is(err, embedded.ErrLocked) }

func splitList(s []string) []string {
	var out []string
	for _, v := range s {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func seconds(d time.Duration) int { return int(d / time.Second) }

// redisLog sends go-redis's own messages (failed dials while Redis is away)
// to the structured log instead of stderr.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.LogAttrs(ctx, slog.LevelWarn, "redis client: "+fmt.Sprintf(format, v...), slog.String("component", "redis"))
}

// accessLogger is the logger of --access-log, nil when it is off.
func (c LogConfig) accessLogger(log *slog.Logger) *slog.Logger {
	if !c.AccessLog {
		return nil
	}
	return log.With(slog.String("component", "access"))
}
