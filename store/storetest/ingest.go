package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

// IngestOpener opens a store.IngestStore on fresh, empty backing data; the
// opener closes it in its own t.Cleanup.
type IngestOpener func(t *testing.T) store.IngestStore

// IngestNodesOpener opens two store.IngestStores on the same fresh backing
// data, standing for two gateway nodes.
type IngestNodesOpener func(t *testing.T) (a, b store.IngestStore)

// RunIngest runs the conformance suite of store.IngestStore.
//
// Beyond the interface's doc comments it pins down: job times are kept to
// the millisecond; ClaimJobs returns due jobs earliest first; a job claimed
// by one caller is not returned to any other until its lease ends or it is
// released; ReleaseJob with a stale claim (lease run out and claimed again,
// or job removed) fails with ErrLeaseLost and changes nothing.
func RunIngest(t *testing.T, open IngestOpener) {
	t.Helper()
	t.Run("State", func(t *testing.T) { t.Parallel(); ingestState(t, open(t)) })
	t.Run("Upstreams", func(t *testing.T) { t.Parallel(); ingestUpstreams(t, open(t)) })
	t.Run("Jobs", func(t *testing.T) { t.Parallel(); ingestJobs(t, open(t)) })
	t.Run("Claims", func(t *testing.T) { t.Parallel(); ingestClaims(t, open(t)) })
	t.Run("ClaimRace", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ingestClaimRace(t, s, s)
	})
}

// RunIngestNodes runs the parts of the suite that need two nodes on one
// backend: concurrent claims by both see each job exactly once.
func RunIngestNodes(t *testing.T, open IngestNodesOpener) {
	t.Helper()
	t.Run("ClaimRace", func(t *testing.T) {
		a, b := open(t)
		ingestClaimRace(t, a, b)
	})
}

func ingestCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ingestState(t *testing.T, s store.IngestStore) {
	ctx := ingestCtx(t)
	const topic = "http://example.com/feed?x=1&y=\u00e9"
	st, err := s.IngestState(ctx, topic)
	if err != nil {
		t.Fatalf("IngestState of an unknown topic: %v", err)
	}
	if st.Topic != topic || st.ETag != "" || st.Period != 0 {
		t.Fatalf("IngestState of an unknown topic = %+v, want the zero state with Topic set", st)
	}
	now := time.Now().Truncate(time.Millisecond)
	want := store.IngestState{
		Topic: topic, FetchURL: "http://example.com/moved", ETag: `"abc"`, LastModified: "Mon, 02 Jan 2006 15:04:05 GMT",
		Self: "http://example.com/self", Hubs: []string{"http://hub.example/", "http://hub2.example/"}, HubsFrom: topic,
		Period: 90 * time.Second, Failures: 2, LastFetch: now, LastChange: now.Add(-time.Hour),
	}
	if err := s.UpdateIngestState(ctx, topic, func(st *store.IngestState) error {
		if st.Topic != topic {
			return fmt.Errorf("fn got Topic %q", st.Topic)
		}
		*st = want
		return nil
	}); err != nil {
		t.Fatalf("UpdateIngestState: %v", err)
	}
	got, err := s.IngestState(ctx, topic)
	if err != nil {
		t.Fatalf("IngestState: %v", err)
	}
	if !ingestStateEqual(got, want) {
		t.Fatalf("IngestState = %+v, want %+v", got, want)
	}
	boom := errors.New("boom")
	if err := s.UpdateIngestState(ctx, topic, func(st *store.IngestState) error {
		st.ETag = "changed"
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("UpdateIngestState with a failing fn = %v, want its error", err)
	}
	if got, _ := s.IngestState(ctx, topic); got.ETag != want.ETag {
		t.Fatalf("a failed update was stored: ETag %q", got.ETag)
	}
	// Concurrent updates are not lost.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if err := s.UpdateIngestState(ctx, topic, func(st *store.IngestState) error {
					st.Failures++
					return nil
				}); err != nil {
					t.Errorf("concurrent UpdateIngestState: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got, _ := s.IngestState(ctx, topic); got.Failures != want.Failures+40 {
		t.Fatalf("after 40 concurrent increments Failures = %d, want %d", got.Failures, want.Failures+40)
	}
	if err := s.DeleteIngestState(ctx, topic); err != nil {
		t.Fatalf("DeleteIngestState: %v", err)
	}
	if got, _ := s.IngestState(ctx, topic); got.ETag != "" || got.Topic != topic {
		t.Fatalf("after DeleteIngestState: %+v", got)
	}
	if err := s.DeleteIngestState(ctx, topic); err != nil {
		t.Fatalf("DeleteIngestState of an absent state: %v", err)
	}
}

