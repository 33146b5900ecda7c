package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

// TimetableOpener returns a store.Timetable on fresh, empty backing data;
// the opener closes what it opened in its own t.Cleanup.
type TimetableOpener func(t *testing.T) store.Timetable

// TimetablePairOpener returns two store.Timetables over the same fresh
// backing data, standing for two gateway nodes.
type TimetablePairOpener func(t *testing.T) (a, b store.Timetable)

// RunTimetable runs the conformance suite of store.Timetable, the leased-job
// timetable behind ingest's jobs and webhook deliveries.
//
// Beyond the interface's doc comments it pins down: job times are kept to
// the millisecond; Claim returns due jobs earliest first; a job claimed by
// one caller is not returned to any other until its lease ends or it is
// released; Release with a stale claim (lease run out and claimed again, or
// job removed) fails with ErrLeaseLost and changes nothing; a holder whose
// lease ran out may still release while nobody claimed the job again.
func RunTimetable(t *testing.T, open TimetableOpener) {
	t.Helper()
	t.Run("Schedule", func(t *testing.T) { t.Parallel(); timetableSchedule(t, open(t)) })
	t.Run("Claims", func(t *testing.T) { t.Parallel(); timetableClaims(t, open(t)) })
	t.Run("ScheduleWhileClaimed", func(t *testing.T) { t.Parallel(); timetableWhileClaimed(t, open(t)) })
	t.Run("LeaseExpiry", func(t *testing.T) { t.Parallel(); timetableLeaseExpiry(t, open(t)) })
	t.Run("BackOff", func(t *testing.T) { t.Parallel(); timetableBackOff(t, open(t)) })
	t.Run("Stats", func(t *testing.T) { t.Parallel(); timetableStats(t, open(t)) })
	t.Run("Many", func(t *testing.T) { t.Parallel(); timetableMany(t, open(t)) })
	t.Run("ClaimRace", func(t *testing.T) {
		t.Parallel()
		tt := open(t)
		timetableClaimRace(t, tt, tt)
	})
}

// RunTimetableNodes runs the parts of the suite that need two nodes on one
// backend: concurrent claims by both see each job exactly once.
func RunTimetableNodes(t *testing.T, open TimetablePairOpener) {
	t.Helper()
	t.Run("ClaimRace", func(t *testing.T) {
		a, b := open(t)
		timetableClaimRace(t, a, b)
	})
}

// ttBase is the suite's clock origin: whole milliseconds.
var ttBase = time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)

func ttDue(t *testing.T, tt store.Timetable, job string) (time.Time, bool) {
	t.Helper()
	at, ok, err := tt.Due(testContext(t), job)
	if err != nil {
		t.Fatalf("Due(%q): %v", job, err)
	}
	return at, ok
}

func ttSchedule(t *testing.T, tt store.Timetable, job string, at time.Time, mode store.ScheduleMode) bool {
	t.Helper()
	existed, err := tt.Schedule(testContext(t), job, at, mode)
	if err != nil {
		t.Fatalf("Schedule(%q, %v, mode %d): %v", job, at, mode, err)
	}
	return existed
}

func ttClaim(t *testing.T, tt store.Timetable, now time.Time, max int, lease time.Duration) []store.Claim {
	t.Helper()
	cs, err := tt.Claim(testContext(t), now, max, lease)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return cs
}

func ttRelease(t *testing.T, tt store.Timetable, c store.Claim, next time.Time, backoff bool) {
	t.Helper()
	if err := tt.Release(testContext(t), c, next, backoff); err != nil {
		t.Fatalf("Release(%q): %v", c.Job, err)
	}
}

func claimedJobs(cs []store.Claim) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Job)
	}
	return out
}

