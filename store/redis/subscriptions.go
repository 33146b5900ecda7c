package redisstore

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// Subscriptions share the hash tag {subs}: a subscription and every index
// that lists it change in one script, also on Cluster.
//
//	fg:{subs}:data        hash   member -> JSON record
//	fg:{subs}:all         zset   every member
//	fg:{subs}:l:<login>   zset   the login's members
//	fg:{subs}:t:<topic>   zset   the topic's members
//	fg:{subs}:tracked     zset   topics with at least one subscription
//
// A member is the subscription's key (topic, callback, login) in an
// order-preserving encoding, so the sorted sets (all scores 0, ordered by
// bytes) list by topic, then callback, then login. Login and topic parts
// of key names are digests, which keeps names short and free of odd bytes.
const (
	subsData    = "fg:{subs}:data"
	subsAll     = "fg:{subs}:all"
	subsTracked = "fg:{subs}:tracked"
)

var (
	//go:embed sub_put.lua
	subPutLua string
	//go:embed sub_delete.lua
	subDeleteLua string
	//go:embed sub_list.lua
	subListLua string

	subPutScript    = redis.NewScript(subPutLua)
	subDeleteScript = redis.NewScript(subDeleteLua)
	subListScript   = redis.NewScript(subListLua)
)

func digest(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:16])
}

func loginIndex(login string) string { return "fg:{subs}:l:" + digest(login) }
func topicIndex(topic string) string { return "fg:{subs}:t:" + digest(topic) }

// appendPart appends one part of a member: 0x01, the bytes with 0x00
// escaped as 0x00 0xFF, then 0x00. Parts compare like the strings they
// hold, and a shorter string sorts before its extensions.
func appendPart(b *strings.Builder, s string) {
	b.WriteByte(0x01)
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			b.WriteString("\x00\xff")
			continue
		}
		b.WriteByte(s[i])
	}
	b.WriteByte(0x00)
}

// member is the sortable key of a subscription.
func member(login, topic, callback string) string {
	var b strings.Builder
	b.Grow(len(topic) + len(callback) + len(login) + 6)
	appendPart(&b, topic)
	appendPart(&b, callback)
	appendPart(&b, login)
	return b.String()
}

// topicPrefix is the member prefix shared by a topic's subscriptions.
func topicPrefix(topic string) string {
	var b strings.Builder
	appendPart(&b, topic)
	return b.String()
}

// PutSubscription implements store.Subscriptions.
func (s *Store) PutSubscription(ctx context.Context, sub store.Subscription) (bool, error) {
	rec, err := json.Marshal(sub)
	if err != nil {
		return false, fmt.Errorf("encode subscription of %q to %q: %w", sub.Login, sub.Topic, err)
	}
	keys := []string{subsData, subsAll, loginIndex(sub.Login), topicIndex(sub.Topic), subsTracked}
	n, err := subPutScript.Run(ctx, s.rdb, keys, member(sub.Login, sub.Topic, sub.Callback), rec, sub.Topic).Int64()
	if err != nil {
		return false, s.wrap("put subscription", err)
	}
	return n == 1, nil
}

// DeleteSubscription implements store.Subscriptions.
func (s *Store) DeleteSubscription(ctx context.Context, login, topic, callback string) (int, error) {
	keys := []string{subsData, subsAll, loginIndex(login), topicIndex(topic), subsTracked}
	n, err := subDeleteScript.Run(ctx, s.rdb, keys, member(login, topic, callback), topic).Int64()
	if err != nil {
		return 0, s.wrap("delete subscription", err)
	}
	if n < 0 {
		return 0, fmt.Errorf("subscription of %q to %q (callback %q): %w", login, topic, callback, store.ErrNotFound)
	}
	return int(n), nil
}

// ListSubscriptions implements store.Subscriptions.
func (s *Store) ListSubscriptions(ctx context.Context, login string, offset, limit int) ([]store.Subscription, int, error) {
	index := subsAll
	if login != "" {
		index = loginIndex(login)
	}
	offset = max(offset, 0)
	if limit <= 0 {
		// A page of nothing still reports the total.
		return s.listIndex(ctx, index, 1, 0)
	}
	return s.listIndex(ctx, index, int64(offset), int64(offset)+int64(limit)-1)
}

// TopicSubscriptions implements store.Subscriptions.
func (s *Store) TopicSubscriptions(ctx context.Context, topic string) ([]store.Subscription, error) {
	subs, _, err := s.listIndex(ctx, topicIndex(topic), 0, -1)
	return subs, err
}

func (s *Store) listIndex(ctx context.Context, index string, first, last int64) ([]store.Subscription, int, error) {
	res, err := subListScript.Run(ctx, s.rdb, []string{index, subsData}, first, last).Slice()
	if err != nil {
		return nil, 0, s.wrap("list subscriptions", err)
	}
	if len(res) == 0 {
		return nil, 0, errors.New("redis list subscriptions: empty answer from script")
	}
	total, _ := res[0].(int64)
	out := make([]store.Subscription, 0, len(res)-1)
	for _, r := range res[1:] {
		v, _ := r.(string)
		var sub store.Subscription
		if err := json.Unmarshal([]byte(v), &sub); err != nil {
			return nil, 0, fmt.Errorf("stored subscription is not valid JSON: %w", err)
		}
		out = append(out, sub)
	}
	return out, int(total), nil
}

// IsSubscribed implements store.Subscriptions.
func (s *Store) IsSubscribed(ctx context.Context, login, topic string) (bool, error) {
	p := topicPrefix(topic)
	// Every member of the topic starts with p followed by 0x01 (the
	// callback part), so [p, p+0x02) holds exactly them.
	n, err := s.rdb.ZLexCount(ctx, loginIndex(login), "["+p, "("+p+"\x02").Result()
	if err != nil {
		return false, s.wrap("is subscribed", err)
	}
	return n > 0, nil
}

// TrackedTopics implements store.Subscriptions.
func (s *Store) TrackedTopics(ctx context.Context) ([]string, error) {
	ts, err := s.rdb.ZRange(ctx, subsTracked, 0, -1).Result()
	if err != nil {
		return nil, s.wrap("tracked topics", err)
	}
	return ts, nil
}
