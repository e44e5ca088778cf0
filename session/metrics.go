package session

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the session counters exported to Prometheus. A nil *metrics
// counts nothing.
type metrics struct {
	createdTotal  prometheus.Counter
	reboundTotal  prometheus.Counter
	endedTotal    *prometheus.CounterVec
	rejectedTotal *prometheus.CounterVec
	deniedTotal   *prometheus.CounterVec
}

// newMetrics registers the manager's metrics with reg: the counters, and
// gauges of live sessions, the store's estimated bytes and the tombstones,
// read from m when scraped.
func newMetrics(reg prometheus.Registerer, m *Manager) *metrics {
	mt := &metrics{
		createdTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_sessions_created_total", Help: "Sessions created by login.",
		}),
		reboundTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tether_sessions_rebound_total", Help: "Sessions moved to a new leaf certificate by rebind.",
		}),
		endedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_sessions_ended_total", Help: "Sessions ended, by cause (expired, idle, logout, revoked).",
		}, []string{"cause"}),
		rejectedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_session_rejections_total", Help: "Requests refused by the session check, by reason.",
		}, []string{"reason"}),
		deniedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tether_logins_denied_total", Help: "Logins refused, by reason.",
		}, []string{"reason"}),
	}
	for _, c := range []string{CauseExpired, CauseIdle, CauseLogout, CauseRevoked, CauseDenied} {
		mt.endedTotal.WithLabelValues(c)
	}
	reg.MustRegister(mt.createdTotal, mt.reboundTotal, mt.endedTotal, mt.rejectedTotal, mt.deniedTotal,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tether_sessions_live", Help: "Sessions held in memory (expired ones until the next sweep).",
		}, func() float64 { return float64(m.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tether_session_store_bytes", Help: "Estimated heap bytes held by the session store.",
		}, func() float64 {
			if s, ok := m.store.(interface{ EstimatedBytes() int64 }); ok {
				return float64(s.EstimatedBytes())
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tether_session_tombstones", Help: "Tombstones of ended and replaced tokens held until their exp (capped).",
		}, func() float64 { return float64(m.Tombstones()) }),
	)
	return mt
}

func (mt *metrics) created() {
	if mt != nil {
		mt.createdTotal.Inc()
	}
}

func (mt *metrics) rebound() {
	if mt != nil {
		mt.reboundTotal.Inc()
	}
}

func (mt *metrics) ended(cause string) {
	if mt != nil {
		mt.endedTotal.WithLabelValues(cause).Inc()
	}
}

func (mt *metrics) rejected(reason string) {
	if mt != nil {
		mt.rejectedTotal.WithLabelValues(reason).Inc()
	}
}

func (mt *metrics) loginDenied(reason string) {
	if mt != nil {
		mt.deniedTotal.WithLabelValues(reason).Inc()
	}
}
