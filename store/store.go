// Package store defines what feedgate keeps — items, live notifications,
// topic state, users and subscriptions — as one interface with two backends
// (store/redis and store/embedded) and one conformance suite (store/storetest)
// that both must pass.
package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedgate/feedgate/feed"
)

// Errors shared by every backend.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrUnavailable wraps failures to reach the backing store; callers
	// answer 503 and the client may retry.
	ErrUnavailable = errors.New("store unavailable")
	// ErrNotReplicated wraps a write that the store made but could not
	// confirm on as many replicas as configured in time (Redis WAIT): it may
	// be lost if the master fails now. Callers answer 503; a retry is safe
	// (appends are idempotent by entry id and content hash) and is
	// acknowledged once the replicas have caught up.
	ErrNotReplicated = errors.New("write not confirmed by enough replicas")
)

// DefaultRetention is how many items a topic keeps unless configured.
const DefaultRetention = 1000

// Options configure a backend.
type Options struct {
	// Retention is the number of items kept per topic (DefaultRetention when 0).
	Retention int
	// Changes, when set, is told of this store client's own writes (see
	// ChangeHook).
	Changes *ChangeHook
}

// ChangeHook tells a node's caches of the node's own writes before the
// writer is answered, so that a client that writes and then reads on the
// same node sees its write, whatever the delay of the live notifications.
// Backends call Changed after an Append that stored at least one item and
// after a successful UpdateTopic, and Unsubscribed after every
// DeleteSubscription (whatever its outcome: a failed call may still have
// deleted); writes by other store clients (other nodes) do not
// reach it: caches learn of those through Live, or keep what they read
// for a bounded time.
type ChangeHook struct {
	mu       sync.Mutex
	fns      atomic.Pointer[[]func(topic string)]
	unsubFns atomic.Pointer[[]func(login, topic string)]
}

