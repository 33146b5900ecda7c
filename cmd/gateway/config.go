package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	RedisURL      string   `name:"redis-url" env:"FEEDGATE_REDIS_URL" help:"Redis URL of one server (redis://[:password@]host:port/db, rediss:// for TLS). Empty, with no --redis-cluster or --redis-sentinel: the embedded store in --data-dir."`
	RedisCluster  []string `name:"redis-cluster" env:"FEEDGATE_REDIS_CLUSTER" sep:"," placeholder:"HOST:PORT,..." help:"Redis Cluster seed nodes (Redis 7 or later; sharded pub/sub)."`
	RedisSentinel []string `name:"redis-sentinel" env:"FEEDGATE_REDIS_SENTINEL" sep:"," placeholder:"HOST:PORT,..." help:"Redis Sentinel addresses; with --redis-master."`
	RedisMaster   string   `name:"redis-master" env:"FEEDGATE_REDIS_MASTER" placeholder:"NAME" help:"The name the sentinels know the Redis master by."`

	RedisUsername         string `name:"redis-username" env:"FEEDGATE_REDIS_USERNAME" help:"Redis ACL user (all modes; a --redis-url naming one wins)."`
	RedisPassword         string `name:"redis-password" env:"FEEDGATE_REDIS_PASSWORD" help:"Redis password (all modes; a --redis-url naming one wins)."`
	RedisSentinelPassword string `name:"redis-sentinel-password" env:"FEEDGATE_REDIS_SENTINEL_PASSWORD" help:"Password of the sentinels themselves."`
	RedisTLS              bool   `name:"redis-tls" env:"FEEDGATE_REDIS_TLS" help:"Connect to Redis with TLS (all modes; rediss:// does it for --redis-url)."`
	RedisTLSCA            string `name:"redis-tls-ca" env:"FEEDGATE_REDIS_TLS_CA" placeholder:"FILE" help:"PEM file of the CA that signed the Redis servers' certificates (default: the system's)."`

	RedisWaitReplicas int           `name:"redis-wait-replicas" env:"FEEDGATE_REDIS_WAIT_REPLICAS" default:"0" help:"Acknowledge an append (fat ping, pushed or polled items, subscription) only once this many Redis replicas have it (WAIT); else answer 503 and the client retries."`
	RedisWaitTimeout  time.Duration `name:"redis-wait-timeout" env:"FEEDGATE_REDIS_WAIT_TIMEOUT" default:"1s" help:"How long an append waits for --redis-wait-replicas."`

	DataDir   string `name:"data-dir" env:"FEEDGATE_DATA_DIR" default:"./data" help:"Directory of the embedded store."`
	Retention int    `env:"FEEDGATE_RETENTION" default:"1000" help:"Items kept per topic; older ones are trimmed."`
}

// usesRedis reports whether a Redis deployment is configured.
func (c StoreConfig) usesRedis() bool {
	return c.RedisURL != "" || len(c.RedisCluster) > 0 || len(c.RedisSentinel) > 0
}

// redisConfig is the store's view of the Redis flags.
func (c StoreConfig) redisConfig() (redisstore.Config, error) {
	cfg := redisstore.Config{
		URL:              c.RedisURL,
		Cluster:          splitList(c.RedisCluster),
		Sentinel:         splitList(c.RedisSentinel),
		Master:           c.RedisMaster,
		Username:         c.RedisUsername,
		Password:         c.RedisPassword,
		SentinelPassword: c.RedisSentinelPassword,
		WaitReplicas:     c.RedisWaitReplicas,
		WaitTimeout:      c.RedisWaitTimeout,
	}
	if c.RedisWaitReplicas < 0 {
		return cfg, fmt.Errorf("--redis-wait-replicas must be 0 or more (got %d)", c.RedisWaitReplicas)
	}
	if c.RedisTLS || c.RedisTLSCA != "" {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.RedisTLSCA != "" {
			pem, err := os.ReadFile(c.RedisTLSCA)
			if err != nil {
				return cfg, fmt.Errorf("--redis-tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return cfg, fmt.Errorf("--redis-tls-ca: %s holds no PEM certificate", c.RedisTLSCA)
			}
			cfg.TLS.RootCAs = pool
		}
	}
	return cfg, nil
}

// open opens the configured store; changes (may be nil) hears of the
// writes made through it.
func (c StoreConfig) open(ctx context.Context, changes *store.ChangeHook) (store.Store, error) {
	if c.Retention < 1 {
		return nil, fmt.Errorf("--retention must be at least 1 (got %d)", c.Retention)
	}
	opts := store.Options{Retention: c.Retention, Changes: changes}
	if c.usesRedis() {
		cfg, err := c.redisConfig()
		if err != nil {
			return nil, err
		}
		return redisstore.Open(ctx, cfg, opts)
	}
	return embedded.Open(c.DataDir, opts)
}

func (c StoreConfig) describe() string {
	switch {
	case len(c.RedisCluster) > 0:
		return "redis-cluster"
	case len(c.RedisSentinel) > 0:
		return "redis-sentinel"
	case c.RedisURL != "":
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
