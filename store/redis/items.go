package redisstore

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/store"
)

//go:embed append.lua
var appendLua string

// appendScript runs by EVALSHA, falling back to EVAL after a Redis restart
// forgot it.
var appendScript = redis.NewScript(appendLua)

// publishCommand announces appends: sharded pub/sub on Cluster, so that an
// announcement costs only the shard that owns the topic.
func (s *Store) publishCommand() string {
	if s.mode == modeCluster {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// Append implements store.Items.
func (s *Store) Append(ctx context.Context, topic string, items []feed.Item) ([]feed.Item, error) {
	if len(items) == 0 {
		return nil, nil
	}
	k := s.keysOf(topic)
	header := liveHeader(topic)
	// With WAIT the announcement waits for the replicas (see append.lua).
	defer_ := s.waitReplicas > 0
	mode := s.publishCommand()
	if defer_ {
		mode = "DEFER"
	}
	args := make([]any, 0, 5+3*len(items))
	args = append(args, s.retention, s.keep, k.live, mode, header)
	// One buffer holds every encoded item; the arguments are slices of it.
	size := 0
	for i := range items {
		size += 64 + len(items[i].ID) + len(items[i].Title) + len(items[i].Content) + len(items[i].Summary)
	}
	buf := make([]byte, 0, size)
	for i := range items {
		it := &items[i]
		start := len(buf)
		buf = encodeItem(buf, it)
		if len(buf)-start > maxItemSize {
			return nil, fmt.Errorf("item %q encodes to %d bytes, more than the %d a stored item may take", it.ID, len(buf)-start, maxItemSize)
		}
		args = append(args, dedupField(it.ID, it.Hash), "i"+it.ID, buf[start:len(buf):len(buf)])
	}
	cmd, node := s.durableOn(ctx, k.items, appendScript, []string{k.items, k.ids, k.seq, k.meta, k.ann}, args...)
	vals, _ := cmd.Val().([]any)
	var announce string
	var announced int64
	if defer_ && len(vals) >= 2 {
		announced, _ = vals[0].(int64)
		announce, _ = vals[1].(string)
		vals = vals[2:]
	}
	res, ok := int64s(vals)
	if len(res) == 1 {
		res = nil // the first cursor alone: nothing stored (DEFER)
	}
	if err := cmd.Err(); err != nil {
		if errors.Is(err, store.ErrNotReplicated) && len(res) > 0 {
			// Stored on the master, not yet on the replicas (nor
			// announced): this node's caches hear of it like of any
			// append.
			s.changes.Changed(topic)
		}
		return nil, s.wrap("append", err)
	}
	if !ok {
		return nil, fmt.Errorf("redis append: script answered %v, not a list of numbers", cmd.Val())
	}
	if announce != "" {
		// Confirmed on the replicas: announce, on the node that ran the
		// append (the shard of the topic's slot). A failure here loses no
		// announcement for good: the next append of the topic makes it.
		// The caller going away does not stop it: the items are kept.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opTimeout)
		defer cancel()
		pipe := node.Pipeline()
		if s.mode == modeCluster {
			pipe.SPublish(actx, k.live, announce)
		} else {
			pipe.Publish(actx, k.live, announce)
		}
		annScript.Eval(actx, pipe, []string{k.ann}, announced)
		_, _ = pipe.Exec(actx)
	}
	if len(res) == 0 {
		return nil, nil
	}
	first := res[0]
	out := make([]feed.Item, 0, len(res)-1)
	for j, pos := range res[1:] {
		if pos < 1 || int(pos) > len(items) {
			return nil, fmt.Errorf("redis append: script answered item position %d of %d", pos, len(items))
		}
		it := items[pos-1]
		it.Cursor = feed.Cursor(first + int64(j))
		out = append(out, it)
	}
	if len(out) > 0 {
		s.changes.Changed(topic)
	}
	return out, nil
}

// annScript records the newest cursor announced (never lower).
var annScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`)

// int64s reads a script's array of integers; false for anything else.
func int64s(v any) ([]int64, bool) {
	vs, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]int64, 0, len(vs))
	for _, x := range vs {
		n, ok := x.(int64)
		if !ok {
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}

// dedupField names the (id, hash) pair in the ids hash: "p" and 16 bytes of
// a SHA-256 over the length-prefixed id and the hash, so that no two pairs
// share a name whatever bytes they hold.
func dedupField(id, hash string) string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(id)))])
	h.Write([]byte(id))
	h.Write([]byte(hash))
	var sum [sha256.Size]byte
	return "p" + string(h.Sum(sum[:0])[:16])
}

// streamID is the stream entry id of a cursor.
func streamID(c feed.Cursor) string {
	return strconv.FormatUint(uint64(c), 10) + "-0"
}

// Read implements store.Items in one round trip: the topic's counter and
// state, then the range, pipelined. Other clients' commands may run between
// the two, so Last is raised to the newest item read when that is newer:
// a page never holds an item past its Last, and a Newest page's Last is its
// first item.
func (s *Store) Read(ctx context.Context, topic string, q store.Query) (store.Page, error) {
	return s.read(ctx, topic, q, true)
}

func (s *Store) read(ctx context.Context, topic string, q store.Query, again bool) (store.Page, error) {
	k := s.keysOf(topic)
	count := int64(q.Count)
	if count > int64(s.retention) {
		count = int64(s.retention)
	}
	pipe := s.rdb.Pipeline()
	state := pipe.MGet(ctx, k.seq, k.meta)
	var rng *redis.XMessageSliceCmd
	if count > 0 {
		switch q.From {
		case store.Newest:
			rng = pipe.XRevRangeN(ctx, k.items, "+", "-", count)
		case store.After:
			rng = pipe.XRangeN(ctx, k.items, "("+streamID(q.Cursor), "+", count)
		case store.Before:
			if q.Cursor > 1 {
				rng = pipe.XRevRangeN(ctx, k.items, "("+streamID(q.Cursor), "-", count)
			}
		default:
			return store.Page{}, fmt.Errorf("read %q: unknown query start %d", topic, q.From)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return store.Page{}, s.wrap("read", err)
	}

	page := store.Page{Topic: store.TopicState{Topic: topic}}
	vals := state.Val()
	if len(vals) == 2 {
		if v, ok := vals[0].(string); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return store.Page{}, fmt.Errorf("read %q: counter %s holds %q, not a number", topic, k.seq, v)
			}
			page.Last = feed.Cursor(n)
		}
		if v, ok := vals[1].(string); ok {
			ts, err := s.meta.decode(topic, v)
			if err != nil {
				return store.Page{}, err
			}
			page.Topic = ts
		}
	}
	if rng == nil {
		return page, nil
	}
	msgs := rng.Val()
	if len(msgs) == 0 {
		return page, nil
	}
	items := make([]feed.Item, len(msgs))
	for i, m := range msgs {
		// XRANGE (After) answers oldest first; pages list newest first.
		j := i
		if q.From == store.After {
			j = len(msgs) - 1 - i
		}
		it, err := messageItem(m)
		if err != nil {
			return store.Page{}, fmt.Errorf("read %q entry %s: %w", topic, m.ID, err)
		}
		items[j] = it
	}
	page.Last = max(page.Last, items[0].Cursor)
	// Readers see at most the retention's newest items, whatever another
	// node configured with a larger retention left in the stream.
	if page.Last > feed.Cursor(s.retention) {
		floor := page.Last - feed.Cursor(s.retention) + 1
		n := len(items)
		for n > 0 && items[n-1].Cursor < floor {
			n--
		}
		if n < len(items) {
			if q.From == store.After && again {
				// The range started below what this node shows: read
				// again from the oldest shown (a second round trip, only
				// when nodes disagree on the retention).
				p, err := s.read(ctx, topic, store.Query{From: store.After, Cursor: floor - 1, Count: q.Count}, false)
				p.Gap = true
				return p, err
			}
			items = items[:n]
			page.Gap = page.Gap || q.From == store.After
		}
	}
	if q.From == store.After && len(items) > 0 && items[len(items)-1].Cursor > q.Cursor+1 {
		page.Gap = true
	}
	if len(items) > 0 {
		page.Items = items
	}
	return page, nil
}

// messageItem decodes one stream entry.
func messageItem(m redis.XMessage) (feed.Item, error) {
	c, err := parseStreamID(m.ID)
	if err != nil {
		return feed.Item{}, err
	}
	d, ok := m.Values["d"].(string)
	if !ok {
		return feed.Item{}, errors.New("entry has no item field")
	}
	it, err := decodeItem(d)
	if err != nil {
		return feed.Item{}, err
	}
	it.Cursor = c
	return it, nil
}

func parseStreamID(id string) (feed.Cursor, error) {
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			n, err := strconv.ParseUint(id[:i], 10, 64)
			if err != nil {
				break
			}
			return feed.Cursor(n), nil
		}
	}
	return 0, fmt.Errorf("stream entry id %q is not a cursor", id)
}

// CursorOf implements store.Items.
func (s *Store) CursorOf(ctx context.Context, topic, id string) (feed.Cursor, error) {
	v, err := s.rdb.HGet(ctx, s.keysOf(topic).ids, "i"+id).Result()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("entry %q of topic %q: %w", id, topic, store.ErrNotFound)
	}
	if err != nil {
		return 0, s.wrap("cursor of", err)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("entry %q of topic %q: stored cursor %q is not a number", id, topic, v)
	}
	return feed.Cursor(n), nil
}

// decodeTopicState reads a stored topic state.
func decodeTopicState(topic, v string) (store.TopicState, error) {
	var ts store.TopicState
	if err := json.Unmarshal([]byte(v), &ts); err != nil {
		return store.TopicState{}, fmt.Errorf("topic %q: stored state is not valid JSON: %w", topic, err)
	}
	ts.Topic = topic
	return ts, nil
}
