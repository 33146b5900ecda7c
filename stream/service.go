// Package stream serves the live forms of hub.mode=retrieve — wait=stream
// (NDJSON and Atom), Server-Sent Events and WebSocket — on top of the node
// hub (package live).
//
// Every client joins gap-free: it subscribes to its topics through the hub
// (from then on live notifications queue up for it), reads history from
// the store, sends it, then sends the queued notifications whose items
// follow the last one sent. As a topic's cursors grow by one per item, a
// skipped cursor is noticed and read from the store.
package stream

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/retrieve"
)

// Service answers the live forms of retrieve. It implements the stream
// side of server's live interface: ServeStream.
type Service struct {
	hub  *live.Hub
	rs   *retrieve.Service
	opts Options
	log  *slog.Logger
	m    *metrics

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	swept  chan struct{} // closed when the sweeper has stopped

	sessions sessions
	// clock is a coarse UnixNano clock, moved on by the sweeper, that
	// sessions time their writes with.
	clock     atomic.Int64
	close     closeWatcher
	nextShard atomic.Uint32
}

// New returns a Service delivering through hub, reading first answers and
// authorizing through rs. Stop it with Close (after the hub's Shutdown has
// told clients to reconnect).
func New(hub *live.Hub, rs *retrieve.Service, opts Options) (*Service, error) {
	if hub == nil || rs == nil {
		return nil, errors.New("stream: New needs a hub and a retrieve service")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		hub:    hub,
		rs:     rs,
		opts:   opts,
		log:    opts.Logger,
		m:      newMetrics(opts.Registry),
		ctx:    ctx,
		cancel: cancel,
		swept:  make(chan struct{}),
	}
	s.clock.Store(time.Now().UnixNano())
	go func() {
		defer close(s.swept)
		s.sweep(ctx)
	}()
	return s, nil
}

// Close ends the connections the service still serves (after the hub's
// Shutdown they have been told to reconnect).
func (s *Service) Close() error {
	s.cancel()
	<-s.swept
	for _, sess := range s.sessions.snapshot(nil) {
		sess.wake(0)
	}
	s.close.stop()
	return nil
}

// attach admits a new client of kind k for principal p.
func (s *Service) attach(p *auth.Principal, k live.Kind) (*client, error) {
	conn, err := s.hub.Admit(p, k)
	if err != nil {
		return nil, err
	}
	return newClient(s, conn, s.opts.ClientQueue), nil
}

// detach unsubscribes c from everything and releases its connection.
func (s *Service) detach(c *client) {
	if len(c.topics) > 0 {
		names := make([]string, 0, len(c.topics))
		for n := range c.topics {
			names = append(names, n)
		}
		s.hub.Unsubscribe(c, names...)
		clear(c.topics)
	}
	c.Release()
}

// subscribe registers c for names with the hub and waits until their live
// subscription is in place: from then on c gets every notification.
func (s *Service) subscribe(ctx context.Context, c *client, names ...string) error {
	var fresh []string
	for _, n := range names {
		if _, ok := c.topics[n]; !ok {
			fresh = append(fresh, n)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if err := s.hub.Subscribe(ctx, c, fresh...); err != nil {
		return err
	}
	if c.topics == nil {
		c.topics = make(map[string]struct{}, len(fresh))
	}
	for _, n := range fresh {
		c.topics[n] = struct{}{}
	}
	return nil
}

// unsubscribe stops delivering names to c.
func (s *Service) unsubscribe(c *client, names ...string) {
	s.hub.Unsubscribe(c, names...)
	for _, n := range names {
		delete(c.topics, n)
	}
}

// jitterDuration returns a random duration in [0, d].
func jitterDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}
