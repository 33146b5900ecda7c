package stream

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/feedgate/feedgate/live"
)

const numKinds = int(live.KindPoll) + 1

// metrics are the service's Prometheus series; label children are looked
// up once so that the hot paths only add to atomics.
type metrics struct {
	deliveries [numKinds]prometheus.Counter
	slow       [numKinds]prometheus.Counter
	// direct counts notifications written by fan-out straight to the
	// socket: whole, or partly (the rest left to the client's goroutine).
	directWhole, directPartial prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedgate_live_deliveries_total",
		Help: "Notifications written to live clients, by kind.",
	}, []string{"kind"})
	slow := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedgate_live_slow_disconnects_total",
		Help: "Live clients disconnected because they fell behind (full queue or write timeout), by kind.",
	}, []string{"kind"})
	direct := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedgate_live_direct_writes_total",
		Help: "Notifications the fan-out wrote straight to an idle client's socket, by result (whole, partial: the socket took part and the client's goroutine wrote the rest).",
	}, []string{"result"})
	m := &metrics{
		directWhole:   direct.WithLabelValues("whole"),
		directPartial: direct.WithLabelValues("partial"),
	}
	for k := range live.Kind(numKinds) {
		m.deliveries[k] = deliveries.WithLabelValues(k.String())
		m.slow[k] = slow.WithLabelValues(k.String())
	}
	if reg != nil {
		reg.MustRegister(deliveries, slow, direct)
	}
	return m
}
