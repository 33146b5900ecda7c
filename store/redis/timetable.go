package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/feedgate/feedgate/store"
)

// A timetable (store.Timetable) is spread over buckets: bucket b of the
// timetable n is four keys under the hash tag {n:b} (see timetable.lua),
// so that on Redis Cluster the timetable spreads over up to `buckets` slots
// while each job's entries, and whatever a caller keeps beside them in the
// same bucket (delivery records), change together in one script.
//
//	fg:{<n>:<b>}:due    sorted set: job -> due time (Unix ms)
//	fg:{<n>:<b>}:lease  hash: job -> "token|until"
//	fg:{<n>:<b>}:again  hash: job -> earliest time asked for while leased
//	fg:{<n>:<b>}:hold   hash: job -> end of a back-off
//
// A claim looks at every bucket in one pipelined round trip (the earliest
// due entries of each), picks the earliest max, and claims them bucket by
// bucket in a second round trip, each bucket's script checking again what
// it claims.
const buckets = 16

//go:embed timetable.lua
var timetableLua string

// Scripts of a bare timetable: KEYS are a bucket's four keys.
var (
	ttScheduleScript = redis.NewScript(timetableLua + `
return tt_schedule(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]))`)
	ttRemoveScript = redis.NewScript(timetableLua + `
tt_remove(ARGV[1])
return 1`)
	// ARGV: now, max, until, token, scan.
	ttClaimScript = redis.NewScript(timetableLua + `
return tt_claim(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]))`)
	// ARGV: job, token, next ms or "", "1" when backing off.
	ttReleaseScript = redis.NewScript(timetableLua + `
if not tt_held(ARGV[1], ARGV[2]) then return 0 end
local n = nil
if ARGV[3] ~= '' then n = tonumber(ARGV[3]) end
tt_release(ARGV[1], n, ARGV[4] == '1')
return 1`)
	ttStatsScript = redis.NewScript(timetableLua + `
return tt_stats(tonumber(ARGV[1]))`)
)

// claimScan bounds how many due entries one bucket's claim looks at beyond
// what it is asked for (due jobs that are leased are skipped).
const claimScan = 256

// timetable is a store.Timetable on Redis.
type timetable struct {
	s    *Store
	name string
}

var _ store.Timetable = (*timetable)(nil)

// bucketOf spreads names over the buckets.
func bucketOf(name string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return int(h.Sum32() % buckets)
}

// tag is the hash tag of bucket b.
func (t *timetable) tag(b int) string {
	return t.s.prefix + ":{" + t.name + ":" + strconv.Itoa(b) + "}:"
}

// keys are the four timetable keys of bucket b, the KEYS every timetable
// script starts with.
func (t *timetable) keys(b int) []string {
	p := t.tag(b)
	return []string{p + "due", p + "lease", p + "again", p + "hold"}
}

func msOf(tm time.Time) int64 { return tm.UnixMilli() }

// nextArg is a release's next time as a script argument ("" for none).
func nextArg(next time.Time) string {
	if next.IsZero() {
		return ""
	}
	return strconv.FormatInt(msOf(next), 10)
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func checkMode(mode store.ScheduleMode) error {
	if mode > store.Override {
		return fmt.Errorf("redis: unknown schedule mode %d", mode)
	}
	return nil
}

// Schedule implements store.Timetable.
func (t *timetable) Schedule(ctx context.Context, job string, at time.Time, mode store.ScheduleMode) (bool, error) {
	if err := checkMode(mode); err != nil {
		return false, err
	}
	n, err := ttScheduleScript.Run(ctx, t.s.rdb, t.keys(bucketOf(job)), job, msOf(at), int(mode)).Int()
	if err != nil {
		return false, t.s.wrap("schedule job", err)
	}
	return n == 1, nil
}

// Due implements store.Timetable.
func (t *timetable) Due(ctx context.Context, job string) (time.Time, bool, error) {
	v, err := t.s.rdb.ZScore(ctx, t.keys(bucketOf(job))[0], job).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, t.s.wrap("job due", err)
	}
	return time.UnixMilli(int64(v)), true, nil
}

// Remove implements store.Timetable.
func (t *timetable) Remove(ctx context.Context, job string) error {
	return t.s.wrap("remove job", ttRemoveScript.Run(ctx, t.s.rdb, t.keys(bucketOf(job)), job).Err())
}

// plan is the first half of a claim: how many jobs to claim from each
// bucket, the earliest due across all of them first.
func (t *timetable) plan(ctx context.Context, now time.Time, max int) (map[int]int, error) {
	pipe := t.s.rdb.Pipeline()
	cmds := make([]*redis.ZSliceCmd, buckets)
	nowArg := strconv.FormatInt(msOf(now), 10)
	for b := range buckets {
		cmds[b] = pipe.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: t.keys(b)[0], Start: "-inf", Stop: nowArg, ByScore: true, Count: int64(max),
		})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	type entry struct {
		due    float64
		bucket int
	}
	var due []entry
	for b, c := range cmds {
		for _, z := range c.Val() {
			due = append(due, entry{z.Score, b})
		}
	}
	slices.SortFunc(due, func(a, b entry) int { return cmp.Compare(a.due, b.due) })
	plan := make(map[int]int)
	for _, e := range due[:min(len(due), max)] {
		plan[e.bucket]++
	}
	return plan, nil
}