// OnChange registers fn, called synchronously with the topic of every
// change; fn must be quick and must not write to the store.
func (h *ChangeHook) OnChange(fn func(topic string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	register(&h.fns, fn)
}

// OnUnsubscribe registers fn, called synchronously with the login and
// topic of every deleted subscription; fn must be quick and must not write
// to the store.
func (h *ChangeHook) OnUnsubscribe(fn func(login, topic string)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	register(&h.unsubFns, fn)
}

// register appends fn to the list of p (under the hook's lock).
func register[F any](p *atomic.Pointer[[]F], fn F) {
	var fns []F
	if old := p.Load(); old != nil {
		fns = append(fns, *old...)
	}
	fns = append(fns, fn)
	p.Store(&fns)
}

// Changed reports a change of topic to every registered function. A nil
// hook does nothing.
func (h *ChangeHook) Changed(topic string) {
	if h == nil {
		return
	}
	if fns := h.fns.Load(); fns != nil {
		for _, fn := range *fns {
			fn(topic)
		}
	}
}

// Unsubscribed reports the deletion of a subscription of login to topic to
// every registered function. A nil hook does nothing.
func (h *ChangeHook) Unsubscribed(login, topic string) {
	if h == nil {
		return
	}
	if fns := h.unsubFns.Load(); fns != nil {
		for _, fn := range *fns {
			fn(login, topic)
		}
	}
}

// RetentionOrDefault returns the configured retention.
func (o Options) RetentionOrDefault() int {
	if o.Retention <= 0 {
		return DefaultRetention
	}
	return o.Retention
}

// Store is everything a gateway node needs from its backend.
type Store interface {
	Items
	Live
	Topics
	Users
	Subscriptions

	// Ping reports whether the backend is reachable.
	Ping(ctx context.Context) error
	// Close releases the backend; it is called once, at shutdown.
	Close() error
}

// From selects where a Read starts.
type From int

const (
	// Newest reads the newest Count items.
	Newest From = iota
	// After reads the Count items directly following Cursor.
	After
	// Before reads the Count items directly preceding Cursor.
	Before
)

// Query selects a page of items.
type Query struct {
	From   From
	Cursor feed.Cursor
	Count  int
}

// Page is the answer to a Read.
type Page struct {
	// Items are newest first.
	Items []feed.Item
	// Gap reports that an After cursor points before the oldest item still
	// held: the items in between were trimmed, and Items start at the oldest.
	Gap bool
	// Last is the topic's newest cursor (0 when it has no items).
	Last feed.Cursor
	// Topic is the topic's state, read together with the items.
	Topic TopicState
}

// Items stores and reads topic items.
type Items interface {
	// Append stores, in one atomic step, those items that are not already
	// stored with the same ID and Hash, each under the topic's next cursor (in
	// the order given, which should be oldest first); trims the topic to the
	// retention; and notifies live listeners of what was stored. It returns
	// the stored items with their cursors, oldest first (none when all were
	// duplicates). Items with the same ID within one call are deduplicated
	// against each other too.
	Append(ctx context.Context, topic string, items []feed.Item) ([]feed.Item, error)
	// Read returns a page of the topic's items, newest first. An unknown
	// topic reads as empty.
	Read(ctx context.Context, topic string, q Query) (Page, error)
	// CursorOf returns the cursor of the newest item with the entry id, or
	// ErrNotFound.
	CursorOf(ctx context.Context, topic, id string) (feed.Cursor, error)
}

// Batch is what a Listener receives: items appended to one topic, oldest
// first, with strictly increasing cursors, and the topic's state as stored
// when they were appended. Batches may be shared between listeners: their
// contents must not be modified.
type Batch struct {
	Topic string
	Items []feed.Item
	// State is the topic's state (meta and status) as stored at the moment
	// of the append, read atomically with it: a consumer needs nothing else
	// from the store to deliver the batch. Set on every batch with Items;
	// nil on Resync batches.
	State *TopicState
	// Resync reports that the live link was interrupted and has been
	// re-established, or that announcements were dropped: items appended
	// to the listener's topics in between may not have been announced and
	// must be read from the store by cursor. A Resync batch has no Topic,
	// Items or State.
	Resync bool
	// Topics, on a Resync batch, names the topics that need re-reading;
	// empty means every topic of the listener.
	Topics []string
}

// Live announces appended items.
type Live interface {
	// Listen opens a live subscription. A node opens one and multiplexes
	// its topics over it (see package stream).
	Listen(ctx context.Context) (Listener, error)
}

// Listener is one live subscription to a changing set of topics.
type Listener interface {
	// Add starts announcing the topics' appends. When Add returns, every
	// later Append to those topics will be announced.
	Add(ctx context.Context, topics ...string) error
	// Remove stops announcing the topics.
	Remove(ctx context.Context, topics ...string) error
	// Batches delivers announcements; it is closed by Close.
	Batches() <-chan Batch
	// Healthy reports whether the live link is currently up.
	Healthy() bool
	// Close ends the subscription.
	Close() error
}

// TopicState is what the gateway knows of a topic besides its items.
type TopicState struct {
	Topic  string      `json:"topic"`
	Meta   feed.Meta   `json:"meta"`
	Status feed.Status `json:"status"`
}

// Topics keeps per-topic state.
type Topics interface {
	// Topic returns the topic's state; an unknown topic has a zero state
	// with Topic set.
	Topic(ctx context.Context, topic string) (TopicState, error)
	// UpdateTopic applies fn to the topic's state atomically (fn may run more
	// than once when writers race) and stores the result.
	UpdateTopic(ctx context.Context, topic string, fn func(*TopicState) error) error
}

// Right is one permission a token carries.
type Right string

// The rights of API.md §2.
const (
	RightSubscribe   Right = "subscribe"
	RightUnsubscribe Right = "unsubscribe"
	RightList        Right = "list"
	RightRetrieve    Right = "retrieve"
	RightPublish     Right = "publish"
	RightAdmin       Right = "admin"
)

// AllRights lists every right, in documentation order.
var AllRights = []Right{RightSubscribe, RightUnsubscribe, RightList, RightRetrieve, RightPublish, RightAdmin}

// Token is one credential of a user. Only the hash of the secret is kept.
type Token struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"`
	Rights    []Right   `json:"rights"`
	Topics    []string  `json:"topics,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	// ExpiresAt is when the token stops working; zero for never.
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
}

// User is an account and its tokens.
type User struct {
	Login     string    `json:"login"`
	Tokens    []Token   `json:"tokens"`
	CreatedAt time.Time `json:"createdAt"`
}

// Users keeps accounts.
type Users interface {
	// AddUser stores a new user, or returns ErrExists.
	AddUser(ctx context.Context, u User) error
	// PutUser stores the user, replacing any with the same login.
	PutUser(ctx context.Context, u User) error
	// User returns the user or ErrNotFound.
	User(ctx context.Context, login string) (User, error)
	// ListUsers returns every user, ordered by login.
	ListUsers(ctx context.Context) ([]User, error)
	// DeleteUser removes the user (and nothing else), or returns ErrNotFound.
	DeleteUser(ctx context.Context, login string) error
}

// Subscription is one user's interest in a topic: retrieve-only when
// Callback is empty, else a WebSub subscriber to push to.
type Subscription struct {
	Login        string    `json:"login"`
	Topic        string    `json:"topic"`
	Callback     string    `json:"callback,omitempty"`
	Secret       string    `json:"secret,omitempty"`
	Format       string    `json:"format,omitempty"`
	LeaseSeconds int       `json:"leaseSeconds,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	// ExpiresAt is zero for subscriptions without a lease.
	ExpiresAt time.Time `json:"expiresAt"`
}

// Subscriptions keeps who follows which topic. A subscription is identified
// by (Login, Topic, Callback).
type Subscriptions interface {
	// PutSubscription stores or replaces a subscription and reports whether
	// it is new. The topic becomes tracked.
	PutSubscription(ctx context.Context, s Subscription) (created bool, err error)
	// DeleteSubscription removes a subscription (ErrNotFound if absent) and
	// returns how many subscriptions of the topic remain, from any user.
	DeleteSubscription(ctx context.Context, login, topic, callback string) (remaining int, err error)
	// ListSubscriptions returns a user's subscriptions (every user's when
	// login is empty) ordered by topic then callback, from offset, at most
	// limit, and the total count.
	ListSubscriptions(ctx context.Context, login string, offset, limit int) ([]Subscription, int, error)
	// IsSubscribed reports whether the user has any subscription to topic.
	IsSubscribed(ctx context.Context, login, topic string) (bool, error)
	// TopicSubscriptions returns every subscription to topic.
	TopicSubscriptions(ctx context.Context, topic string) ([]Subscription, error)
	// TrackedTopics returns every topic with at least one subscription.
	TrackedTopics(ctx context.Context) ([]string, error)
}
