package retrieve

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

// MaxCallbackTopics bounds the topics one retrieve by hub.callback reads.
const MaxCallbackTopics = 200

// listPage is how many subscriptions are read from the store at once.
const listPage = 500

// MatchCallback reports whether callback matches pattern, in which each %
// stands for any run of characters (none included) and everything else for
// itself. A callback always matches itself, % or not.
func MatchCallback(pattern, callback string) bool {
	parts := strings.Split(pattern, "%")
	if len(parts) == 1 {
		return pattern == callback
	}
	first, last := parts[0], parts[len(parts)-1]
	if len(callback) < len(first)+len(last) || !strings.HasPrefix(callback, first) || !strings.HasSuffix(callback, last) {
		return false
	}
	rest := callback[len(first) : len(callback)-len(last)]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, mid)
		if i < 0 {
			return false
		}
		rest = rest[i+len(mid):]
	}
	return true
}

// CallbackTopics returns the topics the principal subscribed with a
// callback matching pattern (every user's for admin), that its token may
// read, in topic order.
func (s *Service) CallbackTopics(ctx context.Context, p *auth.Principal, pattern string) ([]string, error) {
	if err := auth.Require(p, store.RightRetrieve); err != nil {
		return nil, err
	}
	login := p.Login
	if p.Admin() {
		login = ""
	}
	var topics []string
	for offset := 0; ; offset += listPage {
		subs, total, err := s.store.ListSubscriptions(ctx, login, offset, listPage)
		if err != nil {
			return nil, err
		}
		for _, sub := range subs {
			if sub.Callback == "" || !MatchCallback(pattern, sub.Callback) || !p.Allows(sub.Topic) ||
				(len(topics) > 0 && topics[len(topics)-1] == sub.Topic) {
				continue
			}
			topics = append(topics, sub.Topic)
			if len(topics) > MaxCallbackTopics {
				return nil, api.Invalid("more than %d topics are subscribed with a callback matching %q; narrow hub.callback", MaxCallbackTopics, pattern)
			}
		}
		if len(subs) == 0 || offset+len(subs) >= total {
			break
		}
	}
	if len(topics) == 0 {
		return nil, api.Errorf(http.StatusNotFound, "you have no subscription with a callback matching %q (%% matches any run of characters; hub.mode=list shows your callbacks)", pattern)
	}
	return topics, nil
}

// RetrieveByCallback answers hub.mode=retrieve with hub.callback: the
// newest count items across the topics of CallbackTopics, newest first by
// their dates (items of different topics have no common cursor order), each
// naming its topic (Item.Source).
func (s *Service) RetrieveByCallback(ctx context.Context, p *auth.Principal, pattern string, count int) (*feed.Notification, error) {
	topics, err := s.CallbackTopics(ctx, p, pattern)
	if err != nil {
		return nil, err
	}
	type dated struct {
		item  feed.Item
		date  int64
		topic int
	}
	var all []dated
	for i, topic := range topics {
		page, err := s.store.Read(ctx, topic, store.Query{From: store.Newest, Count: count})
		if err != nil {
			return nil, err
		}
		src := &feed.Source{Feed: topic, Title: page.Topic.Meta.Title}
		for _, it := range page.Items {
			it.Source = src
			all = append(all, dated{item: it, date: max(it.Published, it.Updated), topic: i})
		}
	}
	slices.SortStableFunc(all, func(a, b dated) int {
		if c := cmp.Compare(b.date, a.date); c != 0 {
			return c
		}
		if c := cmp.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		return cmp.Compare(b.item.Cursor, a.item.Cursor)
	})
	all = all[:min(len(all), count)]
	n := &feed.Notification{Items: make([]feed.Item, len(all))}
	for i, d := range all {
		n.Items[i] = d.item
	}
	sum := sha256.Sum256([]byte(pattern))
	n.Meta.ID = "urn:feedgate:callback:" + hex.EncodeToString(sum[:16])
	n.Meta.Title = fmt.Sprintf("Topics subscribed with %s", pattern)
	n.Status.Code = http.StatusOK
	n.Status.HTTP = fmt.Sprintf("the newest items of %d topics subscribed with a callback matching %s", len(topics), pattern)
	return n, nil
}
