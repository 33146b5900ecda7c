package main

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/admin"
	"github.com/feedgate/feedgate/auth"
	"github.com/feedgate/feedgate/hub"
	"github.com/feedgate/feedgate/live"
	"github.com/feedgate/feedgate/server"
	"github.com/feedgate/feedgate/store"
)

var started = time.Now()

// nodeID is the node's name in the node list: --node-id, or the host name
// and the port it listens on (unique among the nodes of one host, and the
// same after a restart).
func (c *ServeCmd) nodeID(listen net.Addr) string {
	if c.NodeID != "" {
		return c.NodeID
	}
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(listen.String())
	return cmp.Or(host, "localhost") + ":" + port
}

// adminAPI is the admin API of this node; every node runs its heartbeat,
// the admin listener (when set) serves it.
func (c *ServeCmd) adminAPI(st store.Store, is store.IngestStore, authn *auth.Authenticator, hubSvc *hub.Service, lh *live.Hub, public string, listen, adminListen net.Addr) *admin.API {
	dlv, _ := st.(store.DeliveryStore)
	reg, _ := st.(store.NodeRegistry)
	info := admin.NodeInfo{ID: c.nodeID(listen), Version: version, Role: c.Role, Store: c.describe(),
		PublicURL: public, Listen: listen.String(), Started: started}
	if adminListen != nil {
		info.AdminURL = fmt.Sprintf("http://%s/admin/", adminListen)
	}
	return &admin.API{
		Users:      admin.Direct{Store: st, Subscriptions: hubSvc, Forget: authn.Forget},
		Auth:       authn,
		Store:      st,
		Ingest:     is,
		Deliveries: dlv,
		Retry:      hubSvc,
		Live:       lh,
		Node:       info,
		Registry:   reg,
		Heartbeat:  c.NodeHeartbeat,
	}
}

// adminHandler is the admin listener's handler: /metrics, pprof, the
// admin API and the admin console.
func adminHandler(reg *prometheus.Registry, a *admin.API) http.Handler {
	mux := server.NewAdmin(reg)
	a.Register(mux)
	a.RegisterConsole(mux)
	return mux
}
