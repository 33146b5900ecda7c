package stream

import (
	"context"

	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/poll"
)

// Watch implements poll.Source: a held long-poll is a client of the
// broker, counted and limited like a stream, that takes one notification.
func (b *Broker) Watch(ctx context.Context, p *auth.Principal, topic string) (poll.Watch, error) {
	c, err := b.attach(p, kindPoll, pollQueue)
	if err != nil {
		return nil, err
	}
	if err := b.subscribe(ctx, c, topic); err != nil {
		b.detach(c)
		return nil, err
	}
	return &watch{c: c}, nil
}

type watch struct {
	c *client
}

func (w *watch) Next(ctx context.Context) (poll.Notice, error) {
	select {
	case ev := <-w.c.q:
		return ev, nil
	default:
	}
	select {
	case ev := <-w.c.q:
		return ev, nil
	case <-w.c.gone:
		return nil, poll.ErrClosed
	case <-w.c.b.closing:
		return nil, poll.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (w *watch) Close() { w.c.b.detach(w.c) }

// The poll.Notice view of an event.

func (ev *event) Notification() *feed.Notification { return &ev.n }
func (ev *event) JSON() []byte                     { return ev.jsonBytes() }
func (ev *event) Atom() []byte                     { return ev.atomDoc() }
