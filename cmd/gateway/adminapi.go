package main

import (
	"net/http"
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

// adminHandler is the admin listener's handler: /metrics, pprof and the
// admin API.
func (c *ServeCmd) adminHandler(reg *prometheus.Registry, st store.Store, is store.IngestStore, authn *auth.Authenticator, hubSvc *hub.Service, lh *live.Hub, public string) http.Handler {
	mux := server.NewAdmin(reg)
	dlv, _ := st.(store.DeliveryStore)
	(&admin.API{
		Users:      admin.Direct{Store: st, Subscriptions: hubSvc, Forget: authn.Forget},
		Auth:       authn,
		Store:      st,
		Ingest:     is,
		Deliveries: dlv,
		Retry:      hubSvc,
		Live:       lh,
		Node:       admin.NodeInfo{Version: version, Role: c.Role, Store: c.describe(), PublicURL: public, Started: started},
	}).Register(mux)
	return mux
}
