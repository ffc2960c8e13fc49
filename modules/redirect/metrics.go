package redirect

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	redirects         *prometheus.CounterVec
	redirectsByStatus map[int]prometheus.Counter // pre-resolved so the hot path does no label lookup
	cacheHits         prometheus.Counter
	cacheRedis        prometheus.Counter
	cacheMisses       prometheus.Counter
	cacheErrors       prometheus.Counter
	stale             prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	cacheLookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hop_link_cache_lookups_total",
		Help: "Slug lookups on the redirect path by result: hit (client-side cache), redis, miss (PostgreSQL), error (Redis failing).",
	}, []string{"result"})
	m := &metrics{
		redirects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hop_redirects_total",
			Help: "Answers of the redirect routes by HTTP status, fallback redirects (302) included; robots.txt and favicon.ico are not counted.",
		}, []string{"status"}),
		redirectsByStatus: map[int]prometheus.Counter{},
		cacheHits:         cacheLookups.WithLabelValues("hit"),
		cacheRedis:        cacheLookups.WithLabelValues("redis"),
		cacheMisses:       cacheLookups.WithLabelValues("miss"),
		cacheErrors:       cacheLookups.WithLabelValues("error"),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hop_redirect_stale_total",
			Help: "Redirects answered from a cache entry that could not be verified because the link lookup failed (Redis and PostgreSQL down).",
		}),
	}
	for _, s := range []int{301, 302, 303, 307, 308, 404, 410, 500, 503} {
		m.redirectsByStatus[s] = m.redirects.WithLabelValues(strconv.Itoa(s))
	}
	for _, c := range []prometheus.Collector{m.redirects, cacheLookups, m.stale} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register redirect metrics: %w", err)
		}
	}
	return m, nil
}

// redirectsFailed is the counter of an error answer's status.
func (m *metrics) redirectsFailed(status int) prometheus.Counter {
	if c, ok := m.redirectsByStatus[status]; ok {
		return c
	}
	return m.redirects.WithLabelValues(strconv.Itoa(status))
}
