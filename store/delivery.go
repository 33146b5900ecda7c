package store

import (
	"context"
	"time"

	"github.com/feedgate/feedgate/feed"
)

// DeliveryKey names a callback subscription, as Subscription does:
// (Login, Topic, Callback).
type DeliveryKey struct {
	Login    string `json:"login"`
	Topic    string `json:"topic"`
	Callback string `json:"callback"`
}

// Delivery is the hub's record of one callback subscription: what it needs
// to POST new items to the callback, and how far it has got. Items are not
// copied into a queue: the topic's items are already stored with
// contiguous cursors, so "every item after Progress.Delivered" is the
// subscription's queue, durable as soon as Append returns.
type Delivery struct {
	DeliveryKey
	Secret       string    `json:"secret,omitempty"`
	Format       string    `json:"format,omitempty"`
	LeaseSeconds int       `json:"leaseSeconds,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	// RenewedAt is when the subscription was last verified.
	RenewedAt time.Time `json:"renewedAt"`
	// ExpiresAt is zero for a subscription without a lease.
	ExpiresAt time.Time        `json:"expiresAt,omitzero"`
	Progress  DeliveryProgress `json:"progress"`
}

// DeliveryProgress is where a callback subscription's deliveries stand and
// how healthy they are.
type DeliveryProgress struct {
	// Delivered is the cursor up to which every item of the topic was
	// delivered (answered 2xx), given up on, or trimmed before it could be.
	Delivered feed.Cursor `json:"delivered"`
	// Attempts counts failed attempts at the items after Delivered, since
	// FailingSince (zero when the last attempt succeeded).
	Attempts     int       `json:"attempts,omitempty"`
	FailingSince time.Time `json:"failingSince,omitzero"`
	LastAttempt  time.Time `json:"lastAttempt,omitzero"`
	LastSuccess  time.Time `json:"lastSuccess,omitzero"`
	LastError    string    `json:"lastError,omitempty"`
	LastErrorAt  time.Time `json:"lastErrorAt,omitzero"`
	// Succeeded and Failed count POSTs; Items counts items delivered.
	Succeeded int64 `json:"succeeded,omitempty"`
	Failed    int64 `json:"failed,omitempty"`
	Items     int64 `json:"items,omitempty"`
	// Dropped counts items given up on after the retry bounds.
	Dropped int64 `json:"dropped,omitempty"`
	// Gaps counts the times items were trimmed from the topic before they
	// could be delivered, Trimmed how many items were lost that way, and
	// LastGapAt when it last happened.
	Gaps      int64     `json:"gaps,omitempty"`
	Trimmed   int64     `json:"trimmed,omitempty"`
	LastGapAt time.Time `json:"lastGapAt,omitzero"`
	// Redeliveries counts POSTs made after a node lost its claim without
	// recording the outcome (a crash): the callback may have had them.
	Redeliveries int64 `json:"redeliveries,omitempty"`
}

// DeliveryClaim is a lease on one due delivery job, returned by
// ClaimDeliveries with the delivery's record. Until it expires no other
// claimer gets the job. Retaken reports that the previous claim ran out
// without being released: its holder stopped (crashed) and may have POSTed
// items after Progress.Delivered without recording it.
type DeliveryClaim struct {
	Claim
	Delivery Delivery
}

// DeliveryStats describes the delivery timetable.
type DeliveryStats struct {
	// Deliveries is the number of callback subscriptions.
	Deliveries int
	// Due is the number of jobs due now and not leased.
	Due int
	// Leased is the number of jobs held by a node.
	Leased int
}

// DeliveryStore is what package hub needs from a backend besides Store to
// deliver to WebSub callbacks: one record per callback subscription, and a
// timetable of delivery jobs with leases (a Timetable, kept beside the
// records so that a claim and its record change together), so that across
// gateway nodes on one backend exactly one node works a subscription at a
// time. A subscription has at most one job; the timetable is separate from
// the ingest jobs of IngestStore. Its conformance suite is
// storetest.RunDelivery.
type DeliveryStore interface {
	// PutDelivery stores a callback subscription. A new one is stored as
	// given; an existing one (same key) is renewed: Secret, Format,
	// LeaseSeconds, RenewedAt and ExpiresAt are replaced while CreatedAt and
	// Progress are kept. Either way its job is made due no later than due
	// (a zero due leaves the job as it is, or adds none). It returns the
	// stored record and whether it is new.
	PutDelivery(ctx context.Context, d Delivery, due time.Time) (Delivery, bool, error)
	// Delivery returns the record or ErrNotFound.
	Delivery(ctx context.Context, k DeliveryKey) (Delivery, error)
	// DeleteDelivery removes the record, its job and any lease on it, and
	// reports whether there was one.
	DeleteDelivery(ctx context.Context, k DeliveryKey) (bool, error)
	// TopicDeliveries returns the topic's records, ordered by callback then
	// login.
	TopicDeliveries(ctx context.Context, topic string) ([]Delivery, error)
	// DeliveryTopics returns every topic with at least one record, ordered.
	DeliveryTopics(ctx context.Context) ([]string, error)

	// ScheduleDeliveries makes the job of every record of the topic due no
	// later than at (adding missing jobs), but not before the end of a
	// back-off (see ReleaseDelivery), and returns how many records the
	// topic has. A job that is claimed stays claimed; it is due again at the
	// earlier time once released.
	ScheduleDeliveries(ctx context.Context, topic string, at time.Time) (int, error)
	// ClaimDeliveries leases, atomically, up to max jobs that are due at now
	// and not leased (or whose lease ran out), earliest first, until
	// now+lease, and returns them with their records.
	ClaimDeliveries(ctx context.Context, now time.Time, max int, lease time.Duration) ([]DeliveryClaim, error)
	// ReleaseDelivery ends the claim: it stores p as the record's progress
	// and schedules the job at next, or earlier when ScheduleDeliveries
	// asked for an earlier time while it was claimed; a zero next (and no
	// such request) leaves the record without a job. When p.Attempts > 0
	// the subscription is backing off after a failure: next is then a
	// floor, and neither requests made while it was claimed nor later
	// ScheduleDeliveries (new items) make the job due before it; a
	// PutDelivery (a renewal) still may. ErrLeaseLost, and nothing stored,
	// when the claim is no longer held: the lease ran out and another
	// claim took the job, or the record was deleted.
	ReleaseDelivery(ctx context.Context, c DeliveryClaim, p DeliveryProgress, next time.Time) error
	// DeliveryStats counts records and jobs at now.
	DeliveryStats(ctx context.Context, now time.Time) (DeliveryStats, error)

	// RetryDelivery makes the subscription's job due at at (adding it when
	// the record has none), cutting a back-off short: an operator's "retry
	// now". A claimed job stays claimed: the attempt under way is the
	// retry, and what it reports on release decides what follows.
	// ErrNotFound when there is no such record.
	RetryDelivery(ctx context.Context, k DeliveryKey, at time.Time) error
	// DeliveryJob says when the subscription's job is due at now: zero
	// Due when it has none (nothing to deliver until new items arrive).
	// ErrNotFound when there is no such record.
	DeliveryJob(ctx context.Context, k DeliveryKey, now time.Time) (DeliveryJob, error)
}

// DeliveryJob is where a subscription's delivery job stands.
type DeliveryJob struct {
	// Due is when the job is due next (the end of a back-off while one
	// runs); for a leased job, when its lease ends. Zero: no job.
	Due time.Time `json:"due,omitzero"`
	// Leased reports that a node is working the job now.
	Leased bool `json:"leased,omitempty"`
}