// claimed is one job claimed by a bucket's script, with the rest of what
// the script said about it.
type claimed struct {
	job     string
	retaken bool
	due     float64
	extra   []any
}

// claim runs a whole claim: plan, then script in each bucket planned, with
// KEYS the bucket's timetable keys plus extraKeys(b) and ARGV now, n,
// until, token, scan. The script answers (job, retaken, due) and stride-3
// more values per job, which come back in extra. Claims are returned
// earliest due first.
func (t *timetable) claim(ctx context.Context, now time.Time, max int, lease time.Duration,
	script *redis.Script, extraKeys func(b int) []string, stride int) ([]claimed, string, time.Time, error) {
	token := newToken()
	until := now.Add(lease).Truncate(time.Millisecond)
	if max <= 0 {
		return nil, token, until, nil
	}
	plan, err := t.plan(ctx, now, max)
	if err != nil || len(plan) == 0 {
		return nil, token, until, err
	}
	calls := make([]scriptCall, 0, len(plan))
	for b, n := range plan {
		keys := t.keys(b)
		if extraKeys != nil {
			keys = append(keys, extraKeys(b)...)
		}
		calls = append(calls, scriptCall{keys: keys, args: []any{msOf(now), n, msOf(until), token, claimScan}})
	}
	cmds := t.s.evalAll(ctx, script, calls)
	var out []claimed
	var firstErr error
	for _, c := range cmds {
		res, err := c.Slice()
		if err != nil && !errors.Is(err, redis.Nil) {
			// Other buckets' claims stand: they are leased now.
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		for i := 0; i+stride <= len(res); i += stride {
			job, _ := res[i].(string)
			retaken, _ := res[i+1].(int64)
			due, _ := strconv.ParseFloat(fmt.Sprint(res[i+2]), 64)
			out = append(out, claimed{job: job, retaken: retaken == 1, due: due, extra: res[i+3 : i+stride]})
		}
	}
	if len(out) == 0 && firstErr != nil {
		return nil, token, until, firstErr
	}
	slices.SortStableFunc(out, func(a, b claimed) int { return cmp.Compare(a.due, b.due) })
	return out, token, until, nil
}

// Claim implements store.Timetable.
func (t *timetable) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.Claim, error) {
	cs, token, until, err := t.claim(ctx, now, max, lease, ttClaimScript, nil, 3)
	if err != nil {
		return nil, t.s.wrap("claim jobs", err)
	}
	out := make([]store.Claim, len(cs))
	for i, c := range cs {
		out[i] = store.Claim{Job: c.job, Token: token, Until: until, Retaken: c.retaken}
	}
	return out, nil
}

// Release implements store.Timetable.
func (t *timetable) Release(ctx context.Context, c store.Claim, next time.Time, backoff bool) error {
	b := "0"
	if backoff {
		b = "1"
	}
	held, err := ttReleaseScript.Run(ctx, t.s.rdb, t.keys(bucketOf(c.Job)), c.Job, c.Token, nextArg(next), b).Int()
	if err != nil {
		return t.s.wrap("release job", err)
	}
	if held == 0 {
		return fmt.Errorf("job %q: %w", c.Job, store.ErrLeaseLost)
	}
	return nil
}

// Stats implements store.Timetable.
func (t *timetable) Stats(ctx context.Context, now time.Time) (store.TimetableStats, error) {
	return t.stats(ctx, now)
}

// stats sums tt_stats over the buckets.
func (t *timetable) stats(ctx context.Context, now time.Time) (store.TimetableStats, error) {
	calls := make([]scriptCall, buckets)
	for b := range buckets {
		calls[b] = scriptCall{keys: t.keys(b), args: []any{msOf(now)}}
	}
	var st store.TimetableStats
	for _, c := range t.s.evalAll(ctx, ttStatsScript, calls) {
		v, err := c.Int64Slice()
		if err != nil {
			return store.TimetableStats{}, t.s.wrap("timetable stats", err)
		}
		if len(v) != 3 {
			return store.TimetableStats{}, fmt.Errorf("redis: timetable stats: unexpected answer %v", v)
		}
		st.Jobs += int(v[0])
		st.Due += int(v[1])
		st.Leased += int(v[2])
	}
	return st, nil
}

// scriptCall is one run of a script.
type scriptCall struct {
	keys []string
	args []any
}

// evalAll runs script once per call in one pipeline (EVALSHA), then runs
// again, one by one with EVAL, the calls whose server did not know the
// script (after a restart or a failover). Errors are in the commands.
func (s *Store) evalAll(ctx context.Context, script *redis.Script, calls []scriptCall) []*redis.Cmd {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			cmds[i] = script.Eval(ctx, s.rdb, calls[i].keys, calls[i].args...)
		}
	}
	return cmds
}
