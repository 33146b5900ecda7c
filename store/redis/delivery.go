package redisstore

import (
	"context"
	"crypto/rand"
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

// Webhook deliveries (store.DeliveryStore) share the hash tag {dlv}, so a
// record, its indexes and its job change together in one script, also on
// Cluster:
//
//	fg:{dlv}:rec        hash  id -> store.Delivery as JSON (without Progress)
//	fg:{dlv}:prog       hash  id -> store.DeliveryProgress as JSON
//	fg:{dlv}:created    hash  id -> CreatedAt (RFC 3339), kept on renewal
//	fg:{dlv}:t:<topic>  set   the topic's ids
//	fg:{dlv}:topics     set   topics with at least one delivery
//	fg:{dlv}:due        zset  id -> due time (ms); while leased, lease end
//	fg:{dlv}:lease      hash  id -> "token|until"
//	fg:{dlv}:again      hash  id -> earliest time asked for while leased
//	fg:{dlv}:hold       hash  id -> end of a back-off (ms)
//
// An id is the SHA-1 of (topic, callback, login). The timetable is separate
// from ingest's jobs.
const (
	dlvRec     = "fg:{dlv}:rec"
	dlvProg    = "fg:{dlv}:prog"
	dlvCreated = "fg:{dlv}:created"
	dlvTopics  = "fg:{dlv}:topics"
	dlvDue     = "fg:{dlv}:due"
	dlvLease   = "fg:{dlv}:lease"
	dlvAgain   = "fg:{dlv}:again"
	dlvHold    = "fg:{dlv}:hold"
)

var _ store.DeliveryStore = (*Store)(nil)

func dlvTopicKey(topic string) string { return "fg:{dlv}:t:" + digest(topic) }

func dlvID(k store.DeliveryKey) string {
	h := sha1.New()
	for _, p := range []string{k.Topic, k.Callback, k.Login} {
		h.Write([]byte(strconv.Itoa(len(p))))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// dlvScheduleLua is the Lua function that makes a job due no later than at
// (with hold, not before the end of its back-off).
const dlvScheduleLua = `
local function schedule(id, at, hold)
  if hold then
    local h = redis.call('HGET', KEYS[9], id)
    if h and tonumber(h) > at then at = tonumber(h) end
  end
  if redis.call('HEXISTS', KEYS[6], id) == 1 then
    local a = redis.call('HGET', KEYS[7], id)
    if not a or at < tonumber(a) then redis.call('HSET', KEYS[7], id, at) end
    return
  end
  local cur = redis.call('ZSCORE', KEYS[5], id)
  if not cur or at < tonumber(cur) then redis.call('ZADD', KEYS[5], at, id) end
end
`

// The scripts take the same KEYS: rec, prog, created, topic set, due,
// lease, again, topics, hold.
func dlvKeys(topic string) []string {
	return []string{dlvRec, dlvProg, dlvCreated, dlvTopicKey(topic), dlvDue, dlvLease, dlvAgain, dlvTopics, dlvHold}
}

// ARGV: id, record JSON, initial progress JSON, createdAt, topic, due ms or "".
// Returns {created, createdAt, progress JSON}.
var dlvPutScript = redis.NewScript(dlvScheduleLua + `
local id = ARGV[1]
local created = 0
if redis.call('HEXISTS', KEYS[1], id) == 0 then
  created = 1
  redis.call('HSET', KEYS[2], id, ARGV[3])
  redis.call('HSET', KEYS[3], id, ARGV[4])
  redis.call('SADD', KEYS[4], id)
  redis.call('SADD', KEYS[8], ARGV[5])
end
redis.call('HSET', KEYS[1], id, ARGV[2])
if ARGV[6] ~= '' then schedule(id, tonumber(ARGV[6]), false) end
return {created, redis.call('HGET', KEYS[3], id), redis.call('HGET', KEYS[2], id)}
`)

// ARGV: id, topic. Returns 1 when there was a record.
var dlvDeleteScript = redis.NewScript(`
local id = ARGV[1]
if redis.call('HDEL', KEYS[1], id) == 0 then return 0 end
redis.call('HDEL', KEYS[2], id)
redis.call('HDEL', KEYS[3], id)
redis.call('SREM', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
redis.call('HDEL', KEYS[6], id)
redis.call('HDEL', KEYS[7], id)
redis.call('HDEL', KEYS[9], id)
if redis.call('SCARD', KEYS[4]) == 0 then redis.call('SREM', KEYS[8], ARGV[2]) end
return 1
`)

// ARGV: at ms. Returns the number of records of the topic.
var dlvScheduleTopicScript = redis.NewScript(dlvScheduleLua + `
local ids = redis.call('SMEMBERS', KEYS[4])
local at = tonumber(ARGV[1])
for _, id in ipairs(ids) do schedule(id, at, true) end
return #ids
`)

// KEYS: due, lease, again, rec, prog, created, hold. ARGV: now, max, until,
// token, scan. Returns a flat list of (retaken, rec, prog, created).
var dlvClaimScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max + tonumber(ARGV[5]))
local out = {}
local n = 0
for _, id in ipairs(ids) do
  if n >= max then break end
  local free, retaken = true, 0
  local l = redis.call('HGET', KEYS[2], id)
  if l then
    local u = tonumber(string.match(l, '|(%d+)$'))
    if u and u > now then free = false else retaken = 1 end
  end
  if free then
    local rec = redis.call('HGET', KEYS[4], id)
    if not rec then
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[7], id)
    else
      redis.call('HSET', KEYS[2], id, ARGV[4] .. '|' .. ARGV[3])
      redis.call('HDEL', KEYS[3], id)
      redis.call('HDEL', KEYS[7], id)
      redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), id)
      n = n + 1
      out[#out + 1] = retaken
      out[#out + 1] = rec
      out[#out + 1] = redis.call('HGET', KEYS[5], id) or ''
      out[#out + 1] = redis.call('HGET', KEYS[6], id) or ''
    end
  end
end
return out
`)

// KEYS: due, lease, again, rec, prog, hold. ARGV: id, token, progress
// JSON, next ms or "", "1" when backing off. Returns 0 when the lease is
// not held.
var dlvReleaseScript = redis.NewScript(`
local id = ARGV[1]
local l = redis.call('HGET', KEYS[2], id)
if not l then return 0 end
if string.match(l, '^([^|]*)|') ~= ARGV[2] then return 0 end
if redis.call('HEXISTS', KEYS[4], id) == 0 then return 0 end
redis.call('HDEL', KEYS[2], id)
redis.call('HSET', KEYS[5], id, ARGV[3])
local n = nil
if ARGV[4] ~= '' then n = tonumber(ARGV[4]) end
local a = redis.call('HGET', KEYS[3], id)
redis.call('HDEL', KEYS[3], id)
if n and ARGV[5] == '1' then
  redis.call('HSET', KEYS[6], id, n)
elseif a then
  a = tonumber(a)
  if not n or a < n then n = a end
end
if n then redis.call('ZADD', KEYS[1], n, id) else redis.call('ZREM', KEYS[1], id) end
return 1
`)

// KEYS: rec, due, lease. ARGV: now. Returns {records, due, leased}.
var dlvStatsScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local leases = redis.call('HVALS', KEYS[3])
local held = 0
for _, l in ipairs(leases) do
  local u = tonumber(string.match(l, '|(%d+)$'))
  if u and u > now then held = held + 1 end
end
return {redis.call('HLEN', KEYS[1]), redis.call('ZCOUNT', KEYS[2], '-inf', now), held}
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
	dueArg := ""
	if !due.IsZero() {
		dueArg = strconv.FormatInt(msOf(due), 10)
	}
	res, err := dlvPutScript.Run(ctx, s.rdb, dlvKeys(d.Topic),
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
	var rec, prog, created *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		rec = p.HGet(ctx, dlvRec, id)
		prog = p.HGet(ctx, dlvProg, id)
		created = p.HGet(ctx, dlvCreated, id)
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
	n, err := dlvDeleteScript.Run(ctx, s.rdb, dlvKeys(k.Topic), dlvID(k), k.Topic).Int()
	if err != nil {
		return false, s.wrap("delete delivery", err)
	}
	return n == 1, nil
}

// TopicDeliveries implements store.DeliveryStore.
func (s *Store) TopicDeliveries(ctx context.Context, topic string) ([]store.Delivery, error) {
	ids, err := s.rdb.SMembers(ctx, dlvTopicKey(topic)).Result()
	if err != nil {
		return nil, s.wrap("list deliveries", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var recs, progs, created *redis.SliceCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		recs = p.HMGet(ctx, dlvRec, ids...)
		progs = p.HMGet(ctx, dlvProg, ids...)
		created = p.HMGet(ctx, dlvCreated, ids...)
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
	topics, err := s.rdb.SMembers(ctx, dlvTopics).Result()
	if err != nil {
		return nil, s.wrap("list delivery topics", err)
	}
	sort.Strings(topics)
	return topics, nil
}

// ScheduleDeliveries implements store.DeliveryStore.
func (s *Store) ScheduleDeliveries(ctx context.Context, topic string, at time.Time) (int, error) {
	n, err := dlvScheduleTopicScript.Run(ctx, s.rdb, dlvKeys(topic), msOf(at)).Int()
	if err != nil {
		return 0, s.wrap("schedule deliveries", err)
	}
	return n, nil
}

// dlvClaimScan bounds how many due entries one claim looks at beyond max.
const dlvClaimScan = 256

// ClaimDeliveries implements store.DeliveryStore.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.DeliveryClaim, error) {
	if max <= 0 {
		return nil, nil
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	until := msOf(now.Add(lease))
	res, err := dlvClaimScript.Run(ctx, s.rdb,
		[]string{dlvDue, dlvLease, dlvAgain, dlvRec, dlvProg, dlvCreated, dlvHold},
		msOf(now), max, until, token, dlvClaimScan).Slice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.wrap("claim deliveries", err)
	}
	out := make([]store.DeliveryClaim, 0, len(res)/4)
	for i := 0; i+3 < len(res); i += 4 {
		retaken, _ := res[i].(int64)
		rec, _ := res[i+1].(string)
		prog, _ := res[i+2].(string)
		created, _ := res[i+3].(string)
		d, err := decodeDelivery(rec, prog, created)
		if err != nil {
			return nil, err
		}
		out = append(out, store.DeliveryClaim{Delivery: d, Token: token, Until: time.UnixMilli(until), Retaken: retaken == 1})
	}
	return out, nil
}

// ReleaseDelivery implements store.DeliveryStore.
func (s *Store) ReleaseDelivery(ctx context.Context, c store.DeliveryClaim, p store.DeliveryProgress, next time.Time) error {
	pv, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("redis: cannot encode delivery progress: %w", err)
	}
	n := ""
	if !next.IsZero() {
		n = strconv.FormatInt(msOf(next), 10)
	}
	backoff := "0"
	if p.Attempts > 0 {
		backoff = "1"
	}
	k := c.Delivery.DeliveryKey
	held, err := dlvReleaseScript.Run(ctx, s.rdb,
		[]string{dlvDue, dlvLease, dlvAgain, dlvRec, dlvProg, dlvHold},
		dlvID(k), c.Token, pv, n, backoff).Int()
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
	v, err := dlvStatsScript.Run(ctx, s.rdb, []string{dlvRec, dlvDue, dlvLease}, msOf(now)).Int64Slice()
	if err != nil {
		return store.DeliveryStats{}, s.wrap("delivery stats", err)
	}
	if len(v) != 3 {
		return store.DeliveryStats{}, fmt.Errorf("redis: delivery stats: unexpected answer %v", v)
	}
	return store.DeliveryStats{Deliveries: int(v[0]), Due: int(v[1]), Leased: int(v[2])}, nil
}
