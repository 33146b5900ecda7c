package ratelog

import (
	"fmt"
	"testing"
	"time"
)

func TestPerKeyInterval(t *testing.T) {
	l := New(Options{Every: time.Minute})
	t0 := time.Unix(1000, 0)
	if ok, _ := l.Allow("a", t0, false); !ok {
		t.Fatal("the first line of a key was held back")
	}
	for i := range 100 {
		if ok, _ := l.Allow("a", t0.Add(time.Duration(i)*100*time.Millisecond), false); ok {
			t.Fatalf("line %d within the interval let through", i)
		}
	}
	if ok, _ := l.Allow("b", t0, false); !ok {
		t.Fatal("another key was held back")
	}
	ok, n := l.Allow("a", t0.Add(time.Minute), false)
	if !ok || n != 100 {
		t.Fatalf("after the interval: ok=%v suppressed=%d, want true 100", ok, n)
	}
	if ok, _ := l.Allow("a", t0.Add(time.Minute+time.Second), true); !ok {
		t.Fatal("a first failure was held back by the interval")
	}
}

func TestPerSecondCap(t *testing.T) {
	l := New(Options{PerSecond: 5})
	t0 := time.Unix(2000, 0)
	let := 0
	for i := range 50 {
		if ok, _ := l.Allow(fmt.Sprint("k", i), t0, false); ok {
			let++
		}
	}
	if let != 5 {
		t.Fatalf("%d lines let through in one second, want 5", let)
	}
	if ok, n := l.Allow("k10", t0.Add(time.Second), false); !ok || n != 1 {
		t.Fatalf("next second: ok=%v suppressed=%d, want true 1", ok, n)
	}
}

func TestKeysBounded(t *testing.T) {
	l := New(Options{MaxKeys: 100, PerSecond: 1 << 20})
	t0 := time.Unix(3000, 0)
	for i := range 1000 {
		l.Allow(fmt.Sprint("k", i), t0.Add(time.Duration(i)*time.Second), false)
	}
	if len(l.keys) > 100 {
		t.Fatalf("%d keys remembered, want at most 100", len(l.keys))
	}
}
