package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// Ingest's keys (see store.IngestStore). The per-topic ingest state sits
// with the topic's other keys; everything shared by the ingest nodes (the
// timetable, its leases, the upstream subscriptions) carries the hash tag
// {fg-ingest}, so the scripts that touch several of them run on Cluster.
//
//	fg:{t}:ingest                    the topic's store.IngestState as JSON
//	fg:{fg-ingest}:jobs              sorted set: job -> due time (Unix ms)
//	fg:{fg-ingest}:leases            hash: job -> "token|until|claimed"
//	fg:{fg-ingest}:up:<id>           store.Upstream as JSON
//	fg:{fg-ingest}:upt:<topic hash>  set: the topic's upstream ids
const (
	keyJobs        = "fg:{fg-ingest}:jobs"
	keyLeases      = "fg:{fg-ingest}:leases"
	keyUpstreamPfx = "fg:{fg-ingest}:up:"
	keyUpTopicPfx  = "fg:{fg-ingest}:upt:"
)

var _ store.IngestStore = (*Store)(nil)

func ingestKey(topic string) string {
	return strings.TrimSuffix(keysOf(topic).meta, "meta") + "ingest"
}

func upstreamKey(id string) string { return keyUpstreamPfx + id }

func upTopicKey(topic string) string {
	sum := sha1.Sum([]byte(topic))
	return keyUpTopicPfx + hex.EncodeToString(sum[:16])
}

// IngestState implements store.IngestStore.
func (s *Store) IngestState(ctx context.Context, topic string) (store.IngestState, error) {
	st := store.IngestState{Topic: topic}
	v, err := s.rdb.Get(ctx, ingestKey(topic)).Result()
	if errors.Is(err, redis.Nil) {
		return st, nil
	}
	if err != nil {
		return st, s.wrap("ingest state", err)
	}
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		return store.IngestState{Topic: topic}, fmt.Errorf("redis: ingest state of %q is corrupt: %w", topic, err)
	}
	st.Topic = topic
	return st, nil
}

// UpdateIngestState implements store.IngestStore.
func (s *Store) UpdateIngestState(ctx context.Context, topic string, fn func(*store.IngestState) error) error {
	key := ingestKey(topic)
	return s.update(ctx, "update ingest state", key, func(tx *redis.Tx) (string, error) {
		st := store.IngestState{Topic: topic}
		v, err := tx.Get(ctx, key).Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return "", err
		default:
			if err := json.Unmarshal([]byte(v), &st); err != nil {
				return "", errFn{fmt.Errorf("redis: ingest state of %q is corrupt: %w", topic, err)}
			}
		}
		if err := fn(&st); err != nil {
			return "", errFn{err}
		}
		st.Topic = topic
		b, err := json.Marshal(st)
		if err != nil {
			return "", errFn{fmt.Errorf("encode ingest state of %q: %w", topic, err)}
		}
		return string(b), nil
	})
}

// DeleteIngestState implements store.IngestStore.
func (s *Store) DeleteIngestState(ctx context.Context, topic string) error {
	return s.wrap("delete ingest state", s.rdb.Del(ctx, ingestKey(topic)).Err())
}

// PutUpstream implements store.IngestStore.
func (s *Store) PutUpstream(ctx context.Context, u store.Upstream) error {
	if u.ID == "" || u.Topic == "" {
		return errors.New("redis: an upstream subscription needs an id and a topic")
	}
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("encode upstream subscription: %w", err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, upstreamKey(u.ID), b, 0)
		p.SAdd(ctx, upTopicKey(u.Topic), u.ID)
		return nil
	})
	return s.wrap("put upstream", err)
}

// Upstream implements store.IngestStore.
func (s *Store) Upstream(ctx context.Context, id string) (store.Upstream, error) {
	v, err := s.rdb.Get(ctx, upstreamKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return store.Upstream{}, fmt.Errorf("upstream subscription %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Upstream{}, s.wrap("upstream", err)
	}
	var u store.Upstream
	if err := json.Unmarshal([]byte(v), &u); err != nil {
		return store.Upstream{}, fmt.Errorf("redis: upstream subscription %q is corrupt: %w", id, err)
	}
	return u, nil
}

// UpdateUpstream implements store.IngestStore.
func (s *Store) UpdateUpstream(ctx context.Context, id string, fn func(*store.Upstream) error) error {
	key := upstreamKey(id)
	return s.update(ctx, "update upstream", key, func(tx *redis.Tx) (string, error) {
		v, err := tx.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return "", errFn{fmt.Errorf("upstream subscription %q: %w", id, store.ErrNotFound)}
		}
		if err != nil {
			return "", err
		}
		var u store.Upstream
		if err := json.Unmarshal([]byte(v), &u); err != nil {
			return "", errFn{fmt.Errorf("redis: upstream subscription %q is corrupt: %w", id, err)}
		}
		topic := u.Topic
		if err := fn(&u); err != nil {
			return "", errFn{err}
		}
		u.ID, u.Topic = id, topic
		b, err := json.Marshal(u)
		if err != nil {
			return "", errFn{fmt.Errorf("encode upstream subscription: %w", err)}
		}
		return string(b), nil
	})
}

// DeleteUpstream implements store.IngestStore.
func (s *Store) DeleteUpstream(ctx context.Context, id string) error {
	u, err := s.Upstream(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, upstreamKey(id))
		p.SRem(ctx, upTopicKey(u.Topic), id)
		return nil
	})
	return s.wrap("delete upstream", err)
}

