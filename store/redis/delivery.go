package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// Webhook deliveries (store.DeliveryStore) live in the buckets of the
// delivery timetable "dlv" (see timetable.go), a topic's deliveries all in
// the bucket of the topic, so that a record, its indexes and its job change
// together in one script, also on Cluster, while the deliveries of
// different topics spread over the buckets:
//
//	fg:{dlv:<b>}:due, lease, again, hold  the timetable (one job per record)
//	fg:{dlv:<b>}:rec        hash  id -> store.Delivery as JSON (without Progress)
//	fg:{dlv:<b>}:prog       hash  id -> store.DeliveryProgress as JSON
//	fg:{dlv:<b>}:created    hash  id -> CreatedAt (RFC 3339), kept on renewal
//	fg:{dlv:<b>}:topics     set   the bucket's topics with at least one record
//	fg:{dlv:<b>}:t:<topic>  set   the topic's ids
//
// An id is the SHA-1 of (topic, callback, login).
var _ store.DeliveryStore = (*Store)(nil)

// deliveryJobs is the delivery timetable of s.
func (s *Store) deliveryJobs() *timetable { return &timetable{s: s, name: "dlv"} }

// dlvKeys are the KEYS of the delivery scripts for topic's bucket: the
// timetable's four, then rec, prog, created, topics and the topic's set.
func (s *Store) dlvKeys(topic string) []string {
	return s.dlvBucketKeys(bucketOf(topic), topic)
}

func (s *Store) dlvBucketKeys(b int, topic string) []string {
	tt := s.deliveryJobs()
	p := tt.tag(b)
	keys := append(tt.keys(b), p+"rec", p+"prog", p+"created", p+"topics")
	if topic != "" {
		keys = append(keys, p+"t:"+digest(topic))
	}
	return keys
}

