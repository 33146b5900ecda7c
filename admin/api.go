package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/feedgate/feedgate/api"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/feed"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/store"
)

// API is the admin HTTP API served on the admin listener under /admin/api/:
// users and tokens, topics, webhook subscriptions and their health, this
// node's live connections and the node itself. Every route needs a
// credential with the admin right; errors are the public API's
// ({"error":{"code","message"}}).
type API struct {
	Users Users
	Auth  *auth.Authenticator
	Store store.Store
	// Ingest gives each topic's fetch state; may be nil.
	Ingest store.IngestStore
	// Deliveries gives the webhook subscriptions; may be nil.
	Deliveries store.DeliveryStore
	// Retry makes a webhook delivery due at once; may be nil (then
	// retrying is refused).
	Retry Retrier
	// Live gives this node's live connections; may be nil.
	Live *live.Hub
	// Node describes this node.
	Node NodeInfo
	// Registry lists the nodes sharing the store; may be nil (then the
	// node list is this node).
	Registry store.NodeRegistry
	// Heartbeat is how often RunHeartbeat renews this node's record (its
	// record expires after three); default DefaultHeartbeat.
	Heartbeat time.Duration
	// Refresh is how often the console's live view is recomputed while a
	// console follows it; default DefaultRefresh.
	Refresh time.Duration

	feed broadcast
}

// Retrier makes a callback subscription's delivery due at once, cutting a
// back-off short (package hub).
type Retrier interface {
	RetryNow(ctx context.Context, k store.DeliveryKey) error
}

// NodeInfo describes a gateway node: what does not change while it runs.
type NodeInfo struct {
	// ID names the node in the node list (--node-id).
	ID        string    `json:"id"`
	Version   string    `json:"version"`
	Role      string    `json:"role"`
	Store     string    `json:"store"`
	PublicURL string    `json:"publicUrl"`
	Listen    string    `json:"listen,omitempty"`
	AdminURL  string    `json:"adminUrl,omitempty"`
	Started   time.Time `json:"started"`
}

// Mux is where Register adds the routes (an *http.ServeMux).
type Mux interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// Register adds the API's routes to mux.
func (a *API) Register(mux Mux) {
	mux.HandleFunc("GET /admin/api/users", a.admin(a.listUsers))
	mux.HandleFunc("POST /admin/api/users", a.admin(a.addUser))
	mux.HandleFunc("DELETE /admin/api/users/{login}", a.admin(a.removeUser))
	mux.HandleFunc("POST /admin/api/users/{login}/rotate", a.admin(a.rotateUser))
	mux.HandleFunc("GET /admin/api/topics", a.admin(a.listTopics))
	mux.HandleFunc("GET /admin/api/deliveries", a.admin(a.listDeliveries))
	mux.HandleFunc("POST /admin/api/deliveries/retry", a.admin(a.retryDelivery))
	mux.HandleFunc("GET /admin/api/connections", a.admin(a.connections))
	mux.HandleFunc("GET /admin/api/nodes", a.admin(a.nodes))
	mux.HandleFunc("GET /admin/api/overview", a.admin(a.getOverview))
	mux.HandleFunc("GET /admin/api/events", a.admin(a.serveEvents))
	mux.HandleFunc("/admin/api/", a.admin(func(w http.ResponseWriter, r *http.Request) error {
		return api.Errorf(http.StatusNotFound, "no admin route %s %s: see the OpenAPI description of the admin API", r.Method, r.URL.Path)
	}))
}

var jsonWant = api.Want{JSON: true}

// crossOrigin refuses state-changing requests a browser makes for a page
// of another origin (Sec-Fetch-Site, Origin): a page elsewhere cannot use
// the admin API through an operator's browser.
var crossOrigin = http.NewCrossOriginProtection()

// admin authenticates the request (admin right required) and renders
// the handler's error the way the public API does.
func (a *API) admin(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := crossOrigin.Check(r); err != nil {
			api.WriteError(w, jsonWant, api.Errorf(http.StatusForbidden, "cross-origin request refused: the admin API answers its own console and clients that are not browsers"))
			return
		}
		p, err := a.Auth.Authenticate(r.Context(), r, nil)
		if err != nil {
			if r.Header.Get(consoleHeader) != "" {
				err = withoutChallenge(err)
			}
			api.WriteError(w, jsonWant, err)
			return
		}
		if !p.Admin() {
			api.WriteError(w, jsonWant, api.Errorf(http.StatusForbidden, "the admin API needs a token with the admin right"))
			return
		}
		r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		if err := h(w, r); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || isUnavailable(err) {
				err = api.Unavailable
			}
			api.WriteError(w, jsonWant, err)
		}
	}
}

