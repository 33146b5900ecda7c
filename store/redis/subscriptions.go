package redisstore

import (
	"cmp"
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// Subscriptions live in 16 buckets, a topic's in the bucket of the topic
// (hash tag {subs:<b>}), so that a subscription, its topic's index and the
// set of tracked topics change together in one script, also on Cluster,
// while the subscriptions of many topics spread over 16 slots:
//
//	fg:{subs:<b>}:data        hash   member -> JSON record
//	fg:{subs:<b>}:all         zset   every member of the bucket
//	fg:{subs:<b>}:t:<topic>   zset   the topic's members
//	fg:{subs:<b>}:tracked     zset   the bucket's topics with a subscription
//	fg:{l:<login>}:subs       zset   the login's members
//
// A member is the subscription's key (topic, callback, login) in an
// order-preserving encoding, so the sorted sets (all scores 0, ordered by
// bytes) list by topic, then callback, then login; lists over every bucket
// are merged. Login and topic parts of key names are digests, which keeps
// names short and free of odd bytes.
//
// A login's index is under the login's own hash tag (on another slot than
// the bucket), so it is written after the bucket's script and checked
// against the record afterwards: whichever of a racing put and delete of
// the same subscription ends last leaves the index as the record is.

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

// subsKeys are the keys of a bucket of subscriptions.
type subsKeys struct{ data, all, tracked, tag string }

func (s *Store) subsBucket(b int) subsKeys {
	tag := s.prefix + ":{subs:" + strconv.Itoa(b) + "}:"
	return subsKeys{data: tag + "data", all: tag + "all", tracked: tag + "tracked", tag: tag}
}

func (k subsKeys) topic(topic string) string { return k.tag + "t:" + digest(topic) }

func (s *Store) loginIndex(login string) string {
	return s.prefix + ":{l:" + digest(login) + "}:subs"
}

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

// memberTopic reads the topic back from a member.
func memberTopic(m string) (string, bool) {
	if len(m) == 0 || m[0] != 0x01 {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(m); i++ {
		switch {
		case m[i] != 0:
			b.WriteByte(m[i])
		case i+1 < len(m) && m[i+1] == 0xff:
			b.WriteByte(0)
			i++
		default:
			return b.String(), true
		}
	}
	return "", false
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
	k := s.subsBucket(bucketOf(sub.Topic))
	m := member(sub.Login, sub.Topic, sub.Callback)
	keys := []string{k.data, k.all, k.topic(sub.Topic), k.tracked}
	n, err := s.durable(ctx, keys[0], subPutScript, keys, m, rec, sub.Topic).Int64()
	if err != nil {
		return false, s.wrap("put subscription", err)
	}
	if err := s.rdb.ZAdd(ctx, s.loginIndex(sub.Login), redis.Z{Member: m}).Err(); err != nil {
		return false, s.wrap("put subscription", err)
	}
	return n == 1, s.settleLoginIndex(ctx, k, sub.Login, m)
}

// settleLoginIndex makes the login's index agree with the record as it is
// now (see the comment at the top).
func (s *Store) settleLoginIndex(ctx context.Context, k subsKeys, login, m string) error {
	exists, err := s.rdb.HExists(ctx, k.data, m).Result()
	if err != nil {
		return s.wrap("index subscription", err)
	}
	if exists {
		err = s.rdb.ZAdd(ctx, s.loginIndex(login), redis.Z{Member: m}).Err()
	} else {
		err = s.rdb.ZRem(ctx, s.loginIndex(login), m).Err()
	}
	return s.wrap("index subscription", err)
}

// DeleteSubscription implements store.Subscriptions.
func (s *Store) DeleteSubscription(ctx context.Context, login, topic, callback string) (int, error) {
	// Whatever the outcome (a timeout may follow a deletion), the node's
	// caches forget what they knew of the subscription.
	defer s.changes.Unsubscribed(login, topic)
	k := s.subsBucket(bucketOf(topic))
	m := member(login, topic, callback)
	n, err := subDeleteScript.Run(ctx, s.rdb, []string{k.data, k.all, k.topic(topic), k.tracked}, m, topic).Int64()
	if err != nil {
		return 0, s.wrap("delete subscription", err)
	}
	if err := s.rdb.ZRem(ctx, s.loginIndex(login), m).Err(); err != nil {
		return 0, s.wrap("delete subscription", err)
	}
	if err := s.settleLoginIndex(ctx, k, login, m); err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("subscription of %q to %q (callback %q): %w", login, topic, callback, store.ErrNotFound)
	}
	return int(n), nil
}

// ListSubscriptions implements store.Subscriptions.
func (s *Store) ListSubscriptions(ctx context.Context, login string, offset, limit int) ([]store.Subscription, int, error) {
	offset = max(offset, 0)
	var members []string
	var total int64
	if login != "" {
		pipe := s.rdb.Pipeline()
		card := pipe.ZCard(ctx, s.loginIndex(login))
		var rng *redis.StringSliceCmd
		if limit > 0 {
			rng = pipe.ZRange(ctx, s.loginIndex(login), int64(offset), int64(offset)+int64(limit)-1)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, 0, s.wrap("list subscriptions", err)
		}
		total = card.Val()
		if rng != nil {
			members = rng.Val()
		}
	} else {
		// Every bucket's first offset+limit members, merged.
		pipe := s.rdb.Pipeline()
		cards := make([]*redis.IntCmd, buckets)
		rngs := make([]*redis.StringSliceCmd, buckets)
		for b := range buckets {
			k := s.subsBucket(b)
			cards[b] = pipe.ZCard(ctx, k.all)
			if limit > 0 {
				rngs[b] = pipe.ZRange(ctx, k.all, 0, int64(offset)+int64(limit)-1)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, 0, s.wrap("list subscriptions", err)
		}
		for b := range buckets {
			total += cards[b].Val()
			if rngs[b] != nil {
				members = append(members, rngs[b].Val()...)
			}
		}
		slices.Sort(members)
		members = members[min(offset, len(members)):]
		members = members[:min(max(limit, 0), len(members))]
	}
	subs, err := s.records(ctx, members)
	return subs, int(total), err
}

// records reads the records of members, in their order, skipping members
// whose record is gone.
func (s *Store) records(ctx context.Context, members []string) ([]store.Subscription, error) {
	if len(members) == 0 {
		return nil, nil
	}
	byBucket := make(map[int][]string)
	for _, m := range members {
		topic, ok := memberTopic(m)
		if !ok {
			return nil, fmt.Errorf("redis: subscription index holds a malformed member %q", m)
		}
		b := bucketOf(topic)
		byBucket[b] = append(byBucket[b], m)
	}
	pipe := s.rdb.Pipeline()
	cmds := make(map[int]*redis.SliceCmd, len(byBucket))
	for b, ms := range byBucket {
		cmds[b] = pipe.HMGet(ctx, s.subsBucket(b).data, ms...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("list subscriptions", err)
	}
	recs := make(map[string]string, len(members))
	for b, ms := range byBucket {
		for i, v := range cmds[b].Val() {
			if str, ok := v.(string); ok {
				recs[ms[i]] = str
			}
		}
	}
	out := make([]store.Subscription, 0, len(members))
	for _, m := range members {
		v, ok := recs[m]
		if !ok {
			continue
		}
		var sub store.Subscription
		if err := json.Unmarshal([]byte(v), &sub); err != nil {
			return nil, fmt.Errorf("stored subscription is not valid JSON: %w", err)
		}
		out = append(out, sub)
	}
	return out, nil
}

// TopicSubscriptions implements store.Subscriptions.
func (s *Store) TopicSubscriptions(ctx context.Context, topic string) ([]store.Subscription, error) {
	k := s.subsBucket(bucketOf(topic))
	res, err := subListScript.Run(ctx, s.rdb, []string{k.topic(topic), k.data}, 0, -1).Slice()
	if err != nil {
		return nil, s.wrap("list subscriptions", err)
	}
	if len(res) == 0 {
		return nil, errors.New("redis list subscriptions: empty answer from script")
	}
	out := make([]store.Subscription, 0, len(res)-1)
	for _, r := range res[1:] {
		v, _ := r.(string)
		var sub store.Subscription
		if err := json.Unmarshal([]byte(v), &sub); err != nil {
			return nil, fmt.Errorf("stored subscription is not valid JSON: %w", err)
		}
		out = append(out, sub)
	}
	return out, nil
}

// IsSubscribed implements store.Subscriptions.
func (s *Store) IsSubscribed(ctx context.Context, login, topic string) (bool, error) {
	p := topicPrefix(topic)
	// Every member of the topic starts with p followed by 0x01 (the
	// callback part), so [p, p+0x02) holds exactly them.
	n, err := s.rdb.ZLexCount(ctx, s.loginIndex(login), "["+p, "("+p+"\x02").Result()
	if err != nil {
		return false, s.wrap("is subscribed", err)
	}
	return n > 0, nil
}

// TrackedTopics implements store.Subscriptions.
func (s *Store) TrackedTopics(ctx context.Context) ([]string, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, buckets)
	for b := range buckets {
		cmds[b] = pipe.ZRange(ctx, s.subsBucket(b).tracked, 0, -1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("tracked topics", err)
	}
	var out []string
	for _, c := range cmds {
		out = append(out, c.Val()...)
	}
	slices.SortFunc(out, cmp.Compare)
	return out, nil
}
