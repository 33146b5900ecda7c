package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

// RunDelivery runs the conformance suite of store.DeliveryStore against the
// stores open returns (they must implement it). The semantics it pins down,
// beyond the interface's doc comments:
//
//   - Times passed as now are the only clock: a backend never reads its own,
//     so a test can move time forward by passing a later now.
//   - A claim whose lease ran out can be claimed again (Retaken is then
//     true); until someone does, its holder may still release it.
//   - Times of records keep at least second precision.
func RunDelivery(t *testing.T, open Opener) {
	t.Helper()
	o := func(t *testing.T) store.DeliveryStore {
		t.Helper()
		s := open(t, store.Options{})
		if s == nil {
			t.Fatal("open returned a nil store")
		}
		t.Cleanup(func() { _ = s.Close() })
		ds, ok := s.(store.DeliveryStore)
		if !ok {
			t.Fatalf("%T does not implement store.DeliveryStore", s)
		}
		return ds
	}
	t.Run("PutRenewDelete", func(t *testing.T) { t.Parallel(); deliveryPutRenewDelete(t, o(t)) })
	t.Run("Listing", func(t *testing.T) { t.Parallel(); deliveryListing(t, o(t)) })
	t.Run("ClaimRelease", func(t *testing.T) { t.Parallel(); deliveryClaimRelease(t, o(t)) })
	t.Run("Jobs", func(t *testing.T) { t.Parallel(); deliveryJobs(t, o(t)) })
	t.Run("LeaseExpiry", func(t *testing.T) { t.Parallel(); deliveryLeaseExpiry(t, o(t)) })
	t.Run("DeleteWhileClaimed", func(t *testing.T) { t.Parallel(); deliveryDeleteWhileClaimed(t, o(t)) })
	t.Run("Stats", func(t *testing.T) { t.Parallel(); deliveryStats(t, o(t)) })
	t.Run("RetryNow", func(t *testing.T) { t.Parallel(); deliveryRetryNow(t, o(t)) })
	t.Run("ConcurrentClaims", func(t *testing.T) { t.Parallel(); deliveryConcurrent(t, o(t), o(t), false) })
}

// RunDeliveryMultiNode checks that two stores over the same backing data
// share one delivery timetable: a job claimed through one is not claimed
// through the other while leased.
func RunDeliveryMultiNode(t *testing.T, open OpenerPair) {
	t.Helper()
	a, b := open(t, store.Options{})
	if a == nil || b == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	da, ok1 := a.(store.DeliveryStore)
	db, ok2 := b.(store.DeliveryStore)
	if !ok1 || !ok2 {
		t.Fatalf("%T does not implement store.DeliveryStore", a)
	}
	deliveryConcurrent(t, da, db, true)
}

// dlvBase is the suite's clock origin: whole milliseconds, in the future of
// no real clock problem.
var dlvBase = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newDelivery(topic, callback, login string) store.Delivery {
	return store.Delivery{
		DeliveryKey:  store.DeliveryKey{Login: login, Topic: topic, Callback: callback},
		Secret:       "s3cret",
		Format:       "json",
		LeaseSeconds: 3600,
		CreatedAt:    dlvBase,
		RenewedAt:    dlvBase,
		ExpiresAt:    dlvBase.Add(time.Hour),
		Progress:     store.DeliveryProgress{Delivered: 7},
	}
}

func sameSecond(a, b time.Time) bool { return a.Unix() == b.Unix() && a.IsZero() == b.IsZero() }

