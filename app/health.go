package app

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/redis/rueidis"
)

// check reports one component's state for /health; err marks it failing.
type check func(ctx context.Context) (any, error)

// health answers /health: "down" (503) when PostgreSQL is unreachable, "degraded" (200)
// when anything else fails, "ok" otherwise. Each check is bounded so a hung dependency
// cannot hang the probe.
type health struct {
	pool   *pgxpool.Pool
	rdb    rueidis.Client
	checks map[string]check // ingest, aggregator, ...
}

type checkResult struct {
	Status    string  `json:"status"`
	LatencyMS float64 `json:"latency_ms,omitempty"`
	Error     string  `json:"error,omitempty"`
	Details   any     `json:"details,omitempty"`
}

func (h *health) handle(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
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
	code := http.StatusOK
	if status == "down" {
		code = http.StatusServiceUnavailable
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(code, map[string]any{"status": status, "checks": checks})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
