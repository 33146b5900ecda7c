// Package poll answers hub.mode=retrieve&wait=poll: a long-poll that
// answers at once when items follow the client's cursor (or, without one,
// when the topic has any), and otherwise holds the request until items
// arrive or the timeout passes, then answers with an empty items list.
//
// The wait registers with the node's live fan-out (package stream) before
// the store is read, so an item stored between the read and the wait wakes
// the poll: repeating the call with the newest cursor seen loses nothing.
package poll

import (
	"context"
	"errors"
	"net/http"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// ErrClosed is returned by Watch.Next when the watch ends before a
// notification arrives: the node shuts down or the watch was dropped.
var ErrClosed = errors.New("poll: watch closed")

// Source is the node's live fan-out (package stream's Broker).
type Source interface {
	// Watch registers for the topic's new items on behalf of p. Every item
	// appended after Watch returns is announced through the watch, so a
	// caller that reads the store after Watch cannot miss one. Refusals
	// are *api.Error (429 per-user limit, 503 shutting down).
	Watch(ctx context.Context, p *auth.Principal, topic string) (Watch, error)
}

// Watch is one held long-poll's registration.
type Watch interface {
	// Next waits for the next live notification of the topic. It returns
	// ctx's error when ctx ends and ErrClosed when the watch ends.
	Next(ctx context.Context) (Notice, error)
	// Close releases the watch.
	Close()
}

// Notice is one live notification, encoded once per format and shared by
// every client that receives it.
type Notice interface {
	// Notification is the notification: the topic's status and the new
	// items, newest first. It must not be modified.
	Notification() *feed.Notification
	// JSON is the notification's JSON object.
	JSON() []byte
	// Atom is the notification as an Atom document.
	Atom() []byte
}

// Service answers long-polls.
type Service struct {
	src Source
	rs  *retrieve.Service
}

// New returns a Service waiting through src and reading through rs.
func New(src Source, rs *retrieve.Service) *Service {
	return &Service{src: src, rs: rs}
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
	wt, err := s.src.Watch(ctx, p, topic)
	if err != nil {
		if ctx.Err() == nil {
			api.WriteError(w, want, err)
		}
		return
	}
	defer wt.Close()
	n, err := s.rs.Load(ctx, topic, q)
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
		nt, err := wt.Next(tctx)
		if err != nil {
			if ctx.Err() != nil {
				return // the client left
			}
			if errors.Is(err, ErrClosed) && hasAfter {
				// Dropped, not timed out: answer what the store holds now.
				if fresh, err := s.rs.Load(ctx, topic, q); err == nil {
					n = fresh
				}
			}
			n.Items = nil
			retrieve.Render(w, req, n, s.rs.HubURL())
			return
		}
		live := nt.Notification()
		items := live.Items
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
		case len(items) == len(live.Items) && len(items) <= req.Count && (!hasAfter || oldest == q.Cursor+1):
			// Exactly the answer: write the shared encoding.
			writeNotice(w, req, nt)
		case !hasAfter:
			ans := *live
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
func writeNotice(w http.ResponseWriter, req retrieve.Request, nt Notice) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	switch {
	case req.Format == retrieve.Atom:
		h.Set("Content-Type", retrieve.ContentTypeAtom)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(nt.Atom())
	case req.Callback != "":
		api.WriteJSONP(w, req.Callback, nt.JSON())
	default:
		h.Set("Content-Type", retrieve.ContentTypeJSON)
		w.WriteHeader(http.StatusOK)
		body := make([]byte, 0, len(nt.JSON())+1)
		_, _ = w.Write(append(append(body, nt.JSON()...), '\n'))
	}
}
