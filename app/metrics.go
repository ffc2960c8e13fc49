package app

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/hop-dev/hop/modules/apikey"
)

// unmatchedRoute labels requests no route matched, so scanners probing random paths
// cannot grow the label set.
const unmatchedRoute = "unmatched"

// httpMetrics counts requests and their latency by route template (c.Path(), never the
// raw path, so slugs never become label values).
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	// series maps (method, route, status) to its curried counter and histogram. It is
	// copied on write and read without a lock: the set of keys is small and settles
	// after the first requests, so the hot path is one map lookup and no allocation.
	mu     sync.Mutex
	series atomic.Pointer[map[seriesKey]seriesObs]
}

type seriesKey struct {
	method, route string
	status        int
}

type seriesObs struct {
	count prometheus.Counter
	dur   prometheus.Observer
}

// newHTTPMetrics registers the HTTP metrics on reg.
func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hop_http_requests_total",
			Help: "HTTP requests by method, route template (\"unmatched\" when no route matched) and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hop_http_request_duration_seconds",
			Help: "HTTP request latency in seconds by method and route template, including error rendering.",
			// From the sub-millisecond redirect path up to long CSV exports.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "route"}),
	}
	empty := map[seriesKey]seriesObs{}
	m.series.Store(&empty)
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register http metrics: %w", err)
		}
	}
	return m, nil
}

// mustHTTPMetrics is newHTTPMetrics for route wiring, where a failure (registering the
// metrics twice) is a programming error.
func mustHTTPMetrics(reg prometheus.Registerer) echo.MiddlewareFunc {
	m, err := newHTTPMetrics(reg)
	if err != nil {
		panic(err)
	}
	return m.middleware()
}

// middleware records every request. It renders a returned error itself (through Echo's
// error handler, as Echo would right after) so the status it counts is the one sent.
func (m *httpMetrics) middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			if status == 0 {
				status = http.StatusOK
			}
			o := m.observers(c, seriesKey{methodLabel(c.Request().Method), c.Path(), status})
			o.dur.Observe(time.Since(start).Seconds())
			o.count.Inc()
			return nil
		}
	}
}

// observers returns the curried series of a request, creating it on first use. k.route
// is c.Path(), which the label becomes unless no route matched.
func (m *httpMetrics) observers(c echo.Context, k seriesKey) seriesObs {
	if o, ok := (*m.series.Load())[k]; ok {
		return o
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.series.Load()
	if o, ok := old[k]; ok {
		return o
	}
	route := k.route
	if !isRoute(c.Echo(), route) {
		route = unmatchedRoute
	}
	o := seriesObs{
		count: m.requests.WithLabelValues(k.method, route, strconv.Itoa(k.status)),
		dur:   m.duration.WithLabelValues(k.method, route),
	}
	next := maps.Clone(old)
	next[k] = o
	m.series.Store(&next)
	return o
}

// isRoute reports whether path is the template of a route registered on e. When no
// route matches, c.Path() is empty, or the template of a catch-all that group middleware
// registers (Echo's RouteNotFound: "/", "/*"); those are not routes.
func isRoute(e *echo.Echo, path string) bool {
	if path == "" {
		return false
	}
	for _, r := range e.Routes() {
		if r.Path == path && r.Method != echo.RouteNotFound {
			return true
		}
	}
	return false
}

// methodLabel bounds the method label: clients can send any token as a method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// poolCollector exports pgxpool statistics, read at scrape time.
type poolCollector struct {
	pool *pgxpool.Pool

	acquired, idle, constructing, total, max  *prometheus.Desc
	acquires, acquireSeconds, emptyAcquires   *prometheus.Desc
	emptyAcquireWaitSeconds, canceledAcquires *prometheus.Desc
	newConns, lifetimeDestroys, idleDestroys  *prometheus.Desc
}

// newPoolCollector returns a collector of pool's connection statistics (hop_pgx_pool_*).
func newPoolCollector(pool *pgxpool.Pool) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("hop_pgx_pool_"+name, help, nil, nil)
	}
	return &poolCollector{
		pool:                    pool,
		acquired:                d("acquired_conns", "Connections currently checked out of the pool."),
		idle:                    d("idle_conns", "Idle connections in the pool."),
		constructing:            d("constructing_conns", "Connections being opened."),
		total:                   d("total_conns", "All connections of the pool: acquired, idle and being opened."),
		max:                     d("max_conns", "Largest size the pool may grow to."),
		acquires:                d("acquires_total", "Successful connection acquisitions."),
		acquireSeconds:          d("acquire_duration_seconds_total", "Total time spent acquiring connections, in seconds."),
		emptyAcquires:           d("empty_acquires_total", "Acquisitions that had to wait because no idle connection was available."),
		emptyAcquireWaitSeconds: d("empty_acquire_wait_seconds_total", "Total time acquisitions waited for a connection when none was idle, in seconds."),
		canceledAcquires:        d("canceled_acquires_total", "Acquisitions cancelled by their context."),
		newConns:                d("new_conns_total", "Connections opened."),
		lifetimeDestroys:        d("max_lifetime_destroys_total", "Connections closed for exceeding their maximum lifetime."),
		idleDestroys:            d("max_idle_destroys_total", "Connections closed for exceeding their maximum idle time."),
	}
}

