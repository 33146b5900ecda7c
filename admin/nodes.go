package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"time"

	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/store"
)

// DefaultHeartbeat is how often a node renews its record in the node
// registry unless configured; a record expires after three heartbeats.
const DefaultHeartbeat = 5 * time.Second

// Bounds of what a node's record carries, so a record stays small whatever
// the node serves: the users with the most connections, the topics with
// the most.
const (
	maxNodeUsers  = 100
	maxNodeTopics = 200
)

// Node is one gateway node in GET /admin/api/nodes: its description and
// what it counted at its last heartbeat (for this node, now).
type Node struct {
	NodeInfo
	// Self marks the node that answered.
	Self bool `json:"self"`
	// Seen is when the node wrote its record (for this node, now).
	Seen       time.Time `json:"seen"`
	Goroutines int       `json:"goroutines"`
	// Connections counts the node's live connections (streams, sockets,
	// held long-polls), ByKind by form and ByUser by user and form (the
	// users with the most, at most 100 entries).
	Connections int              `json:"connections"`
	ByKind      map[string]int   `json:"byKind"`
	ByUser      []live.ConnCount `json:"byUser"`
	// LiveTopics counts the topics the node follows live; TopicConnections
	// the live connections per topic (the 200 topics with the most).
	LiveTopics       int            `json:"liveTopics"`
	TopicConnections map[string]int `json:"topicConnections,omitempty"`
}

func (a *API) heartbeat() time.Duration { return cmp.Or(a.Heartbeat, DefaultHeartbeat) }

// self describes this node now.
func (a *API) self(now time.Time) Node {
	n := Node{NodeInfo: a.Node, Self: true, Seen: now, Goroutines: runtime.NumGoroutine(),
		ByKind: map[string]int{}, ByUser: []live.ConnCount{}}
	if a.Live == nil {
		return n
	}
	n.ByUser = a.Live.Connections()
	for _, c := range n.ByUser {
		n.Connections += c.Count
		n.ByKind[c.Kind] += c.Count
	}
	if len(n.ByUser) > maxNodeUsers {
		by := slices.Clone(n.ByUser)
		slices.SortStableFunc(by, func(x, y live.ConnCount) int { return cmp.Compare(y.Count, x.Count) })
		n.ByUser = by[:maxNodeUsers]
	}
	n.LiveTopics = a.Live.Topics()
	n.TopicConnections = a.Live.TopicConnections()
	if len(n.TopicConnections) > maxNodeTopics {
		type tc struct {
			topic string
			n     int
		}
		all := make([]tc, 0, len(n.TopicConnections))
		for t, c := range n.TopicConnections {
			all = append(all, tc{t, c})
		}
		slices.SortFunc(all, func(x, y tc) int { return cmp.Or(cmp.Compare(y.n, x.n), cmp.Compare(x.topic, y.topic)) })
		n.TopicConnections = make(map[string]int, maxNodeTopics)
		for _, x := range all[:maxNodeTopics] {
			n.TopicConnections[x.topic] = x.n
		}
	}
	return n
}

// RunHeartbeat keeps this node's record in the registry until ctx ends,
// renewing it every Heartbeat, then removes it: a node that stops leaves
// the list at once, one that crashes when its record expires (three
// heartbeats). It returns at once without a Registry.
func (a *API) RunHeartbeat(ctx context.Context, log *slog.Logger) {
	if a.Registry == nil {
		return
	}
	every := a.heartbeat()
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		err := a.beat(ctx, time.Now(), 3*every)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			log.LogAttrs(ctx, slog.LevelWarn, "node heartbeat failed; this node may be missing from the node list", slog.String("node", a.Node.ID), slog.String("err", err.Error()))
			failing = true
		case err == nil && failing:
			log.LogAttrs(ctx, slog.LevelInfo, "node heartbeat recovered", slog.String("node", a.Node.ID))
			failing = false
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := a.Registry.RemoveNode(rctx, a.Node.ID); err != nil {
				log.LogAttrs(rctx, slog.LevelWarn, "removing this node from the node list", slog.String("node", a.Node.ID), slog.String("err", err.Error()))
			}
			return
		case <-t.C:
		}
	}
}

// beat writes this node's record, valid for ttl.
func (a *API) beat(ctx context.Context, now time.Time, ttl time.Duration) error {
	n := a.self(now)
	n.Self = false
	info, err := json.Marshal(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, a.heartbeat())
	defer cancel()
	return a.Registry.PutNode(ctx, store.NodeRecord{ID: a.Node.ID, Info: info, Expires: now.Add(ttl)})
}

// nodeList lists the nodes sharing the store, from their records, with
// this node as it is now.
func (a *API) nodeList(ctx context.Context) ([]Node, error) {
	now := time.Now()
	me := a.self(now)
	if a.Registry == nil {
		return []Node{me}, nil
	}
	recs, err := a.Registry.Nodes(ctx, now)
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(recs)+1)
	found := false
	for _, r := range recs {
		if r.ID == a.Node.ID {
			out, found = append(out, me), true
			continue
		}
		var n Node
		if err := json.Unmarshal(r.Info, &n); err != nil {
			// A record this version cannot read (a newer node's): listed
			// by its id.
			n = Node{NodeInfo: NodeInfo{ID: r.ID}}
		}
		n.ID, n.Self = r.ID, false
		if n.ByKind == nil {
			n.ByKind = map[string]int{}
		}
		if n.ByUser == nil {
			n.ByUser = []live.ConnCount{}
		}
		out = append(out, n)
	}
	if !found {
		out = append(out, me)
		slices.SortFunc(out, func(x, y Node) int { return cmp.Compare(x.ID, y.ID) })
	}
	return out, nil
}

// nodes answers GET /admin/api/nodes: every node sharing the store.
func (a *API) nodes(w http.ResponseWriter, r *http.Request) error {
	ns, err := a.nodeList(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ns)
}
