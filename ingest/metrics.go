package ingest

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are ingest's Prometheus collectors.
type metrics struct {
	fetches       *prometheus.CounterVec
	fetchErrors   *prometheus.CounterVec
	fetchDuration prometheus.Histogram
	itemsStored   *prometheus.CounterVec
	callbacks     *prometheus.CounterVec
	hubRequests   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "feedgate", Subsystem: "ingest", Name: "fetches_total",
			Help: "Feed fetches by result (ok, not_modified, error).",
		}, []string{"result"}),
		fetchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "feedgate", Subsystem: "ingest", Name: "fetch_errors_total",
			Help: "Failed fetches by reason (network, refused, too_large, http, parse, store).",
		}, []string{"reason"}),
		fetchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "feedgate", Subsystem: "ingest", Name: "fetch_duration_seconds",
			Help:    "Time to fetch a feed (request to body read).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}),
		itemsStored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "feedgate", Subsystem: "ingest", Name: "items_stored_total",
			Help: "Items stored by ingest, by source (poll, push, publish).",
		}, []string{"source"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "feedgate", Subsystem: "ingest", Name: "callback_deliveries_total",
			Help: "Content deliveries from upstream hubs by result.",
		}, []string{"result"}),
		hubRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "feedgate", Subsystem: "ingest", Name: "hub_requests_total",
			Help: "Subscription requests to upstream hubs by mode and result.",
		}, []string{"mode", "result"}),
	}
	var err error
	m.fetches, err = register(reg, m.fetches)
	if err != nil {
		return nil, err
	}
	if m.fetchErrors, err = register(reg, m.fetchErrors); err != nil {
		return nil, err
	}
	if m.fetchDuration, err = register(reg, m.fetchDuration); err != nil {
		return nil, err
	}
	if m.itemsStored, err = register(reg, m.itemsStored); err != nil {
		return nil, err
	}
	if m.callbacks, err = register(reg, m.callbacks); err != nil {
		return nil, err
	}
	if m.hubRequests, err = register(reg, m.hubRequests); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector already
// registered (several services in one process share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