// Describe implements prometheus.Collector.
func (p *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		p.acquired, p.idle, p.constructing, p.total, p.max, p.acquires, p.acquireSeconds,
		p.emptyAcquires, p.emptyAcquireWaitSeconds, p.canceledAcquires, p.newConns,
		p.lifetimeDestroys, p.idleDestroys,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := p.pool.Stat()
	gauge := func(d *prometheus.Desc, v int32) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(p.acquired, s.AcquiredConns())
	gauge(p.idle, s.IdleConns())
	gauge(p.constructing, s.ConstructingConns())
	gauge(p.total, s.TotalConns())
	gauge(p.max, s.MaxConns())
	counter(p.acquires, float64(s.AcquireCount()))
	counter(p.acquireSeconds, s.AcquireDuration().Seconds())
	counter(p.emptyAcquires, float64(s.EmptyAcquireCount()))
	counter(p.emptyAcquireWaitSeconds, s.EmptyAcquireWaitTime().Seconds())
	counter(p.canceledAcquires, float64(s.CanceledAcquireCount()))
	counter(p.newConns, float64(s.NewConnsCount()))
	counter(p.lifetimeDestroys, float64(s.MaxLifetimeDestroyCount()))
	counter(p.idleDestroys, float64(s.MaxIdleDestroyCount()))
}

// metricsEvery is how often /metrics may gather: scrapes, however frequent, read the
// pool, the process and every collector at most once a second.
const metricsEvery = time.Second

// cachedGatherer gathers from g at most once per metricsEvery and serves the last
// result meanwhile. The families are only read by the encoder, never changed.
type cachedGatherer struct {
	g   prometheus.Gatherer
	now func() time.Time

	mu  sync.Mutex
	at  time.Time
	mfs []*dto.MetricFamily
	err error
}

// Gather implements prometheus.Gatherer.
func (c *cachedGatherer) Gather() ([]*dto.MetricFamily, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); c.at.IsZero() || now.Sub(c.at) >= metricsEvery {
		c.mfs, c.err = c.g.Gather()
		c.at = now
	}
	return c.mfs, c.err
}

// errMetricsToken is an unauthorized request for /metrics (see app's error table).
var errMetricsToken = errors.New("no valid metrics token")

// metricsHandler serves reg's metrics from a cached gatherer. With a token set, a
// request must send it as a Bearer token; wrong tokens count against the client's
// failed-authentication limit like wrong API keys.
func metricsHandler(reg *prometheus.Registry, token string, fails apikey.Throttle) echo.HandlerFunc {
	serve := echo.WrapHandler(promhttp.HandlerFor(&cachedGatherer{g: reg, now: time.Now}, promhttp.HandlerOpts{Registry: reg}))
	if token == "" {
		return serve
	}
	want := sha256.Sum256([]byte(token))
	return func(c echo.Context) error {
		ctx, client := c.Request().Context(), c.RealIP()
		if retry, over := fails.Over(ctx, client); over {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(retry/time.Second)))
			return apikey.ErrTooManyFailures
		}
		v := c.Request().Header.Get("Authorization")
		got := sha256.Sum256([]byte(strings.TrimSpace(strings.TrimPrefix(v, "Bearer "))))
		if !strings.HasPrefix(v, "Bearer ") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			fails.Hit(ctx, client)
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="hop-metrics"`)
			return errMetricsToken
		}
		return serve(c)
	}
}
