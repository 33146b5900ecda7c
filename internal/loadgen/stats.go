package loadgen

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Latencies is a set of samples; the zero value is ready to use.
type Latencies []time.Duration

// Summary is what reports print of a latency set.
type Summary struct {
	N    int           `json:"n"`
	Min  time.Duration `json:"min_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Summarize sorts the samples in place and returns their percentiles
// (nearest rank).
func (l Latencies) Summarize() Summary {
	if len(l) == 0 {
		return Summary{}
	}
	slices.Sort(l)
	var sum time.Duration
	for _, d := range l {
		sum += d
	}
	return Summary{
		N: len(l), Min: l[0], Max: l[len(l)-1], Mean: sum / time.Duration(len(l)),
		P50: l.rank(0.50), P90: l.rank(0.90), P99: l.rank(0.99), P999: l.rank(0.999),
	}
}

// rank is the nearest-rank percentile of sorted samples.
func (l Latencies) rank(p float64) time.Duration {
	i := int(p*float64(len(l))+0.999999) - 1
	return l[max(0, min(i, len(l)-1))]
}

func (s Summary) String() string {
	if s.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, n=%d)",
		ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max), ms(s.Mean), s.N)
}

// ms renders a duration in milliseconds with useful precision.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f < 1:
		return fmt.Sprintf("%.3fms", f)
	case f < 100:
		return fmt.Sprintf("%.2fms", f)
	default:
		return fmt.Sprintf("%.0fms", f)
	}
}

// Counts counts outcomes by name (status codes, error kinds).
type Counts map[string]int

// Add merges o into c.
func (c Counts) Add(o Counts) {
	for k, v := range o {
		c[k] += v
	}
}

// Total is the sum of all counts.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func (c Counts) String() string {
	if len(c) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, c[k])
	}
	return strings.Join(parts, ", ")
}

// errKind shortens a transport error for counting: the same failure on
// many connections is one line in the report.
func errKind(err error) string {
	s := err.Error()
	for _, k := range []string{"connection reset by peer", "broken pipe", "connection refused",
		"i/o timeout", "EOF", "cannot assign requested address", "too many open files"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}
