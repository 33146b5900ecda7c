package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

// RunNodes runs the conformance suite of store.NodeRegistry against the
// stores open returns (they must implement it).
func RunNodes(t *testing.T, open Opener) {
	t.Helper()
	s := open(t, store.Options{})
	if s == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() { _ = s.Close() })
	r, ok := s.(store.NodeRegistry)
	if !ok {
		t.Fatalf("%T does not implement store.NodeRegistry", s)
	}
	nodesLifeCycle(t, r, r)
}

// RunNodesMultiNode checks that two stores over the same backing data see
// each other's node records.
func RunNodesMultiNode(t *testing.T, open OpenerPair) {
	t.Helper()
	a, b := open(t, store.Options{})
	if a == nil || b == nil {
		t.Fatal("open returned a nil store")
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	ra, ok1 := a.(store.NodeRegistry)
	rb, ok2 := b.(store.NodeRegistry)
	if !ok1 || !ok2 {
		t.Fatalf("%T does not implement store.NodeRegistry", a)
	}
	nodesLifeCycle(t, ra, rb)
}

func nodeIDs(ns []store.NodeRecord) string {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	return fmt.Sprint(ids)
}

// nodesLifeCycle writes node records through a and reads them through b:
// listed until they expire, replaced by a newer heartbeat, removed.
func nodesLifeCycle(t *testing.T, a, b store.NodeRegistry) {
	ctx := testContext(t)
	now := dlvBase
	list := func(at time.Time, want, what string) []store.NodeRecord {
		t.Helper()
		ns, err := b.Nodes(ctx, at)
		if err != nil || nodeIDs(ns) != want {
			t.Fatalf("%s: Nodes = %s, %v; want %s", what, nodeIDs(ns), err, want)
		}
		return ns
	}
	list(now, "[]", "no node yet")
	put := func(id, info string, expires time.Time) {
		t.Helper()
		if err := a.PutNode(ctx, store.NodeRecord{ID: id, Info: []byte(info), Expires: expires}); err != nil {
			t.Fatalf("PutNode %s: %v", id, err)
		}
	}
	put("node-b", `{"role":"api"}`, now.Add(15*time.Second))
	put("node-a", `{"role":"ingest","text":"a|b"}`, now.Add(10*time.Second))
	ns := list(now, "[node-a node-b]", "two nodes, ordered by id")
	if string(ns[0].Info) != `{"role":"ingest","text":"a|b"}` || !ns[0].Expires.Equal(now.Add(10*time.Second)) {
		t.Fatalf("record of node-a = %q until %v", ns[0].Info, ns[0].Expires)
	}
	list(now.Add(10*time.Second), "[node-b]", "node-a expired")
	// A heartbeat renews (and replaces) a record.
	put("node-a", `{"role":"all"}`, now.Add(30*time.Second))
	ns = list(now.Add(20*time.Second), "[node-a]", "node-a renewed, node-b expired")
	if string(ns[0].Info) != `{"role":"all"}` {
		t.Fatalf("renewed record of node-a = %q", ns[0].Info)
	}
	put("node-c", `{}`, now.Add(time.Minute))
	if err := a.RemoveNode(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveNode(ctx, "node-never"); err != nil {
		t.Fatalf("RemoveNode of an unknown node: %v", err)
	}
	list(now.Add(20*time.Second), "[node-c]", "node-a removed")
}
