package redisstore_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/feedgate/feedgate/internal/redistest"
	"github.com/feedgate/feedgate/store"
	"github.com/feedgate/feedgate/store/storetest"
)

func TestDeliveryConformance(t *testing.T) {
	srv := redistest.Start(t)
	// Each subtest gets a database of its own on one server.
	var db atomic.Int32
	base := strings.TrimSuffix(srv.URL(), "/0")
	storetest.RunDelivery(t, func(t *testing.T, opts store.Options) store.Store {
		return newStore(t, fmt.Sprintf("%s/%d", base, db.Add(1)), opts)
	})
}

func TestDeliveryMultiNode(t *testing.T) {
	storetest.RunDeliveryMultiNode(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
		srv := redistest.Start(t)
		return newStore(t, srv.URL(), opts), newStore(t, srv.URL(), opts)
	})
}

func TestNodesConformance(t *testing.T) {
	storetest.RunNodes(t, func(t *testing.T, opts store.Options) store.Store {
		return newStore(t, redistest.Start(t).URL(), opts)
	})
	storetest.RunNodesMultiNode(t, func(t *testing.T, opts store.Options) (store.Store, store.Store) {
		srv := redistest.Start(t)
		return newStore(t, srv.URL(), opts), newStore(t, srv.URL(), opts)
	})
}