// TopicUpstreams implements store.IngestStore.
func (s *Store) TopicUpstreams(ctx context.Context, topic string) ([]store.Upstream, error) {
	ids, err := s.rdb.SMembers(ctx, upTopicKey(topic)).Result()
	if err != nil {
		return nil, s.wrap("topic upstreams", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = upstreamKey(id)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, s.wrap("topic upstreams", err)
	}
	var out []store.Upstream
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var u store.Upstream
		if err := json.Unmarshal([]byte(str), &u); err != nil {
			return nil, fmt.Errorf("redis: upstream subscription %q is corrupt: %w", ids[i], err)
		}
		if u.Topic == topic {
			out = append(out, u)
		}
	}
	return out, nil
}

func msOf(t time.Time) int64 { return t.UnixMilli() }

// ScheduleJob implements store.IngestStore.
func (s *Store) ScheduleJob(ctx context.Context, job string, at time.Time) error {
	return s.wrap("schedule job", s.rdb.ZAddLT(ctx, keyJobs, redis.Z{Score: float64(msOf(at)), Member: job}).Err())
}

// expediteScript moves an existing job earlier; 1 when it exists.
var expediteScript = redis.NewScript(`
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur then return 0 end
if tonumber(ARGV[2]) < tonumber(cur) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return 1
`)

// ExpediteJob implements store.IngestStore.
func (s *Store) ExpediteJob(ctx context.Context, job string, at time.Time) (bool, error) {
	n, err := expediteScript.Run(ctx, s.rdb, []string{keyJobs}, job, msOf(at)).Int()
	if err != nil {
		return false, s.wrap("expedite job", err)
	}
	return n == 1, nil
}

// AddJob implements store.IngestStore.
func (s *Store) AddJob(ctx context.Context, job string, at time.Time) (bool, error) {
	n, err := s.rdb.ZAddNX(ctx, keyJobs, redis.Z{Score: float64(msOf(at)), Member: job}).Result()
	if err != nil {
		return false, s.wrap("add job", err)
	}
	return n == 1, nil
}

// JobDue implements store.IngestStore.
func (s *Store) JobDue(ctx context.Context, job string) (time.Time, bool, error) {
	v, err := s.rdb.ZScore(ctx, keyJobs, job).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, s.wrap("job due", err)
	}
	return time.UnixMilli(int64(v)), true, nil
}

// RemoveJob implements store.IngestStore.
func (s *Store) RemoveJob(ctx context.Context, job string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, keyJobs, job)
		p.HDel(ctx, keyLeases, job)
		return nil
	})
	return s.wrap("remove job", err)
}

// claimScript leases up to ARGV[2] due, unleased jobs: each gets a lease
// "token|until|claimed" and is moved to the lease's end, so that a node that
// dies holding it gives it back by letting the lease run out.
var claimScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local untilMs = tonumber(ARGV[3])
local token = ARGV[4]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max + tonumber(ARGV[5]))
local out = {}
for _, job in ipairs(due) do
  if #out >= max then break end
  local free = true
  local l = redis.call('HGET', KEYS[2], job)
  if l then
    local u = tonumber(string.match(l, '^[^|]*|(%d+)|'))
    if u and u > now then free = false end
  end
  if free then
    redis.call('HSET', KEYS[2], job, token .. '|' .. ARGV[3] .. '|' .. ARGV[3])
    redis.call('ZADD', KEYS[1], untilMs, job)
    out[#out + 1] = job
  end
end
return out
`)

// claimScan bounds how many due entries one claim looks at beyond max
// (due jobs that are leased are skipped).
const claimScan = 256

// ClaimJobs implements store.IngestStore.
func (s *Store) ClaimJobs(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.Claim, error) {
	if max <= 0 {
		return nil, nil
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	until := msOf(now.Add(lease))
	jobs, err := claimScript.Run(ctx, s.rdb, []string{keyJobs, keyLeases},
		msOf(now), max, until, token, claimScan).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, s.wrap("claim jobs", err)
	}
	out := make([]store.Claim, len(jobs))
	for i, j := range jobs {
		out[i] = store.Claim{Job: j, Token: token, Until: time.UnixMilli(until)}
	}
	return out, nil
}

// releaseScript ends a lease held with ARGV[2] and schedules the job at
// ARGV[3] (or earlier, when it was moved earlier while leased); ARGV[3] = ""
// removes it. 0 when the lease is not held.
var releaseScript = redis.NewScript(`
local l = redis.call('HGET', KEYS[2], ARGV[1])
if not l then return 0 end
local tok, claimed = string.match(l, '^([^|]*)|%d+|(%d+)$')
if tok ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur then return 0 end
local nxt = tonumber(ARGV[3])
cur = tonumber(cur)
if cur ~= tonumber(claimed) and cur < nxt then nxt = cur end
redis.call('ZADD', KEYS[1], nxt, ARGV[1])
return 1
`)

// ReleaseJob implements store.IngestStore.
func (s *Store) ReleaseJob(ctx context.Context, c store.Claim, next time.Time) error {
	n := ""
	if !next.IsZero() {
		n = strconv.FormatInt(msOf(next), 10)
	}
	held, err := releaseScript.Run(ctx, s.rdb, []string{keyJobs, keyLeases}, c.Job, c.Token, n).Int()
	if err != nil {
		return s.wrap("release job", err)
	}
	if held == 0 {
		return fmt.Errorf("job %q: %w", c.Job, store.ErrLeaseLost)
	}
	return nil
}
