package stream

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/live"
)

const numKinds = int(live.KindPoll) + 1

// metrics are the service's Prometheus series. Deliveries are counted on
// the fan-out's hot path by several workers at once: they go to sharded
// counters (a shard per client, by its number) summed when scraped, so
// that workers do not contend for one cache line.
type metrics struct {
	deliveries [numKinds]shardedCounter
	slow       [numKinds]prometheus.Counter
	// direct counts notifications written by fan-out straight to the
	// socket: whole, or partly (the rest left to the session).
	directWhole, directPartial shardedCounter
}

// shardedCounter is a counter in padded shards.
type shardedCounter struct {
	shards [16]struct {
		n atomic.Uint64
		_ [56]byte
	}
}

func (c *shardedCounter) add(shard uint32) { c.shards[shard%16].n.Add(1) }

func (c *shardedCounter) value() float64 {
	var n uint64
	for i := range c.shards {
		n += c.shards[i].n.Load()
	}
	return float64(n)
}

var (
	deliveriesDesc = prometheus.NewDesc("feedgate_live_deliveries_total",
		"Notifications written to live clients, by kind.", []string{"kind"}, nil)
	directDesc = prometheus.NewDesc("feedgate_live_direct_writes_total",
		"Notifications the fan-out wrote straight to an idle client's socket, by result (whole, partial: the socket took part and the client's session wrote the rest).", []string{"result"}, nil)
)

// Describe implements prometheus.Collector for the sharded counters.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- deliveriesDesc
	ch <- directDesc
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for k := range live.Kind(numKinds) {
		ch <- prometheus.MustNewConstMetric(deliveriesDesc, prometheus.CounterValue, m.deliveries[k].value(), k.String())
	}
	ch <- prometheus.MustNewConstMetric(directDesc, prometheus.CounterValue, m.directWhole.value(), "whole")
	ch <- prometheus.MustNewConstMetric(directDesc, prometheus.CounterValue, m.directPartial.value(), "partial")
}

func newMetrics(reg prometheus.Registerer) *metrics {
	slow := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedgate_live_slow_disconnects_total",
		Help: "Live clients disconnected because they fell behind (full queue or write timeout), by kind.",
	}, []string{"kind"})
	m := &metrics{}
	for k := range live.Kind(numKinds) {
		m.slow[k] = slow.WithLabelValues(k.String())
	}
	if reg != nil {
		reg.MustRegister(slow, m)
	}
	return m
}
