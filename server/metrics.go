package server

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics count the API's requests. A nil *httpMetrics counts nothing.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	if reg == nil {
		return nil
	}
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_http_requests_total",
			Help: "API requests answered, by route (path pattern, or unmatched), method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tether_http_request_duration_seconds",
			Help:    "Time to answer an API request, by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// observe counts a request that matched no route. Its method is the
// caller's to choose, so it is a label value only if it is a method of
// RFC 9110 (or PATCH); any other counts as "other": a caller cannot make
// tetherd keep a new series.
func (m *httpMetrics) observe(route, method string, status int, took time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, methodLabel(method), strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(took.Seconds())
}

// methodLabel is method if it is a standard one, else "other".
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// routeMetrics are the children of the HTTP metrics for one route and
// method, each looked up once, at its first use, and kept: looking them up
// by label values (hashing the values, a map and a lock) at every request
// cost more than the counting. A child appears in /metrics at its first
// use, as with observe. A nil *routeMetrics counts nothing.
type routeMetrics struct {
	m             *httpMetrics
	route, method string

	durationOnce sync.Once
	duration     prometheus.Observer
	// requests holds the counter of each status from 100 to 599.
	requests [500]atomic.Pointer[prometheus.Counter]
}

// forRoute is the metrics of route and method (nil if m is).
func (m *httpMetrics) forRoute(route, method string) *routeMetrics {
	if m == nil {
		return nil
	}
	return &routeMetrics{m: m, route: route, method: method}
}

func (rm *routeMetrics) observe(status int, took time.Duration) {
	if rm == nil {
		return
	}
	rm.durationOnce.Do(func() { rm.duration = rm.m.duration.WithLabelValues(rm.route) })
	rm.duration.Observe(took.Seconds())
	i := status - 100
	if i < 0 || i >= len(rm.requests) {
		rm.m.requests.WithLabelValues(rm.route, rm.method, strconv.Itoa(status)).Inc()
		return
	}
	c := rm.requests[i].Load()
	if c == nil {
		counter := rm.m.requests.WithLabelValues(rm.route, rm.method, strconv.Itoa(status))
		rm.requests[i].CompareAndSwap(nil, &counter) // a racing first use resolved the same child
		c = rm.requests[i].Load()
	}
	(*c).Inc()
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
