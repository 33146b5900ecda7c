package hub

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/retrieve"
	"github.com/feedgate/feedgate/store"
)

// MaxPerPage bounds by_page.
const MaxPerPage = 500

// ListRequest is a parsed hub.mode=list.
type ListRequest struct {
	Page, PerPage int
	// Callback, when set, keeps the subscriptions whose callback matches it
	// (retrieve.MatchCallback: % matches any run of characters).
	Callback string
}

// ParseList reads page, by_page and the optional hub.callback filter.
func ParseList(p api.Params) (ListRequest, error) {
	req := ListRequest{Page: 1, PerPage: 20, Callback: p.Get("hub.callback")}
	if len(req.Callback) > api.MaxTopicLength {
		return req, api.Invalid("hub.callback is longer than %d bytes", api.MaxTopicLength)
	}
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

// ListedSubscription describes a subscription without its secret. Delivery
// is present for subscriptions with a callback.
type ListedSubscription struct {
	Format    string          `json:"format"`
	Endpoint  string          `json:"endpoint"`
	Feed      ListedFeed      `json:"feed"`
	CreatedAt int64           `json:"createdAt"`
	ExpiresAt int64           `json:"expiresAt"`
	Delivery  *DeliveryHealth `json:"delivery,omitempty"`
}

// ListedFeed names a subscription's topic.
type ListedFeed struct {
	Title string `json:"title"`
	URL   string `json:"url"`
}

// DeliveryHealth is how deliveries to a callback are going. Dates are Unix
// seconds (0: never).
type DeliveryHealth struct {
	// Pending is the number of the topic's items not yet delivered.
	Pending int64 `json:"pending"`
	// Cursor is the cursor of the last item delivered (or given up on).
	Cursor      string `json:"cursor,omitempty"`
	LastSuccess int64  `json:"lastSuccess"`
	LastError   string `json:"lastError,omitempty"`
	LastErrorAt int64  `json:"lastErrorAt,omitempty"`
	// FailedAttempts counts failed attempts at the pending items since
	// FailingSince.
	FailedAttempts int   `json:"failedAttempts"`
	FailingSince   int64 `json:"failingSince,omitempty"`
	// Delivered counts items delivered, Posts the POSTs answered 2xx,
	// Failures the failed ones.
	Delivered int64 `json:"delivered"`
	Posts     int64 `json:"posts"`
	Failures  int64 `json:"failures"`
	// Dropped counts items given up on after the retry bounds; Gaps the
	// times, and Trimmed the items, lost because they were trimmed from the
	// topic before the callback took them.
	Dropped      int64 `json:"dropped"`
	Gaps         int64 `json:"gaps"`
	Trimmed      int64 `json:"trimmed"`
	Redeliveries int64 `json:"redeliveries,omitempty"`
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func health(d store.Delivery, last feed.Cursor) *DeliveryHealth {
	p := d.Progress
	h := &DeliveryHealth{
		LastSuccess:    unixOrZero(p.LastSuccess),
		LastError:      p.LastError,
		LastErrorAt:    unixOrZero(p.LastErrorAt),
		FailedAttempts: p.Attempts,
		FailingSince:   unixOrZero(p.FailingSince),
		Delivered:      p.Items,
		Posts:          p.Succeeded,
		Failures:       p.Failed,
		Dropped:        p.Dropped,
		Gaps:           p.Gaps,
		Trimmed:        p.Trimmed,
		Redeliveries:   p.Redeliveries,
	}
	if p.Delivered > 0 {
		h.Cursor = p.Delivered.String()
	}
	if last > p.Delivered {
		h.Pending = int64(last - p.Delivered)
	}
	return h
}

type topicInfo struct {
	title string
	last  feed.Cursor
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
	subs, err := s.listPage(ctx, login, req)
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(subs))
	topics := map[string]topicInfo{}
	for _, sub := range subs {
		ti, ok := topics[sub.Topic]
		if !ok {
			page, err := s.store.Read(ctx, sub.Topic, store.Query{From: store.Newest, Count: 0})
			if err != nil {
				return nil, err
			}
			ti = topicInfo{title: page.Topic.Meta.Title, last: page.Last}
			topics[sub.Topic] = ti
		}
		l := ListedSubscription{
			Format:    sub.Format,
			Endpoint:  sub.Callback,
			Feed:      ListedFeed{Title: ti.title, URL: sub.Topic},
			CreatedAt: sub.CreatedAt.Unix(),
			ExpiresAt: unixOrZero(sub.ExpiresAt),
		}
		if sub.Callback != "" && s.dlv != nil {
			d, err := s.dlv.Delivery(ctx, store.DeliveryKey{Login: sub.Login, Topic: sub.Topic, Callback: sub.Callback})
			switch {
			case err == nil:
				l.Delivery = health(d, ti.last)
				l.ExpiresAt = unixOrZero(d.ExpiresAt)
			case !isNotFound(err):
				return nil, err
			}
		}
		out = append(out, Listed{Subscription: l})
	}
	return out, nil
}

// listPage reads the requested page of login's subscriptions; with a
// callback filter it reads them all in store pages and cuts the page from
// the matching ones.
func (s *Service) listPage(ctx context.Context, login string, req ListRequest) ([]store.Subscription, error) {
	skip := (req.Page - 1) * req.PerPage
	if req.Callback == "" {
		subs, _, err := s.store.ListSubscriptions(ctx, login, skip, req.PerPage)
		return subs, err
	}
	var out []store.Subscription
	for offset := 0; len(out) < req.PerPage; offset += listBatch {
		subs, total, err := s.store.ListSubscriptions(ctx, login, offset, listBatch)
		if err != nil {
			return nil, err
		}
		for _, sub := range subs {
			if sub.Callback == "" || !retrieve.MatchCallback(req.Callback, sub.Callback) {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			if out = append(out, sub); len(out) == req.PerPage {
				break
			}
		}
		if len(subs) == 0 || offset+len(subs) >= total {
			break
		}
	}
	return out, nil
}

// listBatch is how many subscriptions a filtered list reads from the store at once.
const listBatch = 500

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