func deliveryPutRenewDelete(t *testing.T, s store.DeliveryStore) {
	ctx := testContext(t)
	d := newDelivery("https://example.com/feed", "https://sub.example/cb?x=1", "ann")
	got, created, err := s.PutDelivery(ctx, d, time.Time{})
	if err != nil || !created {
		t.Fatalf("PutDelivery new: created=%v err=%v, want created", created, err)
	}
	if got.Progress.Delivered != 7 || got.Secret != "s3cret" {
		t.Fatalf("PutDelivery returned %+v", got)
	}
	back, err := s.Delivery(ctx, d.DeliveryKey)
	if err != nil {
		t.Fatalf("Delivery: %v", err)
	}
	if back.DeliveryKey != d.DeliveryKey || back.Secret != d.Secret || back.Format != d.Format ||
		back.LeaseSeconds != 3600 || !sameSecond(back.CreatedAt, d.CreatedAt) ||
		!sameSecond(back.ExpiresAt, d.ExpiresAt) || back.Progress.Delivered != 7 {
		t.Fatalf("Delivery read back %+v, want %+v", back, d)
	}

	// Renewal replaces the subscription's terms, keeps creation and progress.
	r := d
	r.Secret, r.Format, r.LeaseSeconds = "new", "atom", 60
	r.CreatedAt, r.RenewedAt, r.ExpiresAt = dlvBase.Add(time.Minute), dlvBase.Add(time.Minute), time.Time{}
	r.Progress = store.DeliveryProgress{Delivered: 99}
	got, created, err = s.PutDelivery(ctx, r, time.Time{})
	if err != nil || created {
		t.Fatalf("PutDelivery renew: created=%v err=%v, want not created", created, err)
	}
	if got.Secret != "new" || got.Format != "atom" || got.LeaseSeconds != 60 || !got.ExpiresAt.IsZero() ||
		!sameSecond(got.CreatedAt, dlvBase) || !sameSecond(got.RenewedAt, dlvBase.Add(time.Minute)) || got.Progress.Delivered != 7 {
		t.Fatalf("PutDelivery renew returned %+v", got)
	}
	back, err = s.Delivery(ctx, d.DeliveryKey)
	if err != nil || back.Secret != "new" || back.Progress.Delivered != 7 || !back.ExpiresAt.IsZero() {
		t.Fatalf("after renewal read %+v, %v", back, err)
	}

	// Keys are exact: another login or callback is another record.
	if _, err := s.Delivery(ctx, store.DeliveryKey{Login: "bob", Topic: d.Topic, Callback: d.Callback}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delivery of another login: %v, want ErrNotFound", err)
	}
	if _, err := s.Delivery(ctx, store.DeliveryKey{Login: "ann", Topic: d.Topic, Callback: "https://sub.example/cb"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delivery of another callback: %v, want ErrNotFound", err)
	}

	ok, err := s.DeleteDelivery(ctx, d.DeliveryKey)
	if err != nil || !ok {
		t.Fatalf("DeleteDelivery: %v %v, want true", ok, err)
	}
	if ok, err := s.DeleteDelivery(ctx, d.DeliveryKey); err != nil || ok {
		t.Fatalf("DeleteDelivery again: %v %v, want false, nil", ok, err)
	}
	if _, err := s.Delivery(ctx, d.DeliveryKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Delivery after delete: %v, want ErrNotFound", err)
	}
	// A new subscription after a deletion starts afresh.
	got, created, err = s.PutDelivery(ctx, r, time.Time{})
	if err != nil || !created || got.Progress.Delivered != 99 {
		t.Fatalf("PutDelivery after delete: %+v created=%v err=%v", got, created, err)
	}
}

func deliveryListing(t *testing.T, s store.DeliveryStore) {
	ctx := testContext(t)
	t1, t2 := "https://a.example/feed", "https://b.example/feed"
	for _, k := range []store.DeliveryKey{
		{Login: "zed", Topic: t1, Callback: "https://cb.example/2"},
		{Login: "bob", Topic: t1, Callback: "https://cb.example/1"},
		{Login: "ann", Topic: t1, Callback: "https://cb.example/2"},
		{Login: "ann", Topic: t2, Callback: "https://cb.example/1"},
	} {
		if _, _, err := s.PutDelivery(ctx, newDelivery(k.Topic, k.Callback, k.Login), time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.TopicDeliveries(ctx, t1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range list {
		got = append(got, d.Callback+" "+d.Login)
	}
	want := []string{"https://cb.example/1 bob", "https://cb.example/2 ann", "https://cb.example/2 zed"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("TopicDeliveries = %q, want %q", got, want)
	}
	if list, err := s.TopicDeliveries(ctx, "https://unknown.example/"); err != nil || len(list) != 0 {
		t.Fatalf("TopicDeliveries of an unknown topic = %v, %v", list, err)
	}
	topics, err := s.DeliveryTopics(ctx)
	if err != nil || fmt.Sprint(topics) != fmt.Sprint([]string{t1, t2}) {
		t.Fatalf("DeliveryTopics = %q, %v; want %q", topics, err, []string{t1, t2})
	}
	if _, err := s.DeleteDelivery(ctx, store.DeliveryKey{Login: "ann", Topic: t2, Callback: "https://cb.example/1"}); err != nil {
		t.Fatal(err)
	}
	topics, err = s.DeliveryTopics(ctx)
	if err != nil || fmt.Sprint(topics) != fmt.Sprint([]string{t1}) {
		t.Fatalf("DeliveryTopics after deleting the last of %s = %q, %v", t2, topics, err)
	}
}

func claimKeys(cs []store.DeliveryClaim) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Delivery.Login)
	}
	return out
}

func deliveryClaimRelease(t *testing.T, s store.DeliveryStore) {
	ctx := testContext(t)
	topic := "https://c.example/feed"
	const lease = time.Minute
	// Nothing due: nothing claimed.
	if cs, err := s.ClaimDeliveries(ctx, dlvBase, 10, lease); err != nil || len(cs) != 0 {
		t.Fatalf("ClaimDeliveries on an empty timetable: %v %v", cs, err)
	}
	// a due at +1s, b at +2s, c without a job.
	for i, login := range []string{"a", "b", "c"} {
		due := dlvBase.Add(time.Duration(i+1) * time.Second)
		if login == "c" {
			due = time.Time{}
		}
		if _, _, err := s.PutDelivery(ctx, newDelivery(topic, "https://cb.example/"+login, login), due); err != nil {
			t.Fatal(err)
		}
	}
	if cs, err := s.ClaimDeliveries(ctx, dlvBase, 10, lease); err != nil || len(cs) != 0 {
		t.Fatalf("ClaimDeliveries before anything is due: %v %v", claimKeys(cs), err)
	}
	now := dlvBase.Add(5 * time.Second)
	cs, err := s.ClaimDeliveries(ctx, now, 1, lease)
	if err != nil || fmt.Sprint(claimKeys(cs)) != "[a]" {
		t.Fatalf("ClaimDeliveries max 1 = %v, %v; want [a] (earliest first)", claimKeys(cs), err)
	}
	ca := cs[0]
	if ca.Retaken || ca.Token == "" || !ca.Until.Equal(now.Add(lease)) || ca.Delivery.Secret != "s3cret" || ca.Delivery.Progress.Delivered != 7 {
		t.Fatalf("claim = %+v", ca)
	}
	cs, err = s.ClaimDeliveries(ctx, now, 10, lease)
	if err != nil || fmt.Sprint(claimKeys(cs)) != "[b]" {
		t.Fatalf("second ClaimDeliveries = %v, %v; want [b] (a is leased, c has no job)", claimKeys(cs), err)
	}
	cb := cs[0]

	// Release a with progress and no next: no job, progress stored.
	p := store.DeliveryProgress{Delivered: 12, LastSuccess: now, Succeeded: 1, Items: 5, LastError: "x"}
	if err := s.ReleaseDelivery(ctx, ca, p, time.Time{}); err != nil {
		t.Fatalf("ReleaseDelivery: %v", err)
	}
	d, err := s.Delivery(ctx, ca.Delivery.DeliveryKey)
	if err != nil || d.Progress.Delivered != 12 || d.Progress.Succeeded != 1 || d.Progress.Items != 5 ||
		d.Progress.LastError != "x" || !sameSecond(d.Progress.LastSuccess, now) || d.Secret != "s3cret" {
		t.Fatalf("after release: %+v, %v", d, err)
	}
	if err := s.ReleaseDelivery(ctx, ca, p, time.Time{}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("second ReleaseDelivery: %v, want ErrLeaseLost", err)
	}
	// Release b due again at +10s.
	if err := s.ReleaseDelivery(ctx, cb, store.DeliveryProgress{Delivered: 8}, now.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if cs, err := s.ClaimDeliveries(ctx, now.Add(9*time.Second), 10, lease); err != nil || len(cs) != 0 {
		t.Fatalf("ClaimDeliveries before b's next time: %v %v", claimKeys(cs), err)
	}
	// A renewal with an earlier due moves b earlier, and gives a a job.
	if _, _, err := s.PutDelivery(ctx, newDelivery(topic, "https://cb.example/b", "b"), now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutDelivery(ctx, newDelivery(topic, "https://cb.example/a", "a"), now.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	// A later due never moves a job later.
	if _, _, err := s.PutDelivery(ctx, newDelivery(topic, "https://cb.example/b", "b"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	cs, err = s.ClaimDeliveries(ctx, now.Add(4*time.Second), 10, lease)
	if err != nil || fmt.Sprint(claimKeys(cs)) != "[b a]" {
		t.Fatalf("ClaimDeliveries after renewals = %v, %v; want [b a]", claimKeys(cs), err)
	}
	if cs[0].Delivery.Progress.Delivered != 8 {
		t.Fatalf("b's progress after renewal: %+v", cs[0].Delivery.Progress)
	}
	for _, c := range cs {
		if err := s.ReleaseDelivery(ctx, c, c.Delivery.Progress, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}

	// ScheduleDeliveries makes every record of the topic due, c included.
	n, err := s.ScheduleDeliveries(ctx, topic, now.Add(20*time.Second))
	if err != nil || n != 3 {
		t.Fatalf("ScheduleDeliveries = %d, %v; want 3", n, err)
	}
	if n, err := s.ScheduleDeliveries(ctx, "https://unknown.example/", now); err != nil || n != 0 {
		t.Fatalf("ScheduleDeliveries of an unknown topic = %d, %v", n, err)
	}
	// Later requests do not move them later.
	if _, err := s.ScheduleDeliveries(ctx, topic, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	cs, err = s.ClaimDeliveries(ctx, now.Add(20*time.Second), 10, lease)
	if err != nil || len(cs) != 3 {
		t.Fatalf("ClaimDeliveries after ScheduleDeliveries = %v, %v; want all three", claimKeys(cs), err)
	}
}

// deliveryJobs checks how the delivery calls drive the delivery timetable
// (whose own semantics RunTimetable checks): new items while a claim is out
// make the job due after it; a failed attempt (Attempts > 0) backs off
// against new items but not against a renewal.
func deliveryJobs(t *testing.T, s store.DeliveryStore) {
	ctx := testContext(t)
	topic := "https://d.example/feed"
	d := newDelivery(topic, "https://cb.example/", "ann")
	claimOne := func(at time.Time, what string) store.DeliveryClaim {
		t.Helper()
		cs, err := s.ClaimDeliveries(ctx, at, 10, time.Minute)
		if err != nil || len(cs) != 1 {
			t.Fatalf("%s: claimed %v, %v; want the one job", what, claimKeys(cs), err)
		}
		return cs[0]
	}
	schedule := func(at time.Time) {
		t.Helper()
		if _, err := s.ScheduleDeliveries(ctx, topic, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.PutDelivery(ctx, d, dlvBase); err != nil {
		t.Fatal(err)
	}
	c := claimOne(dlvBase, "first claim")
	schedule(dlvBase.Add(time.Second)) // new items while claimed
	if again, err := s.ClaimDeliveries(ctx, dlvBase.Add(2*time.Second), 10, time.Minute); err != nil || len(again) != 0 {
		t.Fatalf("a scheduled job was claimed while leased: %v %v", claimKeys(again), err)
	}
	if err := s.ReleaseDelivery(ctx, c, c.Delivery.Progress, time.Time{}); err != nil {
		t.Fatal(err)
	}
	c = claimOne(dlvBase.Add(2*time.Second), "the job asked for while claimed, after a release without next")

	// A failing attempt backs off: new items do not cut it short...
	schedule(dlvBase.Add(3 * time.Second))
	failing := store.DeliveryProgress{Delivered: 7, Attempts: 1, FailingSince: dlvBase, LastError: "500"}
	retryAt := dlvBase.Add(10 * time.Second)
	if err := s.ReleaseDelivery(ctx, c, failing, retryAt); err != nil {
		t.Fatal(err)
	}
	schedule(dlvBase.Add(4 * time.Second))
	if cs, err := s.ClaimDeliveries(ctx, retryAt.Add(-time.Millisecond), 10, time.Minute); err != nil || len(cs) != 0 {
		t.Fatalf("a job backing off was claimed before its retry time: %v %v", claimKeys(cs), err)
	}
	c = claimOne(retryAt, "claim at the retry time")
	if c.Delivery.Progress.Attempts != 1 {
		t.Fatalf("progress of a failing delivery: %+v", c.Delivery.Progress)
	}
	// ...but a renewal does.
	if err := s.ReleaseDelivery(ctx, c, failing, retryAt.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.PutDelivery(ctx, d, retryAt.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	c = claimOne(retryAt.Add(time.Second), "claim after a renewal during a back-off")
	// Once it succeeds, new items make it due at once again.
	if err := s.ReleaseDelivery(ctx, c, store.DeliveryProgress{Delivered: 8}, retryAt.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	schedule(retryAt.Add(2 * time.Second))
	claimOne(retryAt.Add(2*time.Second), "after a success new items make the job due")
}

// deliveryRetryNow checks RetryDelivery (a retry now cuts a back-off
// short, where new items do not) and DeliveryJob.
func deliveryRetryNow(t *testing.T, s store.DeliveryStore) {
	ctx := testContext(t)
	topic := "https://r.example/feed"
	d := newDelivery(topic, "https://cb.example/", "ann")
	job := func(now time.Time) store.DeliveryJob {
		t.Helper()
		j, err := s.DeliveryJob(ctx, d.DeliveryKey, now)
		if err != nil {
			t.Fatalf("DeliveryJob: %v", err)
		}
		return j
	}
	claim := func(at time.Time, want int, what string) []store.DeliveryClaim {
		t.Helper()
		cs, err := s.ClaimDeliveries(ctx, at, 10, time.Minute)
		if err != nil || len(cs) != want {
			t.Fatalf("%s: claimed %v, %v; want %d", what, claimKeys(cs), err, want)
		}
		return cs
	}
	unknown := store.DeliveryKey{Login: "ann", Topic: topic, Callback: "https://other.example/"}
	if err := s.RetryDelivery(ctx, unknown, dlvBase); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RetryDelivery of an unknown subscription: %v, want ErrNotFound", err)
	}
	if _, err := s.DeliveryJob(ctx, unknown, dlvBase); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeliveryJob of an unknown subscription: %v, want ErrNotFound", err)
	}
	if _, _, err := s.PutDelivery(ctx, d, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if j := job(dlvBase); !j.Due.IsZero() || j.Leased {
		t.Fatalf("job of a subscription without one: %+v", j)
	}
	// A record without a job gets one.
	if err := s.RetryDelivery(ctx, d.DeliveryKey, dlvBase); err != nil {
		t.Fatal(err)
	}
	if j := job(dlvBase); !j.Due.Equal(dlvBase) || j.Leased {
		t.Fatalf("job after RetryDelivery: %+v; want due at %v", j, dlvBase)
	}
	c := claim(dlvBase, 1, "the job RetryDelivery added")[0]
	if j := job(dlvBase.Add(time.Second)); !j.Leased || !j.Due.Equal(c.Until) {
		t.Fatalf("job while claimed: %+v; want leased until %v", j, c.Until)
	}
	if j := job(c.Until.Add(time.Millisecond)); j.Leased {
		t.Fatalf("job after its lease ran out: %+v; want not leased", j)
	}
	// A failed attempt backs off for an hour; new items do not cut it short.
	retryAt := dlvBase.Add(time.Hour)
	failing := store.DeliveryProgress{Delivered: 7, Attempts: 3, FailingSince: dlvBase, LastError: "503"}
	if err := s.ReleaseDelivery(ctx, c, failing, retryAt); err != nil {
		t.Fatal(err)
	}
	if j := job(dlvBase.Add(time.Second)); !j.Due.Equal(retryAt) || j.Leased {
		t.Fatalf("job backing off: %+v; want due at %v", j, retryAt)
	}
	if _, err := s.ScheduleDeliveries(ctx, topic, dlvBase.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	claim(dlvBase.Add(2*time.Second), 0, "new items during a back-off")
	// A retry now does.
	now := dlvBase.Add(3 * time.Second)
	if err := s.RetryDelivery(ctx, d.DeliveryKey, now); err != nil {
		t.Fatal(err)
	}
	if j := job(now); !j.Due.Equal(now) {
		t.Fatalf("job after a retry now: %+v; want due at %v", j, now)
	}
	c = claim(now, 1, "a retry now during a back-off")[0]
	if c.Delivery.Progress.Attempts != 3 || c.Delivery.Progress.LastError != "503" {
		t.Fatalf("a retry now changed the progress: %+v", c.Delivery.Progress)
	}
	// Asked for while claimed: due once released.
	later := now.Add(5 * time.Second)
	if err := s.RetryDelivery(ctx, d.DeliveryKey, later); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseDelivery(ctx, c, store.DeliveryProgress{Delivered: 9}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if j := job(now); !j.Due.Equal(later) || j.Leased {
		t.Fatalf("job asked for while claimed, after its release: %+v; want due at %v", j, later)
	}
	claim(later, 1, "the retry asked for while claimed")
}

func deliveryLeaseExpiry(t *testing.T, s store.DeliveryStore) {
	ctx := testContext(t)
	d := newDelivery("https://e.example/feed", "https://cb.example/", "ann")
	if _, _, err := s.PutDelivery(ctx, d, dlvBase); err != nil {
		t.Fatal(err)
	}
	first, err := s.ClaimDeliveries(ctx, dlvBase, 10, 10*time.Second)
	if err != nil || len(first) != 1 {
		t.Fatalf("claim: %v %v", claimKeys(first), err)
	}
	if cs, err := s.ClaimDeliveries(ctx, dlvBase.Add(9*time.Second), 10, 10*time.Second); err != nil || len(cs) != 0 {
		t.Fatalf("claimed while leased: %v %v", claimKeys(cs), err)
	}
	// The holder died: after the lease the job is claimed again, retaken.
	second, err := s.ClaimDeliveries(ctx, dlvBase.Add(11*time.Second), 10, 10*time.Second)
	if err != nil || len(second) != 1 || !second[0].Retaken || second[0].Token == first[0].Token {
		t.Fatalf("claim after lease expiry: %+v %v; want one retaken claim with a new token", second, err)
	}
	if err := s.ReleaseDelivery(ctx, first[0], store.DeliveryProgress{Delivered: 1000}, time.Time{}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("release by the old holder: %v, want ErrLeaseLost", err)
	}
	if got, _ := s.Delivery(ctx, d.DeliveryKey); got.Progress.Delivered != 7 {
		t.Fatalf("a lost release stored progress: %+v", got.Progress)
	}
	if err := s.ReleaseDelivery(ctx, second[0], store.DeliveryProgress{Delivered: 9}, dlvBase.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A holder whose lease ran out may still release while nobody took it.
	third, err := s.ClaimDeliveries(ctx, dlvBase.Add(time.Hour), 10, time.Second)
	if err != nil || len(third) != 1 || third[0].Retaken {
		t.Fatalf("claim after a proper release: %+v %v; want one, not retaken", third, err)
	}
	if err := s.ReleaseDelivery(ctx, third[0], store.DeliveryProgress{Delivered: 10}, time.Time{}); err != nil {
		t.Fatalf("release after the lease ran out, nobody else claiming: %v", err)
	}
}

func deliveryDeleteWhileClaimed(t *testing.T, s store.DeliveryStore) {
	ctx := testContext(t)
	d := newDelivery("https://f.example/feed", "https://cb.example/", "ann")
	if _, _, err := s.PutDelivery(ctx, d, dlvBase); err != nil {
		t.Fatal(err)
	}
	cs, err := s.ClaimDeliveries(ctx, dlvBase, 10, time.Minute)
	if err != nil || len(cs) != 1 {
		t.Fatalf("claim: %v %v", claimKeys(cs), err)
	}
	if _, err := s.DeleteDelivery(ctx, d.DeliveryKey); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseDelivery(ctx, cs[0], store.DeliveryProgress{Delivered: 50}, dlvBase.Add(time.Second)); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("release of a deleted delivery: %v, want ErrLeaseLost", err)
	}
	if _, err := s.Delivery(ctx, d.DeliveryKey); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a release brought a deleted delivery back: %v", err)
	}
	// Subscribing again while the old claim is out: the old claim cannot
	// touch the new record.
	if _, _, err := s.PutDelivery(ctx, d, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseDelivery(ctx, cs[0], store.DeliveryProgress{Delivered: 50}, time.Time{}); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("release of an old claim on a new record: %v, want ErrLeaseLost", err)
	}
	if got, _ := s.Delivery(ctx, d.DeliveryKey); got.Progress.Delivered != 7 {
		t.Fatalf("old claim changed the new record: %+v", got.Progress)
	}
	if cs, err := s.ClaimDeliveries(ctx, dlvBase.Add(1000*time.Hour), 10, time.Minute); err != nil || len(cs) != 0 {
		t.Fatalf("deleted job still claimable: %v %v", claimKeys(cs), err)
	}
}

func deliveryStats(t *testing.T, s store.DeliveryStore) {
	ctx := testContext(t)
	for i, login := range []string{"a", "b", "c", "d"} {
		due := dlvBase.Add(time.Duration(i) * time.Hour)
		if login == "d" {
			due = time.Time{}
		}
		if _, _, err := s.PutDelivery(ctx, newDelivery("https://g.example/feed", "https://cb.example/", login), due); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ClaimDeliveries(ctx, dlvBase, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err := s.DeliveryStats(ctx, dlvBase.Add(90*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// a leased until +1m (ran out at +90m: due again), b due at +1h, c at +2h.
	if st.Deliveries != 4 || st.Due != 2 || st.Leased != 0 {
		t.Fatalf("DeliveryStats at +90m = %+v; want 4 deliveries, 2 due, 0 leased", st)
	}
	st, err = s.DeliveryStats(ctx, dlvBase.Add(30*time.Second))
	if err != nil || st.Due != 0 || st.Leased != 1 {
		t.Fatalf("DeliveryStats at +30s = %+v, %v; want 0 due, 1 leased", st, err)
	}
}

// deliveryConcurrent has workers on a and b claim and release jobs
// concurrently and checks that no job is ever held twice at once.
func deliveryConcurrent(t *testing.T, a, b store.DeliveryStore, twoNodes bool) {
	ctx := testContext(t)
	const subs, rounds, workers = 20, 15, 6
	topic := "https://h.example/feed"
	if !twoNodes {
		b = a
	}
	for i := range subs {
		if _, _, err := a.PutDelivery(ctx, newDelivery(topic, fmt.Sprintf("https://cb.example/%d", i), "ann"), dlvBase); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu      sync.Mutex
		holding = map[string]bool{}
		count   = map[string]int{}
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
	)
	now := dlvBase.Add(time.Second)
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range 400 {
				cs, err := s.ClaimDeliveries(ctx, now, 3, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if len(cs) == 0 {
					mu.Lock()
					done := len(count) == subs
					for _, n := range count {
						if n < rounds {
							done = false
						}
					}
					mu.Unlock()
					if done {
						return
					}
					time.Sleep(time.Millisecond)
					continue
				}
				for _, c := range cs {
					cb := c.Delivery.Callback
					mu.Lock()
					if holding[cb] {
						mu.Unlock()
						errs <- fmt.Errorf("%s claimed twice at once", cb)
						return
					}
					holding[cb] = true
					count[cb]++
					n := count[cb]
					mu.Unlock()
					next := now
					if n >= rounds {
						next = time.Time{}
					}
					p := c.Delivery.Progress
					p.Delivered++
					mu.Lock()
					holding[cb] = false
					mu.Unlock()
					if err := s.ReleaseDelivery(ctx, c, p, next); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	list, err := a.TopicDeliveries(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		if got := count[d.Callback]; got != rounds || d.Progress.Delivered != 7+rounds {
			t.Errorf("%s: worked %d times, delivered %d; want %d and %d", d.Callback, got, d.Progress.Delivered, rounds, 7+rounds)
		}
	}
}