func dlvID(k store.DeliveryKey) string {
	h := sha1.New()
	for _, p := range []string{k.Topic, k.Callback, k.Login} {
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ARGV: id, record JSON, initial progress JSON, createdAt, topic, due ms or "".
// Returns {created, createdAt, progress JSON}.
var dlvPutScript = redis.NewScript(timetableLua + `
local id = ARGV[1]
local created = 0
if redis.call('HEXISTS', KEYS[5], id) == 0 then
  created = 1
  redis.call('HSET', KEYS[6], id, ARGV[3])
  redis.call('HSET', KEYS[7], id, ARGV[4])
  redis.call('SADD', KEYS[9], id)
  redis.call('SADD', KEYS[8], ARGV[5])
end
redis.call('HSET', KEYS[5], id, ARGV[2])
-- A renewal may cut a back-off short.
if ARGV[6] ~= '' then tt_schedule(id, tonumber(ARGV[6]), 3) end
return {created, redis.call('HGET', KEYS[7], id), redis.call('HGET', KEYS[6], id)}
`)

// ARGV: id, topic. Returns 1 when there was a record.
var dlvDeleteScript = redis.NewScript(timetableLua + `
local id = ARGV[1]
if redis.call('HDEL', KEYS[5], id) == 0 then return 0 end
redis.call('HDEL', KEYS[6], id)
redis.call('HDEL', KEYS[7], id)
redis.call('SREM', KEYS[9], id)
tt_remove(id)
if redis.call('SCARD', KEYS[9]) == 0 then redis.call('SREM', KEYS[8], ARGV[2]) end
return 1
`)

// ARGV: at ms. Returns the number of records of the topic.
var dlvScheduleTopicScript = redis.NewScript(timetableLua + `
local ids = redis.call('SMEMBERS', KEYS[9])
local at = tonumber(ARGV[1])
for _, id in ipairs(ids) do tt_schedule(id, at, 0) end
return #ids
`)

// ARGV: now, max, until, token, scan. Returns per claim (id, retaken,
// due, rec, prog, created); a job whose record is gone is dropped.
var dlvClaimScript = redis.NewScript(timetableLua + `
local c = tt_claim(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]),
  function(id) return redis.call('HEXISTS', KEYS[5], id) == 1 end)
local out = {}
for i = 1, #c, 3 do
  local id = c[i]
  out[#out + 1] = id
  out[#out + 1] = c[i + 1]
  out[#out + 1] = c[i + 2]
  out[#out + 1] = redis.call('HGET', KEYS[5], id)
  out[#out + 1] = redis.call('HGET', KEYS[6], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[7], id) or ''
end
return out
`)

// ARGV: id, token, progress JSON, next ms or "", "1" when backing off.
// Returns 0 when the lease is not held (or the record is gone).
var dlvReleaseScript = redis.NewScript(timetableLua + `
local id = ARGV[1]
if not tt_held(id, ARGV[2]) then return 0 end
if redis.call('HEXISTS', KEYS[5], id) == 0 then return 0 end
redis.call('HSET', KEYS[6], id, ARGV[3])
local n = nil
if ARGV[4] ~= '' then n = tonumber(ARGV[4]) end
tt_release(id, n, ARGV[5] == '1')
return 1
`)

// ARGV: now. Returns {jobs, due, leased, records}.
var dlvStatsScript = redis.NewScript(timetableLua + `
local st = tt_stats(tonumber(ARGV[1]))
st[4] = redis.call('HLEN', KEYS[5])
return st
`)

func timeText(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// decodeDelivery joins a record, its progress and its creation time.
func decodeDelivery(rec, prog, created string) (store.Delivery, error) {
	var d store.Delivery
	if err := json.Unmarshal([]byte(rec), &d); err != nil {
		return d, fmt.Errorf("redis: a delivery record is corrupt: %w", err)
	}
	if prog != "" {
		if err := json.Unmarshal([]byte(prog), &d.Progress); err != nil {
			return d, fmt.Errorf("redis: the progress of a delivery to %s is corrupt: %w", d.Callback, err)
		}
	}
	if created != "" {
		if t, err := time.Parse(time.RFC3339Nano, created); err == nil {
			d.CreatedAt = t
		}
	}
	return d, nil
}

func checkDeliveryKey(k store.DeliveryKey) error {
	if k.Login == "" || k.Topic == "" || k.Callback == "" {
		return fmt.Errorf("redis: a delivery needs a login, a topic and a callback (got %q, %q, %q)", k.Login, k.Topic, k.Callback)
	}
	return nil
}

// PutDelivery implements store.DeliveryStore.
func (s *Store) PutDelivery(ctx context.Context, d store.Delivery, due time.Time) (store.Delivery, bool, error) {
	if err := checkDeliveryKey(d.DeliveryKey); err != nil {
		return d, false, err
	}
	rec := d
	rec.Progress = store.DeliveryProgress{}
	rv, err := json.Marshal(rec)
	if err != nil {
		return d, false, fmt.Errorf("redis: cannot encode delivery: %w", err)
	}
	pv, err := json.Marshal(d.Progress)
	if err != nil {
		return d, false, fmt.Errorf("redis: cannot encode delivery progress: %w", err)
	}
	dueArg := nextArg(due)
	keys := s.dlvKeys(d.Topic)
	res, err := s.durable(ctx, keys[0], dlvPutScript, keys,
		dlvID(d.DeliveryKey), rv, pv, timeText(d.CreatedAt), d.Topic, dueArg).Slice()
	if err != nil {
		return d, false, s.wrap("put delivery", err)
	}
	if len(res) != 3 {
		return d, false, fmt.Errorf("redis: put delivery: unexpected answer %v", res)
	}
	created, _ := res[0].(int64)
	cs, _ := res[1].(string)
	ps, _ := res[2].(string)
	out, err := decodeDelivery(string(rv), ps, cs)
	if err != nil {
		return d, false, err
	}
	return out, created == 1, nil
}

// Delivery implements store.DeliveryStore.
func (s *Store) Delivery(ctx context.Context, k store.DeliveryKey) (store.Delivery, error) {
	id := dlvID(k)
	keys := s.dlvKeys(k.Topic)
	var rec, prog, created *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGet(ctx, keys[4], id)
		prog = p.HGet(ctx, keys[5], id)
		created = p.HGet(ctx, keys[6], id)
		return nil
	})
	if errors.Is(err, redis.Nil) && errors.Is(rec.Err(), redis.Nil) {
		return store.Delivery{}, fmt.Errorf("redis: delivery of %s to %s: %w", k.Topic, k.Callback, store.ErrNotFound)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return store.Delivery{}, s.wrap("read delivery", err)
	}
	return decodeDelivery(rec.Val(), prog.Val(), created.Val())
}

// DeleteDelivery implements store.DeliveryStore.
func (s *Store) DeleteDelivery(ctx context.Context, k store.DeliveryKey) (bool, error) {
	n, err := dlvDeleteScript.Run(ctx, s.rdb, s.dlvKeys(k.Topic), dlvID(k), k.Topic).Int()
	if err != nil {
		return false, s.wrap("delete delivery", err)
	}
	return n == 1, nil
}

// TopicDeliveries implements store.DeliveryStore.
func (s *Store) TopicDeliveries(ctx context.Context, topic string) ([]store.Delivery, error) {
	keys := s.dlvKeys(topic)
	ids, err := s.rdb.SMembers(ctx, keys[8]).Result()
	if err != nil {
		return nil, s.wrap("list deliveries", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var recs, progs, created *redis.SliceCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		recs = p.HMGet(ctx, keys[4], ids...)
		progs = p.HMGet(ctx, keys[5], ids...)
		created = p.HMGet(ctx, keys[6], ids...)
		return nil
	})
	if err != nil {
		return nil, s.wrap("list deliveries", err)
	}
	out := make([]store.Delivery, 0, len(ids))
	str := func(v any) string { s, _ := v.(string); return s }
	for i := range ids {
		rec := str(recs.Val()[i])
		if rec == "" {
			continue
		}
		d, err := decodeDelivery(rec, str(progs.Val()[i]), str(created.Val()[i]))
		if err != nil {
			return nil, err
		}
		if d.Topic == topic {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Callback != out[j].Callback {
			return out[i].Callback < out[j].Callback
		}
		return out[i].Login < out[j].Login
	})
	return out, nil
}

// DeliveryTopics implements store.DeliveryStore.
func (s *Store) DeliveryTopics(ctx context.Context) ([]string, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, buckets)
	for b := range buckets {
		cmds[b] = pipe.SMembers(ctx, s.dlvBucketKeys(b, "")[7])
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.wrap("list delivery topics", err)
	}
	var topics []string
	for _, c := range cmds {
		topics = append(topics, c.Val()...)
	}
	sort.Strings(topics)
	return topics, nil
}

