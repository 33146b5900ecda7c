package stream

import (
	"github.com/prometheus/client_golang/prometheus"
)

// kind is the form of a live connection, as metrics label it.
type kind int

const (
	kindNDJSON kind = iota
	kindAtom
	kindSSE
	kindWebSocket
	kindPoll
	numKinds
)

var kindNames = [numKinds]string{"ndjson", "atom", "sse", "websocket", "poll"}

func (k kind) String() string { return kindNames[k] }

// metrics are the broker's Prometheus series; label children are looked up
// once so that the hot paths only add to atomics.
type metrics struct {
	conns      [numKinds]prometheus.Gauge
	deliveries [numKinds]prometheus.Counter
	slow       [numKinds]prometheus.Counter
	rejected   *prometheus.CounterVec
	topics     prometheus.Gauge
	resyncs    prometheus.Counter
	holes      prometheus.Counter
	// direct counts notifications written by fan-out straight to the
	// socket: whole, or partly (the rest left to the client's goroutine).
	directWhole, directPartial prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	conns := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "feedgate_live_connections",
		Help: "Open live connections on this node (streams, SSE, WebSockets, held long-polls), by kind.",
	}, []string{"kind"})
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedgate_live_deliveries_total",
		Help: "Notifications written to live clients, by kind.",
	}, []string{"kind"})
	slow := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedgate_live_slow_disconnects_total",
		Help: "Live clients disconnected because they fell behind (full queue or write timeout), by kind.",
	}, []string{"kind"})
	m := &metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedgate_live_rejected_total",
			Help: "Live connections refused, by reason (user_limit, shutdown).",
		}, []string{"reason"}),
		topics: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "feedgate_live_topics",
			Help: "Topics this node's broker holds a live subscription for.",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedgate_live_resyncs_total",
			Help: "Times the live link was re-established and topics re-read from their last cursor.",
		}),
		holes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "feedgate_live_filled_holes_total",
			Help: "Announcements that skipped cursors, filled by reading the store.",
		}),
	}
	direct := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feedgate_live_direct_writes_total",
		Help: "Notifications the fan-out wrote straight to an idle client's socket, by result (whole, partial: the socket took part and the client's goroutine wrote the rest).",
	}, []string{"result"})
	m.directWhole = direct.WithLabelValues("whole")
	m.directPartial = direct.WithLabelValues("partial")
	for k := kind(0); k < numKinds; k++ {
		m.conns[k] = conns.WithLabelValues(k.String())
		m.deliveries[k] = deliveries.WithLabelValues(k.String())
		m.slow[k] = slow.WithLabelValues(k.String())
	}
	if reg != nil {
		reg.MustRegister(conns, deliveries, slow, direct, m.rejected, m.topics, m.resyncs, m.holes)
	}
	return m
}
