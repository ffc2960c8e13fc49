package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/rueidis"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"

	"github.com/hop-dev/hop/internal/tally"
	"github.com/hop-dev/hop/migrations"
	"github.com/hop-dev/hop/modules/apikey"
	"github.com/hop-dev/hop/modules/dashboard"
	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/idempotency"
	"github.com/hop-dev/hop/modules/ingest"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/live"
	"github.com/hop-dev/hop/modules/ratelimit"
	"github.com/hop-dev/hop/modules/redirect"
	"github.com/hop-dev/hop/modules/stats"
	"github.com/hop-dev/hop/modules/webhooks"
)

// serve runs hop until ctx ends: build wires everything, run serves and drains, and
// close releases what build opened.
func serve(ctx context.Context, cfg Config, logger *slog.Logger, getenv func(string) string) error {
	s, err := build(ctx, cfg, logger, getenv)
	if s != nil {
		defer s.close()
	}
	if err != nil && ctx.Err() != nil {
		// A signal during start-up (a Ctrl-C while the first start makes its
		// database, say) is a stop like any other: what was built is closed below, and
		// the next start begins again from what is on disk.
		logger.Info("stopped before hop was ready", "interrupted", err.Error())
		return nil
	}
	if err != nil {
		return err
	}
	return s.run(ctx)
}

// service is a built hop: every part wired, the listener bound, nothing running yet.
type service struct {
	cfg      Config
	logger   *slog.Logger
	echo     *echo.Echo
	ln       net.Listener
	srv      *http.Server
	pipeline *ingest.Pipeline
	agg      *stats.Aggregator
	keys     *apikey.Store
	domains  *domains.Registry
	idem     *idempotency.Store
	counts   *tally.Folder
	live     *live.Feed
	webhooks *webhooks.Service
	closers  []func() // run in reverse by close
}

// Addr is the address the service listens on (the bound port when cfg.Addr asks for :0).
func (s *service) Addr() string { return s.ln.Addr().String() }

// close releases what build opened, last opened first.
func (s *service) close() {
	for _, c := range slices.Backward(s.closers) {
		c()
	}
}