func ingestStateEqual(a, b store.IngestState) bool {
	return a.Topic == b.Topic && a.FetchURL == b.FetchURL && a.ETag == b.ETag && a.LastModified == b.LastModified &&
		a.Self == b.Self && slices.Equal(a.Hubs, b.Hubs) && a.HubsFrom == b.HubsFrom && a.Period == b.Period &&
		a.Failures == b.Failures && a.LastFetch.Equal(b.LastFetch) && a.LastChange.Equal(b.LastChange)
}

func ingestUpstreams(t *testing.T, s store.IngestStore) {
	ctx := ingestCtx(t)
	const topic, other = "http://example.com/a", "http://example.com/b"
	if _, err := s.Upstream(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Upstream of an unknown id = %v, want ErrNotFound", err)
	}
	if err := s.UpdateUpstream(ctx, "nope", func(*store.Upstream) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateUpstream of an unknown id = %v, want ErrNotFound", err)
	}
	if ups, err := s.TopicUpstreams(ctx, topic); err != nil || len(ups) != 0 {
		t.Fatalf("TopicUpstreams of a new topic = %v, %v", ups, err)
	}
	now := time.Now().Truncate(time.Millisecond)
	mk := func(id, topic string) store.Upstream {
		return store.Upstream{ID: id, Topic: topic, HubTopic: topic + "/self", Hub: "http://hub.example/" + id,
			Secret: "s3cret-" + id, State: store.UpstreamSubscribing, RequestedAt: now}
	}
	for _, u := range []store.Upstream{mk("id-c", topic), mk("id-a", topic), mk("id-b", other)} {
		if err := s.PutUpstream(ctx, u); err != nil {
			t.Fatalf("PutUpstream: %v", err)
		}
	}
	got, err := s.Upstream(ctx, "id-a")
	if err != nil {
		t.Fatalf("Upstream: %v", err)
	}
	if want := mk("id-a", topic); got.Topic != want.Topic || got.HubTopic != want.HubTopic || got.Hub != want.Hub ||
		got.Secret != want.Secret || got.State != want.State || !got.RequestedAt.Equal(want.RequestedAt) {
		t.Fatalf("Upstream = %+v, want %+v", got, want)
	}
	ids := func(topic string) []string {
		t.Helper()
		ups, err := s.TopicUpstreams(ctx, topic)
		if err != nil {
			t.Fatalf("TopicUpstreams: %v", err)
		}
		var out []string
		for _, u := range ups {
			out = append(out, u.ID)
		}
		return out
	}
	if got := ids(topic); !slices.Equal(got, []string{"id-a", "id-c"}) {
		t.Fatalf("TopicUpstreams = %v, want [id-a id-c]", got)
	}
	if got := ids(other); !slices.Equal(got, []string{"id-b"}) {
		t.Fatalf("TopicUpstreams(other) = %v, want [id-b]", got)
	}
	exp := now.Add(10 * 24 * time.Hour)
	if err := s.UpdateUpstream(ctx, "id-a", func(u *store.Upstream) error {
		u.State, u.LeaseSeconds, u.VerifiedAt, u.ExpiresAt, u.Endpoint = store.UpstreamActive, 864000, now, exp, "http://hub2.example/"
		return nil
	}); err != nil {
		t.Fatalf("UpdateUpstream: %v", err)
	}
	got, _ = s.Upstream(ctx, "id-a")
	if got.State != store.UpstreamActive || got.LeaseSeconds != 864000 || !got.ExpiresAt.Equal(exp) || got.Endpoint != "http://hub2.example/" || got.Secret != "s3cret-id-a" {
		t.Fatalf("after UpdateUpstream: %+v", got)
	}
	boom := errors.New("boom")
	if err := s.UpdateUpstream(ctx, "id-a", func(u *store.Upstream) error { u.State = store.UpstreamDenied; return boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateUpstream with a failing fn = %v", err)
	}
	if got, _ := s.Upstream(ctx, "id-a"); got.State != store.UpstreamActive {
		t.Fatalf("a failed update was stored: %+v", got)
	}
	// Replacing keeps one record.
	r := mk("id-a", topic)
	r.State = store.UpstreamUnsubscribing
	if err := s.PutUpstream(ctx, r); err != nil {
		t.Fatalf("PutUpstream (replace): %v", err)
	}
	if got := ids(topic); !slices.Equal(got, []string{"id-a", "id-c"}) {
		t.Fatalf("after a replace TopicUpstreams = %v", got)
	}
	if err := s.DeleteUpstream(ctx, "id-a"); err != nil {
		t.Fatalf("DeleteUpstream: %v", err)
	}
	if _, err := s.Upstream(ctx, "id-a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Upstream after delete = %v, want ErrNotFound", err)
	}
	if got := ids(topic); !slices.Equal(got, []string{"id-c"}) {
		t.Fatalf("after delete TopicUpstreams = %v", got)
	}
	if err := s.DeleteUpstream(ctx, "id-a"); err != nil {
		t.Fatalf("DeleteUpstream of an absent id: %v", err)
	}
}

