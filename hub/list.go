package hub

import (
	"context"
	"strconv"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/store"
)

// MaxPerPage bounds by_page.
const MaxPerPage = 500

// ListRequest is a parsed hub.mode=list.
type ListRequest struct {
	Page, PerPage int
}

// ParseList reads page and by_page.
func ParseList(p api.Params) (ListRequest, error) {
	req := ListRequest{Page: 1, PerPage: 20}
	if v := p.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			return req, api.Invalid("page must be a whole number from 1")
		}
		req.Page = n
	}
	if v := p.Get("by_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPerPage {
			return req, api.Invalid("by_page must be a whole number from 1 to %d", MaxPerPage)
		}
		req.PerPage = n
	}
	return req, nil
}

// Listed is one entry of a list answer (Superfeedr's schema).
type Listed struct {
	Subscription ListedSubscription `json:"subscription"`
}

// ListedSubscription describes a subscription without its secret.
type ListedSubscription struct {
	Format    string     `json:"format"`
	Endpoint  string     `json:"endpoint"`
	Feed      ListedFeed `json:"feed"`
	CreatedAt int64      `json:"createdAt"`
	ExpiresAt int64      `json:"expiresAt"`
}

// ListedFeed names a subscription's topic.
type ListedFeed struct {
	Title string `json:"title"`
	URL   string `json:"url"`
}

// List returns a page of the principal's subscriptions (everyone's for admin).
func (s *Service) List(ctx context.Context, p *auth.Principal, req ListRequest) ([]Listed, error) {
	if err := auth.Require(p, store.RightList); err != nil {
		return nil, err
	}
	login := p.Login
	if p.Admin() {
		login = ""
	}
	subs, _, err := s.store.ListSubscriptions(ctx, login, (req.Page-1)*req.PerPage, req.PerPage)
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(subs))
	titles := map[string]string{}
	for _, sub := range subs {
		title, ok := titles[sub.Topic]
		if !ok {
			ts, err := s.store.Topic(ctx, sub.Topic)
			if err != nil {
				return nil, err
			}
			title = ts.Meta.Title
			titles[sub.Topic] = title
		}
		l := ListedSubscription{
			Format:    sub.Format,
			Endpoint:  sub.Callback,
			Feed:      ListedFeed{Title: title, URL: sub.Topic},
			CreatedAt: sub.CreatedAt.Unix(),
		}
		if !sub.ExpiresAt.IsZero() {
			l.ExpiresAt = sub.ExpiresAt.Unix()
		}
		out = append(out, Listed{Subscription: l})
	}
	return out, nil
}
