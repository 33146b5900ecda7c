package limit

import (
	"testing"
	"time"
)

func TestKeyedBurstAndRefill(t *testing.T) {
	t.Parallel()
	k := NewKeyed(2, 0) // burst: one second's worth
	now := time.Now()
	for i, want := range []bool{true, true, false} {
		if ok, wait := k.AllowN(now, "u", 1); ok != want || (!ok && (wait <= 0 || wait > 500*time.Millisecond)) {
			t.Fatalf("request %d: ok %v wait %v, want ok %v", i, ok, wait, want)
		}
	}
	if ok, _ := k.AllowN(now, "other", 1); !ok {
		t.Fatal("another key shares the bucket")
	}
	if ok, _ := k.AllowN(now.Add(500*time.Millisecond), "u", 1); !ok {
		t.Fatal("no token after half a second at 2/s")
	}
	if NewKeyed(0, 5) != nil {
		t.Fatal("a zero rate must mean no limit (nil)")
	}
	var none *Keyed
	if ok, _ := none.Allow("x"); !ok {
		t.Fatal("a nil Keyed must allow")
	}
	if RetryAfter(100*time.Millisecond) != 1 || RetryAfter(1500*time.Millisecond) != 2 {
		t.Fatal("RetryAfter must round up to whole seconds, at least 1")
	}
}

func TestKeyedAllowAllIsAllOrNothing(t *testing.T) {
	t.Parallel()
	k := NewKeyed(1, 1)
	if ok, _ := k.AllowAll([]string{"a"}); !ok {
		t.Fatal("first ping of a")
	}
	if ok, wait := k.AllowAll([]string{"b", "a"}); ok || wait <= 0 {
		t.Fatalf("a is spent: ok %v wait %v", ok, wait)
	}
	// b's token was given back.
	if ok, _ := k.AllowAll([]string{"b"}); !ok {
		t.Fatal("a refused AllowAll took b's token")
	}
}

func TestKeyedBlockedAndTake(t *testing.T) {
	t.Parallel()
	k := NewKeyed(1.0/60, 2)
	if blocked, _ := k.Blocked("addr"); blocked {
		t.Fatal("an unknown key is blocked")
	}
	k.Take("addr")
	k.Take("addr")
	blocked, wait := k.Blocked("addr")
	if !blocked || wait < 50*time.Second || wait > time.Minute {
		t.Fatalf("after 2 failures at 1/min burst 2: blocked %v wait %v", blocked, wait)
	}
}

func TestKeyedForgetsFullBuckets(t *testing.T) {
	t.Parallel()
	k := NewKeyed(1000, 1)
	now := time.Now()
	for i := range 3 * minSweep {
		k.AllowN(now.Add(time.Duration(i)*time.Second), string(rune('a'+i%26))+string(rune(i)), 1)
	}
	k.mu.Lock()
	n := len(k.buckets)
	k.mu.Unlock()
	if n > 2*minSweep {
		t.Fatalf("%d buckets held: full ones are not forgotten", n)
	}
}
