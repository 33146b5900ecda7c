package storetest

import (
	"testing"
	"time"

	"github.com/feedgate/feedgate/store"
)

// RunLeases runs the conformance suite of store.Leases: one holder at a
// time, renewals by the holder, and a lease not renewed within its ttl taken
// by another. open returns two stores on the same backing data (the same
// store twice where the backend is single-node).
func RunLeases(t *testing.T, open OpenerPair) {
	t.Helper()
	a, b := open(t, store.Options{})
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	la, ok1 := a.(store.Leases)
	lb, ok2 := b.(store.Leases)
	if !ok1 || !ok2 {
		t.Fatalf("%T does not implement store.Leases", a)
	}
	ctx := testContext(t)
	take := func(l store.Leases, name, holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := l.Lease(ctx, name, holder, ttl)
		if err != nil {
			t.Fatalf("Lease(%q, %q): %v", name, holder, err)
		}
		return ok
	}
	if !take(la, "gauges", "node-a", time.Minute) {
		t.Fatal("a free lease was refused")
	}
	if take(lb, "gauges", "node-b", time.Minute) {
		t.Fatal("a held lease was granted to another holder")
	}
	if !take(lb, "other", "node-b", time.Minute) {
		t.Fatal("leases of different names are not independent")
	}
	if !take(lb, "gauges", "node-a", 200*time.Millisecond) {
		t.Fatal("the holder could not renew its lease (through another store)")
	}
	// Not renewed: another holder takes it once the ttl has passed.
	deadline := time.Now().Add(10 * time.Second)
	for !take(la, "gauges", "node-b", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatal("a lease not renewed was still refused 10 s after its 200 ms ttl")
		}
		time.Sleep(50 * time.Millisecond) // polling a condition; bounded above
	}
	if take(la, "gauges", "node-a", time.Minute) {
		t.Fatal("the former holder got back a lease taken by another")
	}
}
