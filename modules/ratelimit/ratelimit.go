// Package ratelimit limits how often one client may call hop: per client IP on
// redirects, per API key on management routes. Counts live in Redis so a limit holds
// across instances, or in memory when hop runs without Redis; a failing or slow Redis
// never fails a request — the limiter falls back to in-memory counts and says so in
// its metrics.
package ratelimit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
	"github.com/ulule/limiter/v3"
	"github.com/ulule/limiter/v3/drivers/store/memory"

	"github.com/hop-dev/hop/internal/problem"
)

// Off is the rate setting that disables a limiter.
const Off = "off"

const (
	defaultPrefix  = "hop:ratelimit:"
	defaultTimeout = 20 * time.Millisecond
	// cooldown is how long the limiter counts in memory after a Redis failure
	// before trying Redis again.
	cooldown = time.Second
)

// ErrLimited is returned, with a detail naming the limit, when a client is over its
// limit. errors.Is(err, ErrLimited) matches every such error.
var ErrLimited = errors.New("rate limited")

// Canonical header names, assigned to the header map directly to skip
// re-canonicalising them on every request.
const (
	headerLimit      = "X-Ratelimit-Limit" // X-RateLimit-Limit
	headerRemaining  = "X-Ratelimit-Remaining"
	headerReset      = "X-Ratelimit-Reset"
	headerRetryAfter = "Retry-After"
)

// Config describes one limiter.
type Config struct {
	// Name identifies the limiter in metrics and Redis keys, such as "redirect" or "api".
	Name string
	// Rate is the limit in ulule/limiter format, LIMIT-PERIOD with period S, M, H or D
	// ("10-S", "600-M"); Off disables the limiter.
	Rate string
	// Prefix starts every Redis key; default "hop:ratelimit:". Keys are
	// Prefix + Name + ":" + the period in seconds + "s:" + client key: instances
	// share a count only while they count over the same period, and a new period
	// starts from zero instead of reading an old window's count against its limit.
	Prefix string
	// Key returns the client a request is counted against. The default is
	// c.RealIP(), which is only as trustworthy as Echo's IPExtractor; an empty key
	// also falls back to it. Return an identifier, not a secret: keys are stored in Redis.
	Key func(echo.Context) string
	// Timeout bounds each Redis call; slower calls fail open. Default 20 ms.
	Timeout time.Duration
	// Counted says what a 429's detail counts against, after "more than N requests
	// per minute"; default "from this client".
	Counted string
}

// Limiter enforces one Config's limit as Echo middleware.
type Limiter struct {
	name    string
	off     bool
	lim     *limiter.Limiter
	key     func(echo.Context) string
	limit   []string // X-RateLimit-Limit value, the same on every response
	problem error    // returned over the limit; never mutated
	limited prometheus.Counter
}