func isUnavailable(err error) bool { return errors.Is(err, store.ErrUnavailable) }

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	return json.NewEncoder(w).Encode(v)
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	us, err := a.Users.List(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, us)
}

// NewUserRequest is the body of POST /admin/api/users.
type NewUserRequest struct {
	Login  string   `json:"login"`
	Rights []string `json:"rights"`
	Topics []string `json:"topics,omitempty"`
	// Expires is a duration from now ("720h") or an RFC 3339 time; empty
	// for never.
	Expires string `json:"expires,omitempty"`
}

// TokenAnswer carries a new token, shown only in this answer.
type TokenAnswer struct {
	Login   string    `json:"login"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires,omitzero"`
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return api.Invalid("the body must be a JSON object of the documented fields: %v", err)
	}
	return nil
}

func (a *API) addUser(w http.ResponseWriter, r *http.Request) error {
	var req NewUserRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Login == "" {
		return api.Invalid("login is required")
	}
	rights, err := auth.ParseRights(joinComma(req.Rights))
	if err != nil {
		return api.Invalid("%v", err)
	}
	nu := auth.NewUser{Login: req.Login, Rights: rights, Topics: req.Topics}
	if req.Expires != "" {
		if nu.Expires, err = auth.ParseExpiry(req.Expires, time.Now()); err != nil {
			return api.Invalid("expires: %v", err)
		}
	}
	token, err := a.Users.Add(r.Context(), nu)
	if errors.Is(err, store.ErrExists) {
		return api.Errorf(http.StatusConflict, "user %q already exists: rotate its token or remove it first", req.Login)
	}
	if err != nil {
		return userError(err)
	}
	return writeJSON(w, http.StatusCreated, TokenAnswer{Login: req.Login, Token: token, Expires: nu.Expires})
}

// userError turns the validation errors of package auth into 422s.
func userError(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) || isUnavailable(err) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return api.Invalid("%v", err)
}

func (a *API) removeUser(w http.ResponseWriter, r *http.Request) error {
	login := r.PathValue("login")
	if err := a.Users.Remove(r.Context(), login); errors.Is(err, ErrNoUser) {
		return api.Errorf(http.StatusNotFound, "no user %q", login)
	} else if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// RotateRequest is the optional body of POST /admin/api/users/{login}/rotate.
type RotateRequest struct {
	Expires string `json:"expires,omitempty"`
}

func (a *API) rotateUser(w http.ResponseWriter, r *http.Request) error {
	login := r.PathValue("login")
	var req RotateRequest
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			return err
		}
	}
	rot := auth.Rotation{Login: login}
	if req.Expires != "" {
		var err error
		if rot.Expires, err = auth.ParseExpiry(req.Expires, time.Now()); err != nil {
			return api.Invalid("expires: %v", err)
		}
	}
	token, err := a.Users.Rotate(r.Context(), rot)
	if errors.Is(err, ErrNoUser) || errors.Is(err, store.ErrNotFound) {
		return api.Errorf(http.StatusNotFound, "no user %q", login)
	}
	if err != nil {
		return userError(err)
	}
	return writeJSON(w, http.StatusOK, TokenAnswer{Login: login, Token: token, Expires: rot.Expires})
}

// TopicInfo is one tracked topic as the admin API shows it.
type TopicInfo struct {
	Topic string `json:"topic"`
	Title string `json:"title,omitempty"`
	// Status is the retrieve answer's status block (last fetch, its HTTP
	// outcome, next fetch, newest cursor).
	Status feed.Status `json:"status"`
	// FetchError is the outcome of the last fetch when it failed.
	FetchError string `json:"fetchError,omitempty"`
	// Failures counts consecutive failed fetches; Hubs are the upstream
	// WebSub hubs the feed advertises, Upstreams the subscriptions held
	// there (state and lease).
	Failures  int            `json:"failures"`
	Hubs      []string       `json:"hubs,omitempty"`
	Upstreams []UpstreamInfo `json:"upstreams,omitempty"`
	Period    int            `json:"periodSeconds"`
	Changed   time.Time      `json:"lastChange,omitzero"`
	// Subscribers counts subscriptions (with or without a callback),
	// Callbacks those with one.
	Subscribers int `json:"subscribers"`
	Callbacks   int `json:"callbacks"`
	// Connections counts the live connections following the topic on
	// every node (as their last heartbeats counted them; this node now).
	Connections int `json:"connections"`
	// Items counts the items the topic holds.
	Items int64 `json:"items"`
}

