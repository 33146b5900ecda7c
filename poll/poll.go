// Package poll answers hub.mode=retrieve&wait=poll: a long-poll that
// answers at once when items follow the client's cursor (or, without one,
// when the topic has any), and otherwise holds the request until items
// arrive or the timeout passes, then answers with an empty items list.
//
// The wait registers with the node hub (package live) before
// the store is read, so an item stored between the read and the wait wakes
// the poll: repeating the call with the newest cursor seen loses nothing.
package poll

import (
	"context"
	"errors"
	"net/http"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// pollQueue is the queue of a held long-poll, which needs one
// notification.
const pollQueue = 8

// Service answers long-polls.
type Service struct {
	hub *live.Hub
	rs  *retrieve.Service
}

// New returns a Service waiting through hub and reading through rs.
func New(hub *live.Hub, rs *retrieve.Service) *Service {
	return &Service{hub: hub, rs: rs}
}

// watch is one held long-poll: a live connection of its user, counted and
// limited like a stream, and a consumer of its topic that takes one
// notification.
type watch struct {
	*live.Conn
	q chan *live.Notification
}

func (w *watch) Notify(n *live.Notification) {
	select {
	case w.q <- n:
	default:
		// Behind: the poll answers from the store instead.
		w.Drop(live.ReasonSlow)
	}
}

func (w *watch) Lost(string) { w.Drop(live.ReasonLost) }

// errClosed ends a wait whose connection was dropped.
var errClosed = errors.New("poll: watch closed")

// next waits for the next notification of the topic: ctx's error when ctx
// ends, errClosed when the connection is dropped.
func (w *watch) next(ctx context.Context) (*live.Notification, error) {
	select {
	case n := <-w.q:
		return n, nil
	default:
	}
	select {
	case n := <-w.q:
		return n, nil
	case <-w.Gone():
		return nil, errClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ServePoll answers a wait=poll retrieve whose topic the server already
// authorized.
func (s *Service) ServePoll(w http.ResponseWriter, r *http.Request, req retrieve.Request) {
	want := api.Want{JSON: req.Format != retrieve.Atom, Callback: req.Callback}
	ctx := r.Context()
	p := auth.FromContext(ctx)
	topic := req.Topics[0]
	q, err := s.rs.Query(ctx, topic, req)
	if err != nil {
		api.WriteError(w, want, err)
		return
	}
	conn, err := s.hub.Admit(p, live.KindPoll)
	if err != nil {
		api.WriteError(w, want, err)
		return
	}
	defer conn.Release()
	wt := &watch{Conn: conn, q: make(chan *live.Notification, pollQueue)}
	if err := s.hub.Subscribe(ctx, wt, topic); err != nil {
		if ctx.Err() == nil {
			api.WriteError(w, want, err)
		}
		return
	}
	defer s.hub.Unsubscribe(wt, topic)
	n, err := s.rs.Join(ctx, topic, q)
	if err != nil {
		api.WriteError(w, want, err)
		return
	}
	if len(n.Items) > 0 {
		retrieve.Render(w, req, n, s.rs.HubURL())
		return
	}

	// Nothing yet: wait. With after=X only items after X answer; without,
	// any new item does.
	hasAfter := q.From == store.After
	tctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	for {
		nt, err := wt.next(tctx)
		if err != nil {
			if ctx.Err() != nil {
				return // the client left
			}
			if r := conn.Reason(); r == live.ReasonRevoked || r == live.ReasonExpired {
				// The credential no longer holds: say so (401), as
				// streams do, rather than answer for it.
				api.WriteError(w, want, conn.Err())
				return
			}
			if errors.Is(err, errClosed) {
				// Dropped (the node shuts down, or notifications came
				// faster than read), not timed out: answer what the
				// store holds now.
				if fresh, err := s.rs.Load(ctx, topic, q); err == nil {
					retrieve.Render(w, req, fresh, s.rs.HubURL())
					return
				}
			}
			n.Items = nil
			retrieve.Render(w, req, n, s.rs.HubURL())
			return
		}
		items := nt.N.Items
		if hasAfter {
			k := 0
			for k < len(items) && items[k].Cursor > q.Cursor {
				k++
			}
			items = items[:k]
		}
		if len(items) == 0 {
			continue
		}
		oldest := items[len(items)-1].Cursor
		switch {
		case len(items) == len(nt.N.Items) && len(items) <= req.Count && (!hasAfter || oldest == q.Cursor+1):
			// Exactly the answer: write the shared encoding.
			writeNotice(w, req, nt)
		case !hasAfter:
			ans := nt.N
			ans.Items = items[:min(len(items), req.Count)]
			retrieve.Render(w, req, &ans, s.rs.HubURL())
		default:
			// The answer is the count items directly after the cursor:
			// read them.
			fresh, err := s.rs.Load(ctx, topic, q)
			if err != nil {
				api.WriteError(w, want, err)
				return
			}
			retrieve.Render(w, req, fresh, s.rs.HubURL())
		}
		return
	}
}

// writeNotice writes a live notification's shared encoding as the answer.
func writeNotice(w http.ResponseWriter, req retrieve.Request, nt *live.Notification) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	switch {
	case req.Format == retrieve.Atom:
		h.Set("Content-Type", retrieve.ContentTypeAtom)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(nt.Bytes(live.AtomDocument))
	case req.Callback != "":
		api.WriteJSONP(w, req.Callback, nt.JSON())
	default:
		h.Set("Content-Type", retrieve.ContentTypeJSON)
		w.WriteHeader(http.StatusOK)
		body := make([]byte, 0, len(nt.JSON())+1)
		_, _ = w.Write(append(append(body, nt.JSON()...), '\n'))
	}
}