// build opens the data directory, PostgreSQL (migrated) and Redis, binds the listener
// and wires every module and route. On error it returns what it had built so far, for
// the caller to close.
func build(ctx context.Context, cfg Config, logger *slog.Logger, getenv func(string) string) (*service, error) {
	logger.Info("starting hop", "version", Version, "config", cfg)
	tuneGC(getenv)
	if cfg.SlugSecret == DevSlugSecret {
		logger.Warn("HOP_SLUG_SECRET is the old development default, which every such hop shares: generated slugs can be decoded back to link ids. Unset it to use a generated secret, or set your own")
	}
	s := &service{cfg: cfg, logger: logger}

	pool, rdb, onInvalidate, err := s.openBackends(ctx)
	if err != nil {
		return s, err
	}

	describe := describer() // the one error table, for the modules that render problems themselves
	keys := apikey.NewStore(pool, logger)
	s.keys = keys
	generated, err := keys.Bootstrap(ctx, cfg.APIKey)
	if err != nil {
		return s, err
	}
	if generated != "" {
		logger.Warn("NO API KEY EXISTED: GENERATED ONE. It is shown only this once; store it now, or create keys with `hop apikey create --name NAME`",
			"api_key", generated)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newPoolCollector(pool))

	slugSecret := cfg.SlugSecret
	if slugSecret == "" {
		var generated bool
		if slugSecret, generated, err = links.StoredSlugSecret(ctx, pool); err != nil {
			return s, err
		}
		if generated {
			logger.Info("generated a random slug secret and stored it in the database (HOP_SLUG_SECRET is unset)")
		}
	}
	linkStore, err := links.NewStore(pool, slugSecret, cfg.SlugMinLength)
	if err != nil {
		return s, err
	}
	// One enricher (one GeoIP database) and one salt store for every ingest writer.
	enricher, err := ingest.NewEnricher(cfg.GeoIPDB, ingest.NewSalts(pool))
	if err != nil {
		return s, err
	}
	s.closers = append(s.closers, func() { enricher.Close() })
	s.pipeline, err = ingest.New(ingest.Config{
		Prefix: cfg.RedisPrefix, Name: consumerName(cfg, s.ln.Addr()), DataDir: cfg.DataDir, SpoolMaxBytes: cfg.SpoolMaxBytes,
		BatchSize: cfg.IngestBatchSize, ShutdownTimeout: cfg.ShutdownTimeout,
	}, rdb, pool, enricher, reg, logger)
	if err != nil {
		return s, err
	}
	s.agg, err = stats.NewAggregator(stats.AggregatorConfig{Interval: cfg.AggregateInterval, RetentionDays: cfg.RetentionDays}, pool, reg, logger)
	if err != nil {
		return s, err
	}
	lim, err := newLimits(cfg, rdb, reg, logger)
	if err != nil {
		return s, err
	}
	// Short domains: the default one from HOP_BASE_URL, branded ones from the database,
	// held in memory for the redirect.
	domainStore := domains.NewStore(pool)
	domainRegistry, err := domains.NewRegistry(ctx, cfg.domainsConfig(rdb), domainStore, logger)
	if err != nil {
		return s, err
	}
	s.domains = domainRegistry
	rd, err := redirect.New(redirect.Config{RedisPrefix: cfg.RedisPrefix, BaseURL: cfg.BaseURL, TrustedProxies: cfg.trusted,
		LinkAttempts: lim.pwLink, ClientAttempts: lim.pwClient, Domains: domainRegistry,
		Fallbacks:   redirect.Fallbacks{Root: cfg.RootRedirect, NotFound: cfg.NotFoundRedirect, Expired: cfg.ExpiredRedirect},
		RobotsAllow: cfg.RobotsAllow, Describe: describe}, rdb, linkStore, s.pipeline, reg, logger)
	if err != nil {
		return s, err
	}
	invalidated := func(m []rueidis.RedisMessage) {
		rd.Invalidated(m)
		domainRegistry.Invalidated(m)
	}
	onInvalidate.Store(&invalidated)

	linkService := links.NewService(linkStore, cfg.BaseURL, rd, logger).WithDomains(domainRegistry)
	statsReader := stats.NewReader(stats.Config{HeldBytes: heldStatsBytes(), Domains: domainRegistry}, pool, reg, logger)
	domainService := domains.NewService(domainStore, domainRegistry)
	s.counts = tally.NewFolder(pool, []tally.Table{links.TagCounts(), domains.LinkCounts()}, 0, logger)
	if s.webhooks, err = webhooks.New(ctx, webhooks.Config{AllowPrivate: cfg.WebhookAllowPrivate}, pool, reg, logger); err != nil {
		return s, err
	}
	// Without a configured public origin the default one is a guess: the dashboard shows
	// short URLs on the origin it is visited on instead.
	dash, err := dashboard.New(dashboard.Config{BaseURL: cfg.BaseURL, BaseURLFromRequest: cfg.BaseURL == defaultConfig().BaseURL,
		LoginLimit: lim.login.Middleware(), Describe: describe, Webhooks: s.webhooks, Domains: domainService},
		linkService, statsReader, keys, pool, logger)
	if err != nil {
		return s, err
	}

	// The live feed and webhooks tail click_logs; the feed's wake-ups (a commit
	// notification, or its poll) also wake the webhook deliveries.
	if s.live, err = live.New(live.Config{}, pool, reg, logger); err != nil {
		return s, err
	}
	s.live.OnWake(s.webhooks.Wake)
	liveJS, err := dash.LiveScript()
	if err != nil {
		return s, err
	}

	agg, pipeline := s.agg, s.pipeline
	hc := &health{pool: pool, rdb: rdb, authorized: withKey(keys, lim.authFails), now: time.Now, checks: map[string]check{
		"aggregator": func(ctx context.Context) (any, error) {
			h, err := agg.Health(ctx)
			if err != nil {
				return h, err
			}
			return h, h.Err() // degraded while a transaction holds clicks back
		},
		"ingest": func(ctx context.Context) (any, error) { return pipeline.Health(ctx) },
	}}

	openapi, err := openAPIHandler()
	if err != nil {
		return s, err
	}
	s.idem = idempotency.New(idempotency.Config{}, pool, logger)
	s.echo = newEcho(cfg, describe, logger)
	routes(s.echo, cfg, reg, server{
		health:    hc,
		keys:      keys,
		links:     links.NewHandler(linkService, describe, logger),
		domains:   domains.NewHandler(domainService),
		stats:     stats.NewHandler(statsReader),
		dashboard: dash,
		redirect:  rd,
		apiLimit:  lim.api,
		linkLimit: lim.redirect,
		authFails: lim.authFails,
		openapi:   openapi,
		idem:      s.idem,
		live:      s.live,
		webhooks:  s.webhooks,
		liveJS:    liveJS,
	}, logger)
	s.srv = newServer(s.echo, logger)
	return s, nil
}

