package store

import (
	"context"
	"errors"
	"time"
)

// ErrLeaseLost is returned when releasing a claim whose lease is no longer
// held: it ran out and another claim took the job, or the job was removed
// meanwhile. Nothing is changed.
var ErrLeaseLost = errors.New("job lease no longer held")

// Timetable is a schedule of named jobs shared by every gateway node on one
// backend, with leases, so that exactly one node runs a due job at a time:
// ingest's fetches and upstream renewals, and webhook deliveries (whose
// timetable DeliveryStore keeps beside the delivery records). Its
// conformance suite is storetest.RunTimetable.
//
// A job is due at a time. Claim leases due jobs; while a job is claimed it
// is due (to anyone) only when its lease ends, which is how the job of a
// node that crashed comes back. Release ends the claim and says when the
// job is due next. Times are kept to the millisecond; the times passed in
// are the only clock (a backend never reads its own).
type Timetable interface {
	// Schedule adds or moves the job as mode says and reports whether the
	// job existed. It never moves a job later. A claimed job stays claimed:
	// the time asked for is remembered and the job is due then, at the
	// latest, once released (see Release).
	Schedule(ctx context.Context, job string, at time.Time, mode ScheduleMode) (existed bool, err error)
	// Due returns when the job is due (for a claimed job: when its lease
	// ends) and whether it exists.
	Due(ctx context.Context, job string) (time.Time, bool, error)
	// Remove removes the job and any claim on it (no error when absent).
	Remove(ctx context.Context, job string) error
	// Claim leases, atomically, up to max jobs that are due at now and not
	// leased (or whose lease ran out), until now+lease, earliest first.
	// Scheduling requests made before the claim are served by it.
	Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]Claim, error)
	// Release ends the claim: the job is due again at next, or earlier
	// when Schedule asked for an earlier time while it was claimed; with a
	// zero next (and no such request) the job is removed. With backoff the
	// job is failing and next is a floor: neither requests made while it
	// was claimed nor later Schedule calls (except Override) make it due
	// before next. ErrLeaseLost when the claim is no longer held; nothing
	// changes then.
	Release(ctx context.Context, c Claim, next time.Time, backoff bool) error
	// Stats counts jobs at now.
	Stats(ctx context.Context, now time.Time) (TimetableStats, error)
}

// ScheduleMode says what Timetable.Schedule does with a job.
type ScheduleMode uint8

const (
	// Earlier adds the job due at the time, or moves it earlier; a job
	// backing off is not made due before the end of its back-off.
	Earlier ScheduleMode = iota
	// IfAbsent adds the job due at the time unless it exists; an existing
	// job is left as it is.
	IfAbsent
	// IfPresent moves an existing job earlier, as Earlier does; an absent
	// job is not added.
	IfPresent
	// Override is Earlier that also cuts a back-off short.
	Override
)

// Claim is a lease on one due job. Until it expires no other claimer gets
// the job.
type Claim struct {
	Job   string    `json:"job"`
	Token string    `json:"token"`
	Until time.Time `json:"until"`
	// Retaken reports that the previous claim of this job ran out without
	// being released: its holder stopped (crashed) in the middle of the
	// job, and may have done part of it.
	Retaken bool `json:"retaken,omitempty"`
}

// TimetableStats describes a timetable at a moment.
type TimetableStats struct {
	// Jobs is the number of jobs.
	Jobs int
	// Due is the number of jobs due and not leased.
	Due int
	// Leased is the number of jobs held under a lease still running.
	Leased int
}

// Leases grants named leases, one holder at a time, for work that one node
// of many does alone and without a due time: reporting the cluster-wide
// gauges (queue depths, subscriptions), so that summing a metric over the
// nodes does not count it once per node. Its conformance suite is
// storetest.RunLeases.
type Leases interface {
	// Lease takes the named lease for holder, or renews it when holder has
	// it, for ttl; it reports whether holder has it now. A lease not
	// renewed within its ttl can be taken by another holder.
	Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
}