func ingestJobs(t *testing.T, s store.IngestStore) {
	ctx := ingestCtx(t)
	base := time.Now().Truncate(time.Millisecond)
	due := func(job string) (time.Time, bool) {
		t.Helper()
		at, ok, err := s.JobDue(ctx, job)
		if err != nil {
			t.Fatalf("JobDue: %v", err)
		}
		return at, ok
	}
	if _, ok := due("f:x"); ok {
		t.Fatal("JobDue of an absent job reports it exists")
	}
	if ok, err := s.ExpediteJob(ctx, "f:x", base); err != nil || ok {
		t.Fatalf("ExpediteJob of an absent job = %v, %v; want false", ok, err)
	}
	if _, ok := due("f:x"); ok {
		t.Fatal("ExpediteJob added an absent job")
	}
	if added, err := s.AddJob(ctx, "f:x", base.Add(time.Minute)); err != nil || !added {
		t.Fatalf("AddJob = %v, %v; want added", added, err)
	}
	if added, err := s.AddJob(ctx, "f:x", base); err != nil || added {
		t.Fatalf("AddJob of an existing job = %v, %v; want not added", added, err)
	}
	if at, ok := due("f:x"); !ok || !at.Equal(base.Add(time.Minute)) {
		t.Fatalf("JobDue = %v, %v; want %v", at, ok, base.Add(time.Minute))
	}
	if err := s.ScheduleJob(ctx, "f:x", base.Add(time.Hour)); err != nil {
		t.Fatalf("ScheduleJob: %v", err)
	}
	if at, _ := due("f:x"); !at.Equal(base.Add(time.Minute)) {
		t.Fatalf("ScheduleJob moved a job later: due %v", at)
	}
	if err := s.ScheduleJob(ctx, "f:x", base.Add(time.Second)); err != nil {
		t.Fatalf("ScheduleJob: %v", err)
	}
	if at, _ := due("f:x"); !at.Equal(base.Add(time.Second)) {
		t.Fatalf("ScheduleJob earlier: due %v, want %v", at, base.Add(time.Second))
	}
	if ok, err := s.ExpediteJob(ctx, "f:x", base); err != nil || !ok {
		t.Fatalf("ExpediteJob = %v, %v", ok, err)
	}
	if at, _ := due("f:x"); !at.Equal(base) {
		t.Fatalf("ExpediteJob: due %v, want %v", at, base)
	}
	if ok, err := s.ExpediteJob(ctx, "f:x", base.Add(time.Hour)); err != nil || !ok {
		t.Fatalf("ExpediteJob later = %v, %v", ok, err)
	}
	if at, _ := due("f:x"); !at.Equal(base) {
		t.Fatalf("ExpediteJob moved a job later: due %v", at)
	}
	if err := s.ScheduleJob(ctx, "s:new", base); err != nil {
		t.Fatalf("ScheduleJob of a new job: %v", err)
	}
	if _, ok := due("s:new"); !ok {
		t.Fatal("ScheduleJob did not add a new job")
	}
	if err := s.RemoveJob(ctx, "f:x"); err != nil {
		t.Fatalf("RemoveJob: %v", err)
	}
	if _, ok := due("f:x"); ok {
		t.Fatal("job still there after RemoveJob")
	}
	if err := s.RemoveJob(ctx, "f:x"); err != nil {
		t.Fatalf("RemoveJob of an absent job: %v", err)
	}
}