// ScheduleDeliveries implements store.DeliveryStore.
func (s *Store) ScheduleDeliveries(ctx context.Context, topic string, at time.Time) (int, error) {
	n, err := dlvScheduleTopicScript.Run(ctx, s.rdb, s.dlvKeys(topic), msOf(at)).Int()
	if err != nil {
		return 0, s.wrap("schedule deliveries", err)
	}
	return n, nil
}

// ClaimDeliveries implements store.DeliveryStore.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.DeliveryClaim, error) {
	extra := func(b int) []string { return s.dlvBucketKeys(b, "")[4:7] }
	cs, token, until, err := s.deliveryJobs().claim(ctx, now, max, lease, dlvClaimScript, extra, 6)
	if err != nil {
		return nil, s.wrap("claim deliveries", err)
	}
	out := make([]store.DeliveryClaim, 0, len(cs))
	for _, c := range cs {
		rec, _ := c.extra[0].(string)
		prog, _ := c.extra[1].(string)
		created, _ := c.extra[2].(string)
		d, err := decodeDelivery(rec, prog, created)
		if err != nil {
			return nil, err
		}
		out = append(out, store.DeliveryClaim{
			Claim:    store.Claim{Job: c.job, Token: token, Until: until, Retaken: c.retaken},
			Delivery: d,
		})
	}
	return out, nil
}

// ReleaseDelivery implements store.DeliveryStore.
func (s *Store) ReleaseDelivery(ctx context.Context, c store.DeliveryClaim, p store.DeliveryProgress, next time.Time) error {
	pv, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("redis: cannot encode delivery progress: %w", err)
	}
	backoff := "0"
	if p.Attempts > 0 {
		backoff = "1"
	}
	k := c.Delivery.DeliveryKey
	held, err := dlvReleaseScript.Run(ctx, s.rdb, s.dlvKeys(k.Topic)[:7],
		dlvID(k), c.Token, pv, nextArg(next), backoff).Int()
	if err != nil {
		return s.wrap("release delivery", err)
	}
	if held == 0 {
		return fmt.Errorf("redis: delivery of %s to %s: %w", k.Topic, k.Callback, store.ErrLeaseLost)
	}
	return nil
}

// DeliveryStats implements store.DeliveryStore.
func (s *Store) DeliveryStats(ctx context.Context, now time.Time) (store.DeliveryStats, error) {
	calls := make([]scriptCall, buckets)
	for b := range buckets {
		calls[b] = scriptCall{keys: s.dlvBucketKeys(b, "")[:5], args: []any{msOf(now)}}
	}
	var st store.DeliveryStats
	for _, c := range s.evalAll(ctx, dlvStatsScript, calls) {
		v, err := c.Int64Slice()
		if err != nil {
			return store.DeliveryStats{}, s.wrap("delivery stats", err)
		}
		if len(v) != 4 {
			return store.DeliveryStats{}, fmt.Errorf("redis: delivery stats: unexpected answer %v", v)
		}
		st.Due += int(v[1])
		st.Leased += int(v[2])
		st.Deliveries += int(v[3])
	}
	return st, nil
}
