package app

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/modules/apikey"
)

// check reports one component's state for /health; err marks it failing.
type check func(ctx context.Context) (any, error)

// healthEvery is how often the health state may be refreshed: polling /health, however
// often, costs PostgreSQL and Redis at most one round of checks a second.
const healthEvery = time.Second

// health answers /health: "down" (503) when PostgreSQL is unreachable, "degraded" (200)
// when anything else fails, "ok" otherwise. Each check is bounded so a hung dependency
// cannot hang the probe. Anyone sees the status of each check; latencies, errors and
// details (which name hosts, users and databases) need a valid API key.
type health struct {
	pool   *pgxpool.Pool
	rdb    rueidis.Client
	checks map[string]check // ingest, aggregator, ...
	// authorized reports whether the request may see details; a wrong key is an error.
	authorized func(c echo.Context) (bool, error)
	now        func() time.Time

	mu     sync.Mutex
	at     time.Time // when last was made
	last   healthReport
	filled bool
}

type healthReport struct {
	Status string                 `json:"status"`
	Checks map[string]checkResult `json:"checks"`
}

type checkResult struct {
	Status    string  `json:"status"`
	LatencyMS float64 `json:"latency_ms,omitempty"`
	Error     string  `json:"error,omitempty"`
	Details   any     `json:"details,omitempty"`
}

// withKey lets requests that present a valid API key see details: a request without a
// key sees statuses only, one with a wrong key is refused like any API request.
func withKey(keys *apikey.Store, fails apikey.Throttle) func(echo.Context) (bool, error) {
	return func(c echo.Context) (bool, error) {
		if apikey.FromRequest(c.Request()) == "" {
			return false, nil
		}
		if _, err := keys.Authenticate(c, fails); err != nil {
			return false, err
		}
		return true, nil
	}
}

func (h *health) handle(c echo.Context) error {
	detailed := false
	if h.authorized != nil {
		var err error
		if detailed, err = h.authorized(c); err != nil {
			return err
		}
	}
	r := h.report(c.Request().Context())
	if !detailed {
		public := healthReport{Status: r.Status, Checks: make(map[string]checkResult, len(r.Checks))}
		for name, cr := range r.Checks {
			public.Checks[name] = checkResult{Status: cr.Status}
		}
		r = public
	}
	code := http.StatusOK
	if r.Status == "down" {
		code = http.StatusServiceUnavailable
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(code, r)
}

// report returns the health state, refreshing it when it is older than healthEvery.
// Concurrent callers wait for the one refresh rather than each running the checks.
func (h *health) report(ctx context.Context) healthReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if h.filled && now.Sub(h.at) < healthEvery {
		return h.last
	}
	// Shared by every caller: one client leaving must not fail the checks.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	h.last, h.at, h.filled = h.run(cctx), now, true
	return h.last
}

func (h *health) run(ctx context.Context) healthReport {
	checks := map[string]checkResult{}
	status := "ok"

	start := time.Now()
	if err := h.pool.Ping(ctx); err != nil {
		checks["postgres"] = checkResult{Status: "down", Error: err.Error()}
		status = "down"
	} else {
		checks["postgres"] = checkResult{Status: "ok", LatencyMS: ms(time.Since(start))}
	}
	if h.rdb == nil {
		checks["redis"] = checkResult{Status: "disabled"}
	} else {
		start = time.Now()
		if err := h.rdb.Do(ctx, h.rdb.B().Ping().Build()).Error(); err != nil {
			checks["redis"] = checkResult{Status: "down", Error: err.Error()}
			if status == "ok" {
				status = "degraded"
			}
		} else {
			checks["redis"] = checkResult{Status: "ok", LatencyMS: ms(time.Since(start))}
		}
	}
	for name, fn := range h.checks {
		details, err := fn(ctx)
		r := checkResult{Status: "ok", Details: details}
		if err != nil {
			r.Status, r.Error = "degraded", err.Error()
			if status == "ok" {
				status = "degraded"
			}
		}
		checks[name] = r
	}
	return healthReport{Status: status, Checks: checks}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
