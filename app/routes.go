package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/apikey"
	"github.com/hop-dev/hop/modules/dashboard"
	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/idempotency"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/live"
	"github.com/hop-dev/hop/modules/ratelimit"
	"github.com/hop-dev/hop/modules/redirect"
	"github.com/hop-dev/hop/modules/stats"
	"github.com/hop-dev/hop/modules/webhooks"
)

type echoContext = echo.Context

// server is everything the routes serve.
type server struct {
	health    *health
	keys      *apikey.Store
	links     *links.Handler
	domains   *domains.Handler
	stats     *stats.Handler
	redirect  *redirect.Handler
	dashboard *dashboard.Handler
	apiLimit  *ratelimit.Limiter
	linkLimit *ratelimit.Limiter
	authFails *ratelimit.Limiter // failed authentications per client address
	idem      *idempotency.Store
	openapi   echo.HandlerFunc // GET /openapi.json
	live      *live.Feed
	webhooks  *webhooks.Service
	liveJS    echo.HandlerFunc // GET /dashboard/live.js
}

// bodyLimits bounds request bodies: bulkBodyLimit for POST /links/bulk (1,000 links
// with long URLs), bodyLimit everywhere else.
func bodyLimits() echo.MiddlewareFunc {
	isBulk := func(c echo.Context) bool { return c.Path() == "/links/bulk" }
	small := middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: bodyLimit, Skipper: isBulk})
	bulk := middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: bulkBodyLimit, Skipper: func(c echo.Context) bool { return !isBulk(c) }})
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		h := small(bulk(next))
		return func(c echo.Context) error {
			err := h(c)
			// Echo's 413 names no limit; say which one this route has.
			if he, ok := errors.AsType[*echo.HTTPError](err); ok && he.Code == http.StatusRequestEntityTooLarge {
				limit := bodyLimit
				if isBulk(c) {
					limit = bulkBodyLimit
				}
				n, unit := limit[:len(limit)-1], limit[len(limit)-1:] // "64K": 64 KiB
				return problem.With(problem.ErrTooLarge, "the request body is larger than %s %siB", n, unit)
			}
			return err
		}
	}
}

// apiKeyID is the id of the request's API key, set by the auth middleware.
func apiKeyID(c echo.Context) (int64, bool) {
	id, ok := c.Get(apikey.ContextKey).(int64)
	return id, ok
}

// routes lists every route of hop in one place.
func routes(e *echo.Echo, cfg Config, reg *prometheus.Registry, s server, logger *slog.Logger) {
	e.Use(mustHTTPMetrics(reg)) // outermost: counts every request, by route template
	if len(cfg.CORSOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			AllowOrigins: cfg.CORSOrigins,
			AllowHeaders: []string{echo.HeaderAuthorization, "X-Api-Key", echo.HeaderContentType},
			AllowMethods: []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete},
		}))
	}

	// Operations: never rate limited. /health shows details only with an API key, and
	// /metrics needs HOP_METRICS_TOKEN when it is set.
	get := []string{http.MethodGet, http.MethodHead}
	e.Match(get, "/health", s.health.handle)
	e.Match(get, "/metrics", metricsHandler(reg, cfg.MetricsToken, s.authFails))
	e.Match(get, "/openapi.json", s.openapi)

	// Management API: request log, body limit, API key (failures limited per client
	// address), per-key rate limit, text-only parameters. Middleware per route, never
	// a group's: a group with middleware answers every path under it, so a wrong
	// method would be 404 instead of 405.
	api := []echo.MiddlewareFunc{
		middleware.RequestID(),
		requestLog(logger),
		bodyLimits(),
		s.keys.Middleware(s.authFails),
		s.apiLimit.Middleware(),
		textParams,
		s.idem.Middleware(idempotency.PostPaths("/links", "/links/", "/links/bulk"), apiKeyID),
	}
	root := e.Group("")
	s.links.Routes(root, api...)
	s.domains.Routes(root, api...)
	s.stats.Routes(root, api...)
	// A live stream outlives its sign-in: it ends once its key is revoked.
	s.live.Routes(root, append(slices.Clip(api), untilRefused(s.keys.Changes, s.keys.Accepts, logger))...)
	s.webhooks.Routes(root, api...)

	// Web UI: its own session sign-in, CSRF checks and security headers.
	s.dashboard.Register(e, textParams, middleware.RequestID(), requestLog(logger))
	// The live feed for the dashboard's pages, under /dashboard/ where its session
	// cookie goes: /dashboard/live and /dashboard/links/{slug}/live.
	// (Middleware per route: a group's own would answer every unknown /dashboard/ path.)
	s.live.Routes(e.Group("/dashboard"), middleware.RequestID(), s.dashboard.SessionOnly,
		untilRefused(s.keys.Changes, s.dashboard.SignedIn, logger), textParams)
	e.Match(get, "/dashboard/live.js", s.liveJS) // the live panel's script

	// Redirects: the hot path, rate limited per client IP.
	s.redirect.Register(e, s.linkLimit.Middleware())
}

// recheckEvery bounds how long a live stream outlives a session that was signed out
// or expired; a revoked key ends it at once, through apikey's change notices.
const recheckEvery = time.Minute

// untilRefused ends a request held open for long (a live stream) once the credentials
// that let it in no longer would: allowed is asked at once, whenever any API key
// changes (changes: milliseconds after a revocation anywhere), and every recheckEvery.
// A check that fails for another reason (PostgreSQL away) keeps the stream: an outage
// must not cut every client at once, and they would only fail to reconnect.
func untilRefused(changes func() <-chan struct{}, allowed func(context.Context, *http.Request) (bool, error), logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			rid := c.Response().Header().Get(echo.HeaderXRequestID)
			ctx, cancel := context.WithCancel(c.Request().Context())
			r := c.Request().WithContext(ctx)
			c.SetRequest(r)
			done := make(chan struct{})
			go func() {
				defer close(done)
				tick := time.NewTicker(recheckEvery)
				defer tick.Stop()
				for {
					changed := changes() // before the check, so no change slips between
					ok, err := allowed(ctx, r)
					if !ok && err == nil {
						logger.Info("live stream ended: its API key or session is no longer valid",
							"path", r.URL.Path, "request_id", rid)
						cancel()
						return
					}
					select {
					case <-ctx.Done():
						return
					case <-changed:
					case <-tick.C:
					}
				}
			}()
			defer func() { cancel(); <-done }()
			return next(c)
		}
	}
}