// UpstreamInfo is a subscription the gateway holds at an upstream WebSub
// hub for a topic (never its secret).
type UpstreamInfo struct {
	Hub       string              `json:"hub"`
	State     store.UpstreamState `json:"state"`
	ExpiresAt time.Time           `json:"expiresAt,omitzero"`
	Reason    string              `json:"reason,omitempty"`
}

// topics describes the tracked topics, at most limit of them (0: all),
// and says how many there are; conns are the live connections per topic.
func (a *API) topics(ctx context.Context, limit int, conns map[string]int) ([]TopicInfo, int, error) {
	names, err := a.Store.TrackedTopics(ctx)
	if err != nil {
		return nil, 0, err
	}
	total := len(names)
	if limit > 0 && len(names) > limit {
		names = names[:limit]
	}
	out := make([]TopicInfo, 0, len(names))
	for _, name := range names {
		ti, err := a.topic(ctx, name)
		if err != nil {
			return nil, 0, err
		}
		ti.Connections = conns[name]
		out = append(out, ti)
	}
	return out, total, nil
}

func (a *API) topic(ctx context.Context, name string) (TopicInfo, error) {
	ti := TopicInfo{Topic: name}
	if st, err := a.Store.Topic(ctx, name); err == nil {
		ti.Title, ti.Status = st.Meta.Title, st.Status
	} else if !errors.Is(err, store.ErrNotFound) {
		return ti, err
	}
	if a.Ingest != nil {
		is, err := a.Ingest.IngestState(ctx, name)
		if err != nil {
			return ti, err
		}
		ti.Failures, ti.Hubs, ti.Changed = is.Failures, is.Hubs, is.LastChange
		ti.Period = int(is.Period / time.Second)
		ups, err := a.Ingest.TopicUpstreams(ctx, name)
		if err != nil {
			return ti, err
		}
		for _, u := range ups {
			ti.Upstreams = append(ti.Upstreams, UpstreamInfo{Hub: u.Hub, State: u.State, ExpiresAt: u.ExpiresAt, Reason: u.Reason})
		}
	}
	if c := ti.Status.Code; ti.Failures > 0 || c >= 400 || (c == 0 && ti.Status.LastFetch > 0) {
		ti.FetchError = ti.Status.HTTP
	}
	subs, err := a.Store.TopicSubscriptions(ctx, name)
	if err != nil {
		return ti, err
	}
	ti.Subscribers = len(subs)
	for _, s := range subs {
		if s.Callback != "" {
			ti.Callbacks++
		}
	}
	// Cursors of a topic are contiguous: the items held run from the
	// oldest to the newest.
	oldest, err := a.Store.Read(ctx, name, store.Query{From: store.After, Cursor: 0, Count: 1})
	if err != nil {
		return ti, err
	}
	if n := len(oldest.Items); n > 0 && oldest.Last >= oldest.Items[n-1].Cursor {
		ti.Items = int64(oldest.Last-oldest.Items[n-1].Cursor) + 1
	}
	return ti, nil
}

// topicConnections sums the live connections per topic over the nodes.
func topicConnections(nodes []Node) map[string]int {
	out := map[string]int{}
	for _, n := range nodes {
		for t, c := range n.TopicConnections {
			out[t] += c
		}
	}
	return out
}

