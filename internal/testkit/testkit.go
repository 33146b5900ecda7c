// Package testkit holds what the tests of several packages share: a
// bounded wait for a condition and a reading of a Prometheus metric.
package testkit

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Eventually polls cond every 5 ms until it holds, and fails the test,
// naming what it waited for, once within has passed without it.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, bounded above
	}
}

// Metric returns the value of the first gauge or counter called name
// whose labels include every pair of labels (name, value, name, value...);
// 0 when there is none.
func Metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
