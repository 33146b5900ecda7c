package store

import (
	"context"
	"time"
)

// IngestState is what ingest keeps about a tracked topic to fetch it well:
// where to fetch it, the validators of conditional GETs, the hubs the feed
// advertises and the rhythm of polling. It is private to ingest; the status
// shown to clients lives in TopicState.
type IngestState struct {
	Topic string `json:"topic"`
	// FetchURL is where the topic is fetched when it differs from Topic:
	// the target of a permanent redirect, or the feed an HTML page points
	// to as its alternate.
	FetchURL string `json:"fetchUrl,omitempty"`
	// ETag and LastModified are the validators of the last 200 answer of
	// FetchURL, sent back as If-None-Match and If-Modified-Since.
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	// Self is the URL the feed names as rel=self: the hub.topic used
	// upstream.
	Self string `json:"self,omitempty"`
	// Hubs are the WebSub hubs the feed advertises, and HubsFrom the URL of
	// the document they were found in.
	Hubs     []string `json:"hubs,omitempty"`
	HubsFrom string   `json:"hubsFrom,omitempty"`
	// Period is the current polling period, adapted to how often the feed
	// changes.
	Period time.Duration `json:"period,omitempty"`
	// Failures counts consecutive failed fetches (for back-off).
	Failures int `json:"failures,omitempty"`
	// LastFetch is when the topic was last fetched, LastChange when a fetch
	// or push last stored new items.
	LastFetch  time.Time `json:"lastFetch,omitzero"`
	LastChange time.Time `json:"lastChange,omitzero"`
}

// UpstreamState is the life cycle of a subscription at an upstream hub.
type UpstreamState string

// The states of an upstream subscription.
const (
	// UpstreamSubscribing: a subscribe request was sent, the hub has not
	// verified it yet.
	UpstreamSubscribing UpstreamState = "subscribing"
	// UpstreamActive: the hub verified the subscription; content arrives at
	// the callback until the lease ends.
	UpstreamActive UpstreamState = "active"
	// UpstreamUnsubscribing: an unsubscribe request is pending.
	UpstreamUnsubscribing UpstreamState = "unsubscribing"
	// UpstreamDenied: the hub refused the subscription (hub.mode=denied).
	UpstreamDenied UpstreamState = "denied"
	// UpstreamFailed: the hub did not accept the request.
	UpstreamFailed UpstreamState = "failed"
)

// Upstream is one subscription feedgate holds at an upstream WebSub hub on
// behalf of a tracked topic. It is found again by ID, the unguessable last
// segment of its callback URL.
type Upstream struct {
	ID string `json:"id"`
	// Topic is the local topic the content is stored under; HubTopic the
	// hub.topic given to the hub (the feed's rel=self URL).
	Topic    string `json:"topic"`
	HubTopic string `json:"hubTopic"`
	// Hub is the hub's URL as the feed advertises it; Endpoint is where
	// requests go when a permanent redirect moved the hub ("" = Hub).
	Hub      string `json:"hub"`
	Endpoint string `json:"endpoint,omitempty"`
	// Secret is the hub.secret sent; content must be signed with it.
	Secret string        `json:"secret,omitempty"`
	State  UpstreamState `json:"state"`
	// LeaseSeconds is the lease the hub granted in its verification.
	LeaseSeconds int       `json:"leaseSeconds,omitempty"`
	RequestedAt  time.Time `json:"requestedAt,omitzero"`
	VerifiedAt   time.Time `json:"verifiedAt,omitzero"`
	ExpiresAt    time.Time `json:"expiresAt,omitzero"`
	// Reason is the hub's denial reason or the last error talking to it.
	Reason string `json:"reason,omitempty"`
}

// IngestStore is what package ingest needs from a backend besides Store:
// per-topic ingest state, upstream WebSub subscriptions, and a shared
// timetable of jobs with leases, so that across gateway nodes on one backend
// exactly one node runs a due job (fetching a topic, renewing a
// subscription) at a time. Its conformance suite is storetest.RunIngest
// (with storetest.RunTimetable for the timetable).
type IngestStore interface {
	// IngestState returns the topic's ingest state; an unknown topic has a
	// zero state with Topic set.
	IngestState(ctx context.Context, topic string) (IngestState, error)
	// UpdateIngestState applies fn to the topic's state atomically (fn may
	// run more than once when writers race) and stores the result. When fn
	// returns an error nothing is stored and the error is returned.
	UpdateIngestState(ctx context.Context, topic string, fn func(*IngestState) error) error
	// DeleteIngestState forgets the topic's ingest state (no error when
	// there is none).
	DeleteIngestState(ctx context.Context, topic string) error

	// PutUpstream stores or replaces an upstream subscription.
	PutUpstream(ctx context.Context, u Upstream) error
	// Upstream returns the subscription with the callback id, or
	// ErrNotFound.
	Upstream(ctx context.Context, id string) (Upstream, error)
	// UpdateUpstream applies fn to the subscription atomically (fn may run
	// more than once) and stores the result; ErrNotFound when there is none.
	// When fn returns an error nothing is stored and the error is returned.
	UpdateUpstream(ctx context.Context, id string, fn func(*Upstream) error) error
	// DeleteUpstream removes the subscription (no error when absent).
	DeleteUpstream(ctx context.Context, id string) error
	// TopicUpstreams returns the topic's upstream subscriptions, ordered by
	// ID.
	TopicUpstreams(ctx context.Context, topic string) ([]Upstream, error)

	// IngestJobs is the timetable of ingest's jobs (fetching a topic,
	// renewing an upstream subscription).
	IngestJobs() Timetable
}