func timetableSchedule(t *testing.T, tt store.Timetable) {
	ctx := testContext(t)
	base := ttBase
	check := func(job string, want time.Time) {
		t.Helper()
		at, ok := ttDue(t, tt, job)
		switch {
		case want.IsZero() && ok:
			t.Fatalf("Due(%q) = %v, want no such job", job, at)
		case !want.IsZero() && (!ok || !at.Equal(want)):
			t.Fatalf("Due(%q) = %v, %v; want %v", job, at, ok, want)
		}
	}
	check("f:x", time.Time{})
	if ttSchedule(t, tt, "f:x", base, store.IfPresent) {
		t.Fatal("Schedule(IfPresent) of an absent job reports it existed")
	}
	check("f:x", time.Time{})
	if ttSchedule(t, tt, "f:x", base.Add(time.Minute), store.IfAbsent) {
		t.Fatal("Schedule(IfAbsent) of a new job reports it existed")
	}
	if !ttSchedule(t, tt, "f:x", base, store.IfAbsent) {
		t.Fatal("Schedule(IfAbsent) of an existing job reports it did not exist")
	}
	check("f:x", base.Add(time.Minute))
	ttSchedule(t, tt, "f:x", base.Add(time.Hour), store.Earlier)
	check("f:x", base.Add(time.Minute)) // never later
	ttSchedule(t, tt, "f:x", base.Add(time.Second), store.Earlier)
	check("f:x", base.Add(time.Second))
	if !ttSchedule(t, tt, "f:x", base, store.IfPresent) {
		t.Fatal("Schedule(IfPresent) of an existing job reports it did not exist")
	}
	check("f:x", base)
	ttSchedule(t, tt, "f:x", base.Add(time.Hour), store.IfPresent)
	check("f:x", base)
	ttSchedule(t, tt, "f:x", base.Add(-time.Millisecond), store.Override)
	check("f:x", base.Add(-time.Millisecond))
	ttSchedule(t, tt, "s:new", base.Add(1500*time.Microsecond), store.Earlier)
	check("s:new", base.Add(time.Millisecond)) // kept to the millisecond
	if err := tt.Remove(ctx, "f:x"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	check("f:x", time.Time{})
	if err := tt.Remove(ctx, "f:x"); err != nil {
		t.Fatalf("Remove of an absent job: %v", err)
	}
	// Job names are exact, whatever bytes they hold.
	odd := "f:http://example.com/é?a=1&b=\x00|x"
	ttSchedule(t, tt, odd, base, store.Earlier)
	check(odd, base)
	check("f:http://example.com/é?a=1&b=", time.Time{})
	if cs := ttClaim(t, tt, base, 10, time.Minute); !slices.Contains(claimedJobs(cs), odd) {
		t.Fatalf("Claim = %q, want %q among them", claimedJobs(cs), odd)
	}
}

func timetableClaims(t *testing.T, tt store.Timetable) {
	ctx := testContext(t)
	now := ttBase
	if cs := ttClaim(t, tt, now, 10, time.Minute); len(cs) != 0 {
		t.Fatalf("Claim with no jobs = %v", cs)
	}
	for i, j := range []string{"f:c", "f:a", "f:b", "f:later"} {
		at := now.Add(-time.Duration(3-i) * time.Second)
		if j == "f:later" {
			at = now.Add(time.Hour)
		}
		ttSchedule(t, tt, j, at, store.IfAbsent)
	}
	// f:c is due at now-3s, f:a at now-2s, f:b at now-1s.
	cs := ttClaim(t, tt, now, 2, time.Minute)
	if got := claimedJobs(cs); !slices.Equal(got, []string{"f:c", "f:a"}) {
		t.Fatalf("Claim(max 2) = %v, want [f:c f:a] (earliest first)", got)
	}
	if cs[0].Token == "" || !cs[0].Until.Equal(now.Add(time.Minute)) || cs[0].Retaken {
		t.Fatalf("claim = %+v, want a token, Until = now+lease, not retaken", cs[0])
	}
	if at, _ := ttDue(t, tt, "f:c"); !at.Equal(now.Add(time.Minute)) {
		t.Fatalf("Due of a claimed job = %v, want the lease's end %v", at, now.Add(time.Minute))
	}
	if got := claimedJobs(ttClaim(t, tt, now, 10, time.Minute)); !slices.Equal(got, []string{"f:b"}) {
		t.Fatalf("second Claim = %v, want only [f:b]", got)
	}
	if got := ttClaim(t, tt, now.Add(30*time.Second), 10, time.Minute); len(got) != 0 {
		t.Fatalf("Claim during the leases = %v, want none", claimedJobs(got))
	}
	ttRelease(t, tt, cs[0], now.Add(2*time.Hour), false)
	if at, _ := ttDue(t, tt, "f:c"); !at.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("after release f:c is due %v, want %v", at, now.Add(2*time.Hour))
	}
	if err := tt.Release(ctx, cs[0], now, false); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("second Release = %v, want ErrLeaseLost", err)
	}
	if at, _ := ttDue(t, tt, "f:c"); !at.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("a lost Release changed the job: due %v", at)
	}
	// A zero next removes the job.
	ttRelease(t, tt, cs[1], time.Time{}, false)
	if _, ok := ttDue(t, tt, "f:a"); ok {
		t.Fatal("Release with a zero next left the job")
	}
	// A job removed while claimed is not brought back by its release.
	cb := ttClaim(t, tt, now.Add(2*time.Minute), 10, time.Minute) // f:b's lease ran out
	if got := claimedJobs(cb); !slices.Equal(got, []string{"f:b"}) || !cb[0].Retaken {
		t.Fatalf("Claim after f:b's lease ran out = %+v, want f:b retaken", cb)
	}
	if err := tt.Remove(ctx, "f:b"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := tt.Release(ctx, cb[0], now, false); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("Release of a removed job = %v, want ErrLeaseLost", err)
	}
	if _, ok := ttDue(t, tt, "f:b"); ok {
		t.Fatal("the release of a removed job added it back")
	}
	if got := ttClaim(t, tt, now.Add(59*time.Minute), 10, time.Minute); len(got) != 0 {
		t.Fatalf("Claim before f:later is due = %v", claimedJobs(got))
	}
	if got := claimedJobs(ttClaim(t, tt, now.Add(time.Hour), 10, time.Minute)); !slices.Equal(got, []string{"f:later"}) {
		t.Fatalf("Claim when f:later is due = %v", got)
	}
	if got := ttClaim(t, tt, now, 0, time.Minute); len(got) != 0 {
		t.Fatalf("Claim(max 0) = %v", claimedJobs(got))
	}
}

