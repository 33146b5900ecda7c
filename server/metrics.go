package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

type httpMetrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	unavailable prometheus.Counter
	// children keeps the series of each (route, mode, code) met, so that
	// a request does not look its labels up again.
	children sync.Map // seriesKey -> *series
}

type seriesKey struct {
	route, mode string
	code        int
}

type series struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feedgate_http_requests_total",
			Help: "HTTP requests answered, by route, hub mode and status code.",
		}, []string{"route", "mode", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "feedgate_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests (streams: until the response ends), by route and hub mode.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"route", "mode"}),
	}
	m.unavailable = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "feedgate_store_unavailable_total",
		Help: "Requests answered 503 because the store could not be reached.",
	})
	reg.MustRegister(m.requests, m.latency, m.unavailable)
	return m
}

const modeKey = "feedgate.mode"

func (m *httpMetrics) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		mode := c.GetString(modeKey)
		if c.Writer.Status() == http.StatusServiceUnavailable {
			m.unavailable.Inc()
		}
		m.series(route, mode, c.Writer.Status()).observe(time.Since(start))
	}
}

func (m *httpMetrics) series(route, mode string, code int) *series {
	k := seriesKey{route: route, mode: mode, code: code}
	if v, ok := m.children.Load(k); ok {
		return v.(*series)
	}
	v, _ := m.children.LoadOrStore(k, &series{
		requests: m.requests.WithLabelValues(route, mode, strconv.Itoa(code)),
		latency:  m.latency.WithLabelValues(route, mode),
	})
	return v.(*series)
}

func (s *series) observe(d time.Duration) {
	s.requests.Inc()
	s.latency.Observe(d.Seconds())
}
