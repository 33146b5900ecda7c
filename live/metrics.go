package live

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the hub's Prometheus series; label children are looked up
// once so that the hot paths only add to atomics.
type metrics struct {
	conns         [numKinds]prometheus.Gauge
	rejected      *prometheus.CounterVec
	revoked       prometheus.Counter
	topics        prometheus.Gauge
	notifications prometheus.Counter
	resyncs       prometheus.Counter
	holes         prometheus.Counter
	lost          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "feedgate_live_connections",
		Help: "Open live connections on this node (streams, SSE, WebSockets, held long-polls), by kind.",
	}, []string{"kind"})
	m := &metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedgate_live_rejected_total",
			Help: "Live connections refused, by reason (user_limit, shutdown).",
		}, []string{"reason"}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedgate_live_revoked_total",
			Help: "Live connections ended because their credential was removed, rotated or expired.",
		}),
		topics: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "feedgate_live_topics",
			Help: "Topics this node holds a live subscription for (one per topic, whatever its consumers).",
		}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedgate_live_notifications_total",
			Help: "Notifications this node fanned out (each once, to every consumer of its topic).",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedgate_live_resyncs_total",
			Help: "Times the live link was re-established and topics re-read from their last cursor.",
		}),
		holes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedgate_live_filled_holes_total",
			Help: "Announcements that skipped cursors, held while the missing items were read from the store.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedgate_live_lost_topics_total",
			Help: "Times a topic's missed items could not be read and its consumers were told to start over.",
		}),
	}
	for k := Kind(0); k < numKinds; k++ {
		m.conns[k] = conns.WithLabelValues(k.String())
	}
	if reg != nil {
		reg.MustRegister(conns, m.rejected, m.revoked, m.topics, m.notifications, m.resyncs, m.holes, m.lost)
	}
	return m
}
