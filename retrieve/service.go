package retrieve

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// Service reads items for retrieve and for the first answer of every
// streaming form.
type Service struct {
	store  store.Store
	hubURL string
	limits Limits
	cache  *Cache
	access *access // nil: every check asks the store
}

// Options configure a Service.
type Options struct {
	// HubURL is the gateway's public hub endpoint, announced as rel="hub"
	// in Atom.
	HubURL string
	// Limits bound what requests may ask for (defaults when zero).
	Limits Limits
	// Cache, when set, answers reads of the newest items.
	Cache *Cache
	// AccessTTL, when positive, is how long the node keeps a positive
	// answer of the store to "may this user read this topic" (a
	// subscription, or for a scoped token a subscriber of the topic).
	// Subscriptions deleted through this node stop allowing at once,
	// through Changes; ones deleted on another node within AccessTTL. It
	// takes effect only with Changes; at most auth.MaxCacheTTL.
	AccessTTL time.Duration
	// Changes hears of this node's own store writes (the one given to the
	// store's Options).
	Changes *store.ChangeHook
}

// New returns a Service reading st.
func New(st store.Store, opts Options) *Service {
	s := &Service{store: st, hubURL: opts.HubURL, limits: opts.Limits.withDefaults(), cache: opts.Cache}
	if opts.AccessTTL > 0 && opts.Changes != nil {
		s.access = newAccess(min(opts.AccessTTL, auth.MaxCacheTTL))
		opts.Changes.OnUnsubscribe(func(string, string) { s.access.forget() })
	}
	return s
}

// Limits returns the limits requests are parsed with.
func (s *Service) Limits() Limits { return s.limits }

// HubURL returns the public hub endpoint.
func (s *Service) HubURL() string { return s.hubURL }

// Authorize checks that p may read topic: the retrieve right, a scope that
// covers it, and (unless admin) a subscription to it — 404 otherwise, so a
// user cannot tell which topics others follow.
func (s *Service) Authorize(ctx context.Context, p *auth.Principal, topic string) error {
	if err := auth.Require(p, store.RightRetrieve); err != nil {
		return err
	}
	if err := auth.RequireTopic(p, topic); err != nil {
		return err
	}
	if p.Admin() {
		return nil
	}
	ok, err := s.subscribed(ctx, p.Login, topic)
	if err != nil {
		return err
	}
	if !ok && p.Scoped() {
		// A token scoped to topics is an admin's explicit grant (the
		// read-only token a web page embeds): it reads the topics of its
		// scope that someone keeps tracked, without a subscription of its own.
		ok, err = s.subscribed(ctx, "", topic)
		if err != nil {
			return err
		}
	}
	if !ok {
		return notSubscribed(p, topic)
	}
	return nil
}

// subscribed reports whether login has a subscription to topic, or with
// login "" whether anybody has.
func (s *Service) subscribed(ctx context.Context, login, topic string) (bool, error) {
	var gen uint64
	if s.access != nil {
		if s.access.allows(login, topic) {
			return true, nil
		}
		gen = s.access.generation()
	}
	var ok bool
	var err error
	if login == "" {
		var subs []store.Subscription
		subs, err = s.store.TopicSubscriptions(ctx, topic)
		ok = len(subs) > 0
	} else {
		ok, err = s.store.IsSubscribed(ctx, login, topic)
	}
	if ok && err == nil && s.access != nil {
		s.access.keep(login, topic, gen)
	}
	return ok, err
}

// Query turns the request's after/before into a store query for topic;
// an entry id resolves to the newest item with that id.
func (s *Service) Query(ctx context.Context, topic string, req Request) (store.Query, error) {
	q := store.Query{From: store.Newest, Count: req.Count}
	raw := req.After
	switch {
	case req.After != "":
		q.From = store.After
	case req.Before != "":
		q.From, raw = store.Before, req.Before
	default:
		return q, nil
	}
	c, err := s.ResolveCursor(ctx, topic, raw)
	if err != nil {
		return q, err
	}
	q.Cursor = c
	return q, nil
}

// ResolveCursor reads a cursor, or the cursor of the newest item with that
// entry id.
func (s *Service) ResolveCursor(ctx context.Context, topic, raw string) (feed.Cursor, error) {
	if c, ok := feed.ParseCursor(raw); ok {
		return c, nil
	}
	c, err := s.store.CursorOf(ctx, topic, raw)
	if errors.Is(err, store.ErrNotFound) {
		return 0, api.Invalid("%q is neither a cursor nor the id of an entry of %s; use the cursor of the last item you received", truncate(raw), topic)
	}
	return c, err
}