// timetableWhileClaimed: requests for a claimed job wait for its release.
func timetableWhileClaimed(t *testing.T, tt store.Timetable) {
	now := ttBase
	ttSchedule(t, tt, "j", now, store.Earlier)
	cs := ttClaim(t, tt, now, 10, time.Minute)
	if len(cs) != 1 {
		t.Fatalf("claim: %v", claimedJobs(cs))
	}
	// Asked for while claimed: the claim holds, the request waits.
	ttSchedule(t, tt, "j", now.Add(5*time.Second), store.Earlier)
	ttSchedule(t, tt, "j", now.Add(7*time.Second), store.IfPresent)
	if got := ttClaim(t, tt, now.Add(10*time.Second), 10, time.Minute); len(got) != 0 {
		t.Fatalf("a claimed job was claimed again after Schedule: %v", claimedJobs(got))
	}
	ttRelease(t, tt, cs[0], now.Add(time.Hour), false)
	if at, _ := ttDue(t, tt, "j"); !at.Equal(now.Add(5 * time.Second)) {
		t.Fatalf("after release the job is due %v, want the earlier %v asked for while claimed", at, now.Add(5*time.Second))
	}
	// Asked for while claimed, released with a zero next: still due.
	cs = ttClaim(t, tt, now.Add(5*time.Second), 10, time.Minute)
	if len(cs) != 1 {
		t.Fatalf("claim: %v", claimedJobs(cs))
	}
	ttSchedule(t, tt, "j", now.Add(6*time.Second), store.Earlier)
	ttRelease(t, tt, cs[0], time.Time{}, false)
	if at, ok := ttDue(t, tt, "j"); !ok || !at.Equal(now.Add(6*time.Second)) {
		t.Fatalf("a job asked for while claimed and released with no next: due %v, %v; want %v", at, ok, now.Add(6*time.Second))
	}
	// Requests made before a claim are served by it.
	ttSchedule(t, tt, "j", now.Add(6*time.Second), store.Earlier)
	cs = ttClaim(t, tt, now.Add(6*time.Second), 10, time.Minute)
	if len(cs) != 1 {
		t.Fatalf("claim: %v", claimedJobs(cs))
	}
	ttRelease(t, tt, cs[0], time.Time{}, false)
	if _, ok := ttDue(t, tt, "j"); ok {
		t.Fatal("a request made before the claim outlived it")
	}
}