func (a *API) listTopics(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	nodes, err := a.nodeList(ctx)
	if err != nil {
		return err
	}
	out, _, err := a.topics(ctx, 0, topicConnections(nodes))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// DeliveryInfo is one webhook subscription and the health of its
// deliveries (never its secret).
type DeliveryInfo struct {
	Topic     string                 `json:"topic"`
	Callback  string                 `json:"callback"`
	Login     string                 `json:"login"`
	Format    string                 `json:"format,omitempty"`
	CreatedAt time.Time              `json:"createdAt"`
	ExpiresAt time.Time              `json:"expiresAt,omitzero"`
	Progress  store.DeliveryProgress `json:"progress"`
	// Failing is true while deliveries fail and are being retried.
	Failing bool `json:"failing"`
	// Queued counts the topic's items stored after the last one delivered
	// (the subscription's queue).
	Queued int64 `json:"queued"`
	// NextAttempt is when the next attempt is due (for a failing
	// subscription, the next retry); zero when nothing is to be delivered.
	// InProgress reports that a node is making an attempt now.
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	InProgress  bool      `json:"inProgress,omitempty"`
}

// deliveries lists every webhook subscription with its health.
func (a *API) deliveries(ctx context.Context) ([]DeliveryInfo, error) {
	out := []DeliveryInfo{}
	if a.Deliveries == nil {
		return out, nil
	}
	topics, err := a.Deliveries.DeliveryTopics(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, t := range topics {
		ds, err := a.Deliveries.TopicDeliveries(ctx, t)
		if err != nil {
			return nil, err
		}
		if len(ds) == 0 {
			continue
		}
		page, err := a.Store.Read(ctx, t, store.Query{From: store.Newest, Count: 0})
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			info, err := a.deliveryInfo(ctx, d, page.Last, now)
			if errors.Is(err, store.ErrNotFound) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
	}
	return out, nil
}

func (a *API) deliveryInfo(ctx context.Context, d store.Delivery, last feed.Cursor, now time.Time) (DeliveryInfo, error) {
	info := DeliveryInfo{
		Topic: d.Topic, Callback: d.Callback, Login: d.Login, Format: d.Format,
		CreatedAt: d.CreatedAt, ExpiresAt: d.ExpiresAt, Progress: d.Progress, Failing: d.Progress.Attempts > 0,
	}
	if last > d.Progress.Delivered {
		info.Queued = int64(last - d.Progress.Delivered)
	}
	job, err := a.Deliveries.DeliveryJob(ctx, d.DeliveryKey, now)
	if err != nil {
		return info, err
	}
	info.NextAttempt, info.InProgress = job.Due, job.Leased
	return info, nil
}

func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request) error {
	out, err := a.deliveries(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// RetryRequest is the body of POST /admin/api/deliveries/retry: the
// subscription whose delivery is made due at once.
type RetryRequest struct {
	Login    string `json:"login"`
	Topic    string `json:"topic"`
	Callback string `json:"callback"`
}

// retryDelivery makes a subscription's delivery due now, cutting short the
// back-off of a failing one, and answers 202 with the subscription.
func (a *API) retryDelivery(w http.ResponseWriter, r *http.Request) error {
	var req RetryRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Login == "" || req.Topic == "" || req.Callback == "" {
		return api.Invalid("login, topic and callback are required: they name the webhook subscription (see GET /admin/api/deliveries)")
	}
	if a.Retry == nil || a.Deliveries == nil {
		return api.Invalid("this gateway does not deliver to webhooks")
	}
	ctx := r.Context()
	k := store.DeliveryKey{Login: req.Login, Topic: req.Topic, Callback: req.Callback}
	notFound := api.Errorf(http.StatusNotFound, "no webhook subscription of %q to %s with callback %s (see GET /admin/api/deliveries)", req.Login, req.Topic, req.Callback)
	if err := a.Retry.RetryNow(ctx, k); errors.Is(err, store.ErrNotFound) {
		return notFound
	} else if err != nil {
		return err
	}
	d, err := a.Deliveries.Delivery(ctx, k)
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	} else if err != nil {
		return err
	}
	page, err := a.Store.Read(ctx, d.Topic, store.Query{From: store.Newest, Count: 0})
	if err != nil {
		return err
	}
	info, err := a.deliveryInfo(ctx, d, page.Last, time.Now())
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	} else if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, info)
}

// Connections is this node's live connections.
type Connections struct {
	Total  int              `json:"total"`
	ByKind map[string]int   `json:"byKind"`
	ByUser []live.ConnCount `json:"byUser"`
}

func (a *API) connections(w http.ResponseWriter, r *http.Request) error {
	c := Connections{ByKind: map[string]int{}, ByUser: []live.ConnCount{}}
	if a.Live != nil {
		c.ByUser = a.Live.Connections()
	}
	for _, u := range c.ByUser {
		c.Total += u.Count
		c.ByKind[u.Kind] += u.Count
	}
	return writeJSON(w, http.StatusOK, c)
}

func joinComma(s []string) string {
	s = slices.DeleteFunc(slices.Clone(s), func(x string) bool { return x == "" })
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}
