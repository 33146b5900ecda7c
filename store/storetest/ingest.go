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

// RunIngest runs the conformance suite of store.IngestStore, its
// timetable's included (RunTimetable on IngestJobs).
func RunIngest(t *testing.T, open IngestOpener) {
	t.Helper()
	t.Run("State", func(t *testing.T) { t.Parallel(); ingestState(t, open(t)) })
	t.Run("Upstreams", func(t *testing.T) { t.Parallel(); ingestUpstreams(t, open(t)) })
	t.Run("Jobs", func(t *testing.T) {
		RunTimetable(t, func(t *testing.T) store.Timetable { return open(t).IngestJobs() })
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