// timetableLeaseExpiry: the job of a holder that stopped comes back.
func timetableLeaseExpiry(t *testing.T, tt store.Timetable) {
	ctx := testContext(t)
	now := ttBase
	ttSchedule(t, tt, "j", now, store.Earlier)
	first := ttClaim(t, tt, now, 10, 10*time.Second)
	if len(first) != 1 {
		t.Fatalf("claim: %v", claimedJobs(first))
	}
	if got := ttClaim(t, tt, now.Add(9*time.Second), 10, 10*time.Second); len(got) != 0 {
		t.Fatalf("claimed while leased: %v", claimedJobs(got))
	}
	second := ttClaim(t, tt, now.Add(11*time.Second), 10, 10*time.Second)
	if len(second) != 1 || !second[0].Retaken || second[0].Token == first[0].Token {
		t.Fatalf("claim after the lease ran out: %+v; want one retaken claim with a new token", second)
	}
	if err := tt.Release(ctx, first[0], time.Time{}, false); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("release by the old holder: %v, want ErrLeaseLost", err)
	}
	if _, ok := ttDue(t, tt, "j"); !ok {
		t.Fatal("a lost release removed the job")
	}
	ttRelease(t, tt, second[0], now.Add(time.Hour), false)
	// A holder whose lease ran out may still release while nobody took it.
	third := ttClaim(t, tt, now.Add(time.Hour), 10, time.Second)
	if len(third) != 1 || third[0].Retaken {
		t.Fatalf("claim after a proper release: %+v; want one, not retaken", third)
	}
	ttRelease(t, tt, third[0], now.Add(2*time.Hour), false)
	if at, _ := ttDue(t, tt, "j"); !at.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("release after the lease ran out: due %v", at)
	}
}

// timetableBackOff: a job released with backoff is not due before next,
// whatever is asked, unless overridden.
func timetableBackOff(t *testing.T, tt store.Timetable) {
	now := ttBase
	ttSchedule(t, tt, "j", now, store.Earlier)
	cs := ttClaim(t, tt, now, 10, time.Minute)
	ttSchedule(t, tt, "j", now.Add(time.Second), store.Earlier) // while claimed
	retry := now.Add(10 * time.Second)
	ttRelease(t, tt, cs[0], retry, true)
	ttSchedule(t, tt, "j", now.Add(2*time.Second), store.Earlier)
	ttSchedule(t, tt, "j", now.Add(3*time.Second), store.IfPresent)
	if got := ttClaim(t, tt, retry.Add(-time.Millisecond), 10, time.Minute); len(got) != 0 {
		t.Fatalf("a job backing off was claimed before its retry time: %v", claimedJobs(got))
	}
	cs = ttClaim(t, tt, retry, 10, time.Minute)
	if len(cs) != 1 {
		t.Fatalf("claim at the retry time: %v", claimedJobs(cs))
	}
	// Failing again, then an Override cuts the back-off short.
	ttRelease(t, tt, cs[0], retry.Add(time.Hour), true)
	ttSchedule(t, tt, "j", retry.Add(time.Second), store.Override)
	cs = ttClaim(t, tt, retry.Add(time.Second), 10, time.Minute)
	if len(cs) != 1 {
		t.Fatalf("an Override did not cut the back-off short: %v", claimedJobs(cs))
	}
	// A success ends the back-off: requests count again.
	ttRelease(t, tt, cs[0], retry.Add(time.Hour), false)
	ttSchedule(t, tt, "j", retry.Add(2*time.Second), store.Earlier)
	if cs := ttClaim(t, tt, retry.Add(2*time.Second), 10, time.Minute); len(cs) != 1 {
		t.Fatalf("after a success a request did not make the job due: %v", claimedJobs(cs))
	}
}

