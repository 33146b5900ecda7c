package store

import (
	"context"
	"time"
)

// NodeRegistry lists the gateway nodes that share a backend. Each node
// keeps its own record fresh (a heartbeat) and the record lives until it
// expires, so a node that stops, or crashes, leaves the list on its own.
// The embedded store serves one node: its list is that node. Times passed
// in are the only clock (a backend never reads its own). Its conformance
// suite is storetest.RunNodes.
type NodeRegistry interface {
	// PutNode stores or replaces the record of node n.ID.
	PutNode(ctx context.Context, n NodeRecord) error
	// Nodes returns the records that have not expired at now, ordered by
	// ID.
	Nodes(ctx context.Context, now time.Time) ([]NodeRecord, error)
	// RemoveNode removes a node's record (no error when absent).
	RemoveNode(ctx context.Context, id string) error
}

// NodeRecord is one node's entry in the registry.
type NodeRecord struct {
	ID string `json:"id"`
	// Info describes the node (JSON); the store keeps it as given.
	Info []byte `json:"info"`
	// Expires is when the record stops being listed unless renewed.
	Expires time.Time `json:"expires"`
}