// Load reads a page of topic from the store and returns it as a
// notification with the topic's status (newest cursor, gap).
func (s *Service) Load(ctx context.Context, topic string, q store.Query) (*feed.Notification, error) {
	page, err := s.store.Read(ctx, topic, q)
	if err != nil {
		return nil, err
	}
	return Notification(topic, page), nil
}

// Join is Load for the first answer of a live form, read once the caller
// has subscribed to topic through the node hub: the newest items may come
// from the cache. That loses nothing, because the cache is a consumer of the
// same hub topic: an item the page it holds lacks has an announcement not
// yet fanned out (which reaches the caller too, as it is subscribed), or
// one fanned out before the caller subscribed (which dropped the page, so
// the store is read). The same holds for the items after a recent cursor,
// when the page held reaches back to it; other pages read the store.
func (s *Service) Join(ctx context.Context, topic string, q store.Query) (*feed.Notification, error) {
	switch {
	case q.From == store.Newest:
		return s.Retrieve(ctx, topic, q)
	case q.From == store.After && s.cache != nil:
		// A client resuming from a recent cursor (a reconnection, a
		// restart's storm of them): the items after it are in the page
		// held.
		if page, ok := s.cache.after(topic, q.Cursor, q.Count); ok {
			return Notification(topic, page), nil
		}
		if s.cache.hold(ctx, topic) {
			if page, ok := s.cache.after(topic, q.Cursor, q.Count); ok {
				return Notification(topic, page), nil
			}
		}
	}
	return s.Load(ctx, topic, q)
}

// Retrieve is Load for a one-shot retrieve answer: the newest items may
// come from the node's cache (see Cache), where other nodes' appends show
// after the live notification delay and this node's own at once.
func (s *Service) Retrieve(ctx context.Context, topic string, q store.Query) (*feed.Notification, error) {
	if s.cache == nil {
		return s.Load(ctx, topic, q)
	}
	page, err := s.cache.Read(ctx, topic, q)
	if err != nil {
		return nil, err
	}
	return Notification(topic, page), nil
}

// Serve writes the answer of a one-shot retrieve of topic (q from Query):
// JSON, JSONP or Atom as req asks. The newest items of a hot topic are
// answered from the node's cache, encoded once and shared by every request
// that asks the same form and count.
func (s *Service) Serve(ctx context.Context, w http.ResponseWriter, req Request, topic string, q store.Query) error {
	if s.cache != nil && q.From == store.Newest && (req.Format == JSON || req.Format == Atom) {
		body, ok := s.cache.answer(topic, q.Count, req.Format, func(p store.Page) []byte {
			n := Notification(topic, p)
			if req.Format == Atom {
				return feed.AppendAtom(nil, n, topic, s.hubURL)
			}
			return append(feed.AppendJSON(nil, n), '\n')
		})
		if ok {
			writeAnswer(w, req, body)
			return nil
		}
	}
	n, err := s.Retrieve(ctx, topic, q)
	if err != nil {
		return err
	}
	Render(w, req, n, s.hubURL)
	return nil
}

// Notification builds the answer for a page read from the store.
func Notification(topic string, page store.Page) *feed.Notification {
	st := page.Topic.Status
	st.Feed = topic
	st.Title = page.Topic.Meta.Title
	st.Cursor = page.Last
	st.Gap = page.Gap
	return &feed.Notification{Status: st, Meta: page.Topic.Meta, Items: page.Items}
}

func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

// notSubscribed is the 404 of a topic the principal may not read for want
// of a subscription, with the way out its token allows.
func notSubscribed(p *auth.Principal, topic string) error {
	switch {
	case p.Can(store.RightSubscribe) && p.Scoped():
		return api.Errorf(http.StatusNotFound, "nobody keeps %s subscribed: subscribe to it first (hub.mode=subscribe)", topic)
	case p.Can(store.RightSubscribe):
		return api.Errorf(http.StatusNotFound, "you have no subscription to %s: subscribe to it first (hub.mode=subscribe)", topic)
	case p.Scoped():
		return api.Errorf(http.StatusNotFound, "nobody keeps %s subscribed, and your token cannot subscribe: a user with the subscribe right must subscribe to it (a token scoped to a topic reads it once anyone has)", topic)
	}
	return api.Errorf(http.StatusNotFound, "you have no subscription to %s, and your token cannot subscribe: use a token with the subscribe right, or one scoped to the topic (gateway user add --topics), which reads it once anyone has subscribed", topic)
}