func timetableStats(t *testing.T, tt store.Timetable) {
	ctx := testContext(t)
	stats := func(now time.Time) store.TimetableStats {
		t.Helper()
		st, err := tt.Stats(ctx, now)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		return st
	}
	if st := stats(ttBase); st != (store.TimetableStats{}) {
		t.Fatalf("Stats of an empty timetable = %+v", st)
	}
	for i := range 4 {
		ttSchedule(t, tt, fmt.Sprintf("j%d", i), ttBase.Add(time.Duration(i)*time.Hour), store.Earlier)
	}
	ttClaim(t, tt, ttBase, 1, time.Minute) // j0, leased until +1m
	if st, want := stats(ttBase.Add(30*time.Second)), (store.TimetableStats{Jobs: 4, Leased: 1}); st != want {
		t.Fatalf("Stats at +30s = %+v, want %+v", st, want)
	}
	// At +90m: j0's lease ran out (due again), j1 is due, j2 and j3 are not.
	if st, want := stats(ttBase.Add(90*time.Minute)), (store.TimetableStats{Jobs: 4, Due: 2}); st != want {
		t.Fatalf("Stats at +90m = %+v, want %+v", st, want)
	}
}

// timetableMany claims more jobs than one claim takes, in small bites: every
// job comes out once, earliest first.
func timetableMany(t *testing.T, tt store.Timetable) {
	const n = 300
	for i := range n {
		ttSchedule(t, tt, fmt.Sprintf("job-%03d", i), ttBase.Add(time.Duration(i)*time.Millisecond), store.Earlier)
	}
	var got []string
	for len(got) < n {
		cs := ttClaim(t, tt, ttBase.Add(time.Second), 7, time.Minute)
		if len(cs) == 0 {
			t.Fatalf("Claim returned nothing after %d of %d jobs", len(got), n)
		}
		got = append(got, claimedJobs(cs)...)
	}
	for i, j := range got {
		if want := fmt.Sprintf("job-%03d", i); j != want {
			t.Fatalf("claim %d was %s, want %s (earliest first)", i, j, want)
		}
	}
}

// timetableClaimRace has 8 claimers on two timetables take 200 due jobs:
// each job is claimed exactly once.
func timetableClaimRace(t *testing.T, a, b store.Timetable) {
	ctx := testContext(t)
	now := ttBase
	const jobs = 200
	for i := range jobs {
		if _, err := a.Schedule(ctx, fmt.Sprintf("f:http://example.com/%03d", i), now.Add(-time.Duration(i)*time.Millisecond), store.IfAbsent); err != nil {
			t.Fatalf("Schedule: %v", err)
		}
	}
	var mu sync.Mutex
	seen := make(map[string]int)
	var wg sync.WaitGroup
	for g := range 8 {
		tt := a
		if g%2 == 1 {
			tt = b
		}
		wg.Go(func() {
			for {
				cs, err := tt.Claim(ctx, now, 7, time.Minute)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				mu.Lock()
				for _, c := range cs {
					seen[c.Job]++
				}
				done := len(seen) == jobs
				mu.Unlock()
				if len(cs) == 0 && done {
					return
				}
				// An empty claim before the end: others took what this
				// claimer saw; the rest is still due.
			}
		})
	}
	wg.Wait()
	if len(seen) != jobs {
		t.Fatalf("%d distinct jobs claimed, want %d", len(seen), jobs)
	}
	for j, n := range seen {
		if n != 1 {
			t.Fatalf("job %s claimed %d times", j, n)
		}
	}
}