// openBackends holds the data directory, opens PostgreSQL (migrated) and Redis, and
// binds the listener, registering each with close. The redirect cache is built after
// the Redis client, so invalidations reach it through the returned hook; before it is
// set there is nothing to invalidate.
func (s *service) openBackends(ctx context.Context) (*pgxpool.Pool, rueidis.Client, *atomic.Pointer[func([]rueidis.RedisMessage)], error) {
	cfg, logger := s.cfg, s.logger
	// One hop per data directory, whatever the mode: it holds the local click log and,
	// without DATABASE_URL, the embedded PostgreSQL, which Run stops after this returns.
	if err := cfg.data.hold(); err != nil {
		return nil, nil, nil, err
	}
	pool, err := openDB(ctx, cfg, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	s.closers = append(s.closers, pool.Close)
	if err := migrations.Up(ctx, pool, logger.With("module", "migrations")); err != nil {
		return nil, nil, nil, err
	}
	onInvalidate := new(atomic.Pointer[func([]rueidis.RedisMessage)])
	rdb, err := openRedis(cfg, func(m []rueidis.RedisMessage) {
		if f := onInvalidate.Load(); f != nil {
			(*f)(m)
		}
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if rdb != nil {
		s.closers = append(s.closers, rdb.Close)
	} else {
		logger.Warn("running without Redis: the local click log is the click stream and caches are per instance", "data_dir", cfg.DataDir)
	}
	// Bound before the modules are built: the consumer name takes the actual port.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s.closers = append(s.closers, func() { ln.Close() })
	// Past the cap, new connections wait in the kernel's backlog until one closes.
	s.ln = netutil.LimitListener(ln, cfg.MaxConnections)
	return pool, rdb, onInvalidate, nil
}

// limits are hop's rate limiters.
type limits struct {
	redirect, api, login        *ratelimit.Limiter // per client address, per API key, sign-ins per address
	pwLink, pwClient, authFails *ratelimit.Limiter // wrong passwords per link and per address; wrong keys per address
}

func newLimits(cfg Config, rdb rueidis.Client, reg *prometheus.Registry, logger *slog.Logger) (limits, error) {
	var l limits
	var err error
	limiter := func(dst **ratelimit.Limiter, c ratelimit.Config) {
		if err == nil {
			*dst, err = ratelimit.New(c, rdb, reg, logger)
		}
	}
	limiter(&l.redirect, ratelimit.Config{Name: "redirect", Rate: cfg.RateLimitRedirect, Prefix: cfg.RedisPrefix + "rl:redirect:", Timeout: cfg.RateLimitTimeout})
	limiter(&l.api, ratelimit.Config{Name: "api", Rate: cfg.RateLimitAPI, Prefix: cfg.RedisPrefix + "rl:api:", Key: apiKeyOrIP, Timeout: cfg.RateLimitTimeout,
		Counted: "with this API key"})
	limiter(&l.login, ratelimit.Config{Name: "login", Rate: "10-M", Prefix: cfg.RedisPrefix + "rl:login:", Timeout: cfg.RateLimitTimeout})
	// Limits on failed attempts guard work far slower than a Redis round trip (bcrypt,
	// a key lookup), so they wait longer for Redis than the redirect limiter does
	// before counting in memory.
	slow := func(name, rate string) ratelimit.Config {
		return ratelimit.Config{Name: name, Rate: rate, Prefix: cfg.RedisPrefix + "rl:", Timeout: 250 * time.Millisecond}
	}
	limiter(&l.pwLink, slow("password-link", "5-M"))
	limiter(&l.pwClient, slow("password-client", "10-M"))
	limiter(&l.authFails, slow("auth-failures", "20-M"))
	return l, err
}

// run serves until ctx ends, then shuts down in dependency order, each step starting
// when the one before it has finished:
//  1. stop accepting requests and finish the in-flight ones;
//  2. flush the click hand-off and log, and let the ingest readers commit their batches;
//  3. run a final aggregation.
//
// Redis and the pool are closed afterwards by close.
func (s *service) run(ctx context.Context) error {
	cfg, logger := s.cfg, s.logger
	g, gctx := errgroup.WithContext(ctx)
	// The later steps run on their own contexts, detached from gctx, so they keep
	// working after the server stops and are cancelled only when their turn comes.
	ingestCtx, stopIngest := context.WithCancel(context.WithoutCancel(gctx))
	aggCtx, stopAgg := context.WithCancel(context.WithoutCancel(gctx))
	defer stopIngest()
	defer stopAgg()

	g.Go(func() error {
		logger.Info("listening", "addr", s.Addr(), "base_url", cfg.BaseURL)
		if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error { // step 1, then step 2 begins
		<-gctx.Done()
		logger.Info("shutting down: draining requests")
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		err := s.srv.Shutdown(sctx)
		stopIngest()
		if err != nil {
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	})
	g.Go(func() error { // step 2, then step 3 begins
		defer stopAgg()
		return s.pipeline.Run(ingestCtx)
	})
	g.Go(func() error { return s.agg.Run(aggCtx) }) // step 3
	g.Go(func() error { return s.keys.Watch(gctx) })
	g.Go(func() error { return s.domains.Run(gctx) })
	g.Go(func() error { return s.idem.Run(gctx) })
	g.Go(func() error { return s.counts.Run(gctx) })
	// Both end when shutdown starts: live streams never go idle, so step 1 would wait
	// for them; an interrupted delivery stays pending and is resent.
	g.Go(func() error { return s.live.Run(gctx) })
	g.Go(func() error { return s.webhooks.Run(gctx) })

	// If a step fails without returning, the ones after it must not wait forever.
	go func() {
		<-gctx.Done()
		time.AfterFunc(cfg.ShutdownTimeout+5*time.Second, func() { stopIngest(); stopAgg() })
	}()
	err := g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	logger.Info("stopped")
	return nil
}

// apiKeyOrIP keys the management rate limit by API key (already verified by the auth
// middleware that runs first), falling back to the client IP.
func apiKeyOrIP(c echoContext) string {
	if id, ok := c.Get(apikey.ContextKey).(int64); ok {
		return fmt.Sprintf("key:%d", id)
	}
	return "ip:" + c.RealIP()
}

// consumerName is this instance's stable name in the consumer group: the configured
// one, else hostname and bound port, so instances sharing a host do not share a name
// (and each other's pending entries) while a restarted instance keeps its own.
func consumerName(cfg Config, bound net.Addr) string {
	if cfg.ConsumerName != "" {
		return cfg.ConsumerName
	}
	host, _ := os.Hostname()
	_, port, _ := net.SplitHostPort(bound.String())
	return cmp.Or(host, "hop") + ":" + cmp.Or(port, "0")
}

// domainsConfig is the domain registry's configuration: the default domain and its
// fallbacks come from these settings, for serve and for the hop domain commands.
func (c Config) domainsConfig(rdb rueidis.Client) domains.Config {
	return domains.Config{BaseURL: c.BaseURL, RootRedirect: c.RootRedirect, NotFoundRedirect: c.NotFoundRedirect,
		ExpiredRedirect: c.ExpiredRedirect, Redis: rdb, RedisPrefix: c.RedisPrefix}
}

// heldStatsBytes is the stats handler's budget for rollups held in memory: 3/8 of the
// soft memory limit (24 MiB under the default 64 MiB), so a larger GOMEMLIMIT holds more
// links. Without a limit the handler's default applies.
func heldStatsBytes() int {
	limit := debug.SetMemoryLimit(-1) // reads the limit
	if limit <= 0 || limit >= math.MaxInt64/2 {
		return 0
	}
	return int(min(limit/8*3, math.MaxInt))
}

// tuneGC trades a little memory for CPU unless GOGC or GOMEMLIMIT say otherwise: the
// redirect path allocates little but often, and at GOGC=100 the collector took a sixth
// of the process's CPU under load. The soft memory limit keeps the heap from growing
// past what a small container gives, by collecting more often as it nears it.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(64 << 20)
	}
}
