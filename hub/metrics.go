package hub

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the hub's Prometheus collectors.
type metrics struct {
	attempts      prometheus.Counter
	succeeded     prometheus.Counter
	failed        *prometheus.CounterVec
	items         prometheus.Counter
	dropped       *prometheus.CounterVec
	redelivered   prometheus.Counter
	duration      prometheus.Histogram
	retryAge      prometheus.Histogram
	inFlight      prometheus.Gauge
	queueDepth    prometheus.Gauge
	leased        prometheus.Gauge
	subscriptions prometheus.Gauge
	verifications *prometheus.CounterVec
	removed       *prometheus.CounterVec
	replays       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "feedgate", "hub"
	m := &metrics{
		attempts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_attempts_total",
			Help: "Delivery POSTs attempted to subscriber callbacks.",
		}),
		succeeded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_succeeded_total",
			Help: "Delivery POSTs answered 2xx.",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_failed_total",
			Help: "Delivery POSTs that failed, by reason (network, timeout, refused, http_4xx, http_5xx, gone).",
		}, []string{"reason"}),
		items: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "delivered_items_total",
			Help: "Items delivered to callbacks (one item to one callback counts once).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dropped_items_total",
			Help: "Items a callback never got, by reason (retries_exhausted, trimmed).",
		}, []string{"reason"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "redeliveries_total",
			Help: "POSTs made after a node stopped without recording an outcome (the callback may have had the items).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_duration_seconds",
			Help:    "Time from sending a delivery POST to its answer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 11),
		}),
		retryAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_retry_age_seconds",
			Help:    "Age of the first failed attempt when a delivery is retried.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "deliveries_in_flight",
			Help: "Delivery POSTs this node has in flight.",
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_queue_depth",
			Help: "Delivery jobs due and not yet taken by a node, over all nodes (reported by one node, 0 on the others: sum or max over nodes).",
		}),
		leased: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "delivery_jobs_leased",
			Help: "Delivery jobs held by a node, over all nodes (reported by one node, 0 on the others).",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "callback_subscriptions",
			Help: "Subscriptions with a callback, over all nodes (reported by one node, 0 on the others).",
		}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "verifications_total",
			Help: "Verifications of intent by mode (subscribe, unsubscribe) and result (ok, failed).",
		}, []string{"mode", "result"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "subscriptions_removed_total",
			Help: "Callback subscriptions removed, by reason (unsubscribed, gone, expired, orphan).",
		}, []string{"reason"}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "replays_total",
			Help: "hub.mode=replay POSTs by result (ok, or the failure: network, timeout, refused, http_4xx, http_5xx, gone).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m
	}
	m.attempts = register(reg, m.attempts)
	m.succeeded = register(reg, m.succeeded)
	m.failed = register(reg, m.failed)
	m.items = register(reg, m.items)
	m.dropped = register(reg, m.dropped)
	m.redelivered = register(reg, m.redelivered)
	m.duration = register(reg, m.duration)
	m.retryAge = register(reg, m.retryAge)
	m.inFlight = register(reg, m.inFlight)
	m.queueDepth = register(reg, m.queueDepth)
	m.leased = register(reg, m.leased)
	m.subscriptions = register(reg, m.subscriptions)
	m.verifications = register(reg, m.verifications)
	m.removed = register(reg, m.removed)
	m.replays = register(reg, m.replays)
	return m
}

// register registers c, or returns the collector already registered under
// its name (a second Service on one registry shares the metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
