package stream

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultKeepalive      = 20 * time.Second
	DefaultClientQueue    = 256
	DefaultWriteTimeout   = 10 * time.Second
	DefaultRetry          = 3 * time.Second
	DefaultMaxMessageSize = 16 << 10
)

// Options tune a Service. The zero value is usable: every field has a
// default. Per-user connection limits and topic subscriptions are the
// hub's (live.Options).
type Options struct {
	// Keepalive is how long a stream may stay silent before a keep-alive
	// (blank NDJSON line, SSE comment, Atom whitespace, WebSocket ping) is
	// sent. Default 20 s.
	Keepalive time.Duration
	// ClientQueue bounds the notifications waiting for one client. A client
	// whose queue is full is disconnected: it resumes by cursor and never
	// slows the others. Default 256.
	ClientQueue int
	// WriteTimeout bounds every write and flush to a client. Default 10 s.
	WriteTimeout time.Duration
	// MaxLifetime ends a stream after this long (minus up to 10% of random
	// jitter, so that clients do not all come back at once), telling it to
	// reconnect. 0 keeps streams open for as long as they live.
	MaxLifetime time.Duration
	// AllowedOrigins lists the Origin values a WebSocket may come from,
	// besides the gateway's own origin ("*" allows any). Clients that send
	// no Origin (not browsers) are always allowed.
	AllowedOrigins []string
	// MaxMessageSize bounds a WebSocket client message. Default 16 KiB.
	MaxMessageSize int64
	// Retry is the reconnection delay announced to EventSource clients
	// (retry:). Default 3 s.
	Retry time.Duration
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// Registry receives the metrics (none when nil).
	Registry prometheus.Registerer
}

func (o Options) withDefaults() (Options, error) {
	if o.Keepalive == 0 {
		o.Keepalive = DefaultKeepalive
	}
	if o.ClientQueue == 0 {
		o.ClientQueue = DefaultClientQueue
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Retry == 0 {
		o.Retry = DefaultRetry
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Keepalive < 0:
		return o, fmt.Errorf("stream: Keepalive must be positive (got %v)", o.Keepalive)
	case o.ClientQueue < 1:
		return o, fmt.Errorf("stream: ClientQueue must be at least 1 (got %d)", o.ClientQueue)
	case o.WriteTimeout < 0:
		return o, fmt.Errorf("stream: WriteTimeout must be positive (got %v)", o.WriteTimeout)
	case o.MaxLifetime < 0:
		return o, fmt.Errorf("stream: MaxLifetime must be 0 (off) or positive (got %v)", o.MaxLifetime)
	case o.MaxMessageSize < 256:
		return o, fmt.Errorf("stream: MaxMessageSize must be at least 256 bytes (got %d)", o.MaxMessageSize)
	case o.Retry < 0:
		return o, fmt.Errorf("stream: Retry must be positive (got %v)", o.Retry)
	}
	return o, nil
}