func claimedJobs(cs []store.Claim) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Job)
	}
	return out
}

func ingestClaims(t *testing.T, s store.IngestStore) {
	ctx := ingestCtx(t)
	now := time.Now().Truncate(time.Millisecond)
	claim := func(at time.Time, max int, lease time.Duration) []store.Claim {
		t.Helper()
		cs, err := s.ClaimJobs(ctx, at, max, lease)
		if err != nil {
			t.Fatalf("ClaimJobs: %v", err)
		}
		return cs
	}
	if cs := claim(now, 10, time.Minute); len(cs) != 0 {
		t.Fatalf("ClaimJobs with no jobs = %v", cs)
	}
	for i, j := range []string{"f:c", "f:a", "f:b", "f:later"} {
		at := now.Add(-time.Duration(3-i) * time.Second)
		if j == "f:later" {
			at = now.Add(time.Hour)
		}
		if _, err := s.AddJob(ctx, j, at); err != nil {
			t.Fatalf("AddJob: %v", err)
		}
	}
	// f:c is due at now-3s, f:a at now-2s, f:b at now-1s.
	cs := claim(now, 2, time.Minute)
	if got := claimedJobs(cs); !slices.Equal(got, []string{"f:c", "f:a"}) {
		t.Fatalf("ClaimJobs(max 2) = %v, want [f:c f:a] (earliest first)", got)
	}
	if cs[0].Token == "" || !cs[0].Until.Equal(now.Add(time.Minute)) {
		t.Fatalf("claim = %+v, want a token and Until = now+lease", cs[0])
	}
	if got := claimedJobs(claim(now, 10, time.Minute)); !slices.Equal(got, []string{"f:b"}) {
		t.Fatalf("second ClaimJobs = %v, want only [f:b]", got)
	}
	if got := claim(now.Add(30*time.Second), 10, time.Minute); len(got) != 0 {
		t.Fatalf("ClaimJobs during the leases = %v, want none", claimedJobs(got))
	}
	// f:a is asked for earlier while claimed: released with a later next
	// time, it is due at the earlier one.
	if err := s.ScheduleJob(ctx, "f:a", now.Add(5*time.Second)); err != nil {
		t.Fatalf("ScheduleJob: %v", err)
	}
	if got := claim(now.Add(10*time.Second), 10, time.Minute); len(got) != 0 {
		t.Fatalf("a leased job was claimed again after ScheduleJob: %v", claimedJobs(got))
	}
	if err := s.ReleaseJob(ctx, cs[1], now.Add(time.Hour)); err != nil {
		t.Fatalf("ReleaseJob: %v", err)
	}
	if at, _, _ := s.JobDue(ctx, "f:a"); !at.Equal(now.Add(5 * time.Second)) {
		t.Fatalf("after release f:a is due %v, want the earlier %v", at, now.Add(5*time.Second))
	}
	if err := s.ReleaseJob(ctx, cs[1], now.Add(time.Hour)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("second ReleaseJob = %v, want ErrLeaseLost", err)
	}
	// f:c released normally goes to next.
	if err := s.ReleaseJob(ctx, cs[0], now.Add(2*time.Hour)); err != nil {
		t.Fatalf("ReleaseJob: %v", err)
	}
	if at, _, _ := s.JobDue(ctx, "f:c"); !at.Equal(now.Add(2 * time.Hour)) {
		t.Fatalf("after release f:c is due %v, want %v", at, now.Add(2*time.Hour))
	}
	// f:b's lease runs out: it is claimed again, and the old claim is stale.
	old := claim(now.Add(2*time.Minute), 10, time.Minute)
	if got := claimedJobs(old); !slices.Equal(got, []string{"f:a", "f:b"}) {
		t.Fatalf("ClaimJobs after the leases ran out = %v, want [f:a f:b]", got)
	}
	var fb store.Claim
	for _, c := range old {
		if c.Job == "f:b" {
			fb = c
		}
	}
	stale := cs[0]
	stale.Job = "f:b"
	if err := s.ReleaseJob(ctx, stale, now); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("ReleaseJob with a stale claim = %v, want ErrLeaseLost", err)
	}
	// A zero next removes the job.
	if err := s.ReleaseJob(ctx, fb, time.Time{}); err != nil {
		t.Fatalf("ReleaseJob(zero): %v", err)
	}
	if _, ok, _ := s.JobDue(ctx, "f:b"); ok {
		t.Fatal("ReleaseJob with a zero next left the job")
	}
	// A job removed while claimed is not brought back by its release.
	for _, c := range old {
		if c.Job == "f:a" {
			if err := s.RemoveJob(ctx, "f:a"); err != nil {
				t.Fatalf("RemoveJob: %v", err)
			}
			if err := s.ReleaseJob(ctx, c, now); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("ReleaseJob of a removed job = %v, want ErrLeaseLost", err)
			}
			if _, ok, _ := s.JobDue(ctx, "f:a"); ok {
				t.Fatal("the release of a removed job added it back")
			}
		}
	}
	if got := claimedJobs(claim(now.Add(59*time.Minute), 10, time.Minute)); len(got) != 0 {
		t.Fatalf("ClaimJobs before f:later is due = %v", got)
	}
	if got := claimedJobs(claim(now.Add(time.Hour), 10, time.Minute)); !slices.Equal(got, []string{"f:later"}) {
		t.Fatalf("ClaimJobs when f:later is due = %v", got)
	}
}

// ingestClaimRace has 8 claimers on two stores take 200 due jobs: each job
// is claimed exactly once.
func ingestClaimRace(t *testing.T, a, b store.IngestStore) {
	ctx := ingestCtx(t)
	now := time.Now()
	const jobs = 200
	for i := range jobs {
		if _, err := a.AddJob(ctx, fmt.Sprintf("f:http://example.com/%03d", i), now.Add(-time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatalf("AddJob: %v", err)
		}
	}
	var mu sync.Mutex
	seen := make(map[string]int)
	var wg sync.WaitGroup
	for g := range 8 {
		s := a
		if g%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for {
				cs, err := s.ClaimJobs(ctx, now, 7, time.Minute)
				if err != nil {
					t.Errorf("ClaimJobs: %v", err)
					return
				}
				if len(cs) == 0 {
					return
				}
				mu.Lock()
				for _, c := range cs {
					seen[c.Job]++
				}
				mu.Unlock()
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