// New returns the limiter described by cfg, counting in Redis through rdb, or in
// memory when rdb is nil. Its metrics are registered with reg unless reg is nil;
// limiters sharing reg share the metric families.
func New(cfg Config, rdb rueidis.Client, reg prometheus.Registerer, logger *slog.Logger) (*Limiter, error) {
	if cfg.Name == "" {
		return nil, errors.New("rate limiter: name is empty")
	}
	rate, err := ParseRate(cfg.Rate)
	if err != nil {
		return nil, fmt.Errorf("rate limiter %s: %w", cfg.Name, err)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("rate limiter %s: negative timeout %s", cfg.Name, cfg.Timeout)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("module", "ratelimit", "limiter", cfg.Name)

	limited, err := counter(reg, "hop_ratelimit_limited_total", "Requests refused with 429 by a rate limiter.")
	if err != nil {
		return nil, err
	}
	storeErrors, err := counter(reg, "hop_ratelimit_errors_total", "Rate-limit store (Redis) calls that failed or timed out; the request was allowed or counted in memory.")
	if err != nil {
		return nil, err
	}
	fallbacks, err := counter(reg, "hop_ratelimit_fallback_total", "Requests counted in process memory instead of Redis because Redis was failing.")
	if err != nil {
		return nil, err
	}

	l := &Limiter{
		name:    cfg.Name,
		off:     rate.Limit == 0,
		key:     cfg.Key,
		limited: limited.WithLabelValues(cfg.Name),
	}
	errs, fbs := storeErrors.WithLabelValues(cfg.Name), fallbacks.WithLabelValues(cfg.Name)
	if l.off {
		return l, nil
	}
	if l.key == nil {
		l.key = echo.Context.RealIP
	}
	l.limit = []string{strconv.FormatInt(rate.Limit, 10)}
	l.problem = problem.With(ErrLimited, "more than %d requests per %s %s; retry after the number of seconds in Retry-After",
		rate.Limit, periodName(rate.Period), cmp.Or(cfg.Counted, "from this client"))

	mem := memory.NewStoreWithOptions(limiter.StoreOptions{Prefix: cfg.Name, CleanUpInterval: limiter.DefaultCleanUpInterval})
	var store limiter.Store = mem
	if rdb != nil {
		store = &failOpen{
			primary:   NewStore(rdb, cmp.Or(cfg.Prefix, defaultPrefix)+cfg.Name+":"+strconv.FormatInt(int64(rate.Period/time.Second), 10)+"s:"),
			fallback:  mem,
			timeout:   cmp.Or(cfg.Timeout, defaultTimeout),
			cooldown:  cooldown,
			errors:    errs,
			fallbacks: fbs,
			logger:    logger,
		}
	}
	l.lim = limiter.New(store, rate)
	return l, nil
}

// Middleware counts each request against its client's limit. It sets
// X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (unix seconds) on
// every response and, over the limit, Retry-After (seconds) before returning a 429
// problem for the app's error handler to render. A disabled limiter's middleware
// passes every request straight through.
func (l *Limiter) Middleware() echo.MiddlewareFunc {
	if l.off {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			key := l.key(c)
			if key == "" {
				key = c.RealIP()
			}
			lc, err := l.lim.Get(c.Request().Context(), key)
			if err != nil {
				// Unreachable with the stores New builds; a limiter never fails a request.
				return next(c)
			}
			h := c.Response().Header()
			// One backing array for the per-request values instead of one per header.
			vals := make([]string, 2, 3)
			vals[0] = strconv.FormatInt(lc.Remaining, 10)
			vals[1] = strconv.FormatInt(lc.Reset, 10)
			h[headerLimit] = l.limit
			h[headerRemaining] = vals[0:1:1]
			h[headerReset] = vals[1:2:2]
			if !lc.Reached {
				return next(c)
			}
			l.limited.Inc()
			vals = append(vals, strconv.FormatInt(max(lc.Reset-time.Now().Unix(), 1), 10))
			h[headerRetryAfter] = vals[2:3:3]
			return l.problem
		}
	}
}

// Hit counts one hit for key outside the middleware, for limits on outcomes rather
// than requests (wrong passwords, failed sign-ins). ok is false when key is over its
// limit; retry is then how long until its window ends. A disabled limiter allows all.
func (l *Limiter) Hit(ctx context.Context, key string) (retry time.Duration, ok bool) {
	if l.off {
		return 0, true
	}
	lc, err := l.lim.Get(ctx, key)
	if err != nil || !lc.Reached {
		return 0, true
	}
	l.limited.Inc()
	return retryAfter(lc), false
}

// Over reports, without counting, whether key has used up its limit, so a caller can
// refuse before doing the work a hit would stand for.
func (l *Limiter) Over(ctx context.Context, key string) (retry time.Duration, over bool) {
	if l.off {
		return 0, false
	}
	lc, err := l.lim.Peek(ctx, key)
	if err != nil || lc.Remaining > 0 {
		return 0, false
	}
	l.limited.Inc()
	return retryAfter(lc), true
}

// Undo takes back one hit of key's current window, for an attempt that turned out not
// to count (a right password). It never gives more than was taken.
func (l *Limiter) Undo(ctx context.Context, key string) {
	if l.off {
		return
	}
	if lc, err := l.lim.Peek(ctx, key); err != nil || lc.Remaining >= lc.Limit {
		return
	}
	_, _ = l.lim.Increment(ctx, key, -1)
}

// retryAfter is the wait until lc's window ends, at least a second.
func retryAfter(lc limiter.Context) time.Duration {
	return time.Duration(max(lc.Reset-time.Now().Unix(), 1)) * time.Second
}

// ParseRate parses a rate setting: LIMIT-PERIOD with a limit of at least 1 and a
// period of S, M, H or D ("10-S", "600-M"), or Off, for which it returns the zero
// Rate. Config validation can call it to reject a bad setting by name.
func ParseRate(s string) (limiter.Rate, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, Off) {
		return limiter.Rate{}, nil
	}
	rate, err := limiter.NewRateFromFormatted(s)
	if err == nil && rate.Limit < 1 {
		err = errors.New("limit must be at least 1")
	}
	if err != nil {
		return limiter.Rate{}, fmt.Errorf("rate %q: want LIMIT-PERIOD such as 10-S or 600-M (period S, M, H or D), or %q to disable: %w", s, Off, err)
	}
	return rate, nil
}

func periodName(d time.Duration) string {
	switch d {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	}
	return d.String()
}

// counter returns the named counter family from reg, reusing one an earlier limiter
// registered.
func counter(reg prometheus.Registerer, name, help string) (*prometheus.CounterVec, error) {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"limiter"})
	if reg == nil {
		return v, nil
	}
	if err := reg.Register(v); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	return v, nil
}
