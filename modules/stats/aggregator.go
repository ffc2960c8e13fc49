package stats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hop-dev/hop/internal/horizon"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// AggregatorConfig configures the Aggregator. Zero values take the defaults noted.
type AggregatorConfig struct {
	// Interval between ticks (HOP_AGGREGATE_INTERVAL). Default 2s.
	Interval time.Duration
	// MaxRowsPerTick caps the raw rows one tick aggregates so a backlog is worked off
	// in bounded transactions; a tick that hits the cap is followed at once by another.
	// A single ingest transaction larger than the cap is still taken whole. Default 50,000.
	MaxRowsPerTick int
	// RetentionDays deletes raw clicks older than this many days, once they are
	// aggregated; rollups are kept. 0 keeps raw clicks forever (HOP_RETENTION_DAYS).
	RetentionDays int
	// VisitorDays is how many UTC days of per-day visitor hashes are kept for exact
	// daily uniques. A click ingested later than that for an older day may count as
	// one extra unique visitor. Default 7.
	VisitorDays int
	// RetentionInterval is how often the retention pass runs. Default 10m.
	RetentionInterval time.Duration
	// RetentionBatch is how many raw rows one retention transaction deletes. Default 1,000.
	RetentionBatch int
	// FinalTimeout bounds the last tick run after Run's context is cancelled. Default 10s.
	FinalTimeout time.Duration
}

func (c AggregatorConfig) withDefaults() AggregatorConfig {
	c.Interval = cmp.Or(c.Interval, 2*time.Second)
	c.MaxRowsPerTick = cmp.Or(c.MaxRowsPerTick, 50_000)
	c.VisitorDays = cmp.Or(c.VisitorDays, 7)
	c.RetentionInterval = cmp.Or(c.RetentionInterval, 10*time.Minute)
	c.RetentionBatch = cmp.Or(c.RetentionBatch, 1000)
	c.FinalTimeout = cmp.Or(c.FinalTimeout, 10*time.Second)
	return c
}

func (c AggregatorConfig) validate() error {
	switch {
	case c.Interval < 0:
		return errors.New("aggregator interval must be positive")
	case c.MaxRowsPerTick < 0:
		return errors.New("aggregator max rows per tick must be positive")
	case c.RetentionDays < 0:
		return errors.New("retention days must be 0 (keep forever) or positive")
	case c.VisitorDays < 0:
		return errors.New("visitor days must be positive")
	case c.RetentionInterval < 0, c.RetentionBatch < 0, c.FinalTimeout < 0:
		return errors.New("retention interval, retention batch and final timeout must be positive")
	}
	return nil
}

// Aggregator adds new click_logs rows to the rollups. Any number of instances may run
// one; a PostgreSQL advisory lock lets exactly one of them work at a time.
type Aggregator struct {
	cfg     AggregatorConfig
	pool    *pgxpool.Pool
	logger  *slog.Logger
	metrics aggregatorMetrics

	// beforeCommit, when set by tests, runs inside the tick transaction just before
	// it commits, to simulate a crash at the worst moment.
	beforeCommit func(ctx context.Context, tx pgx.Tx) error
}

type aggregatorMetrics struct {
	duration    prometheus.Histogram
	rows        prometheus.Counter
	ticks       *prometheus.CounterVec
	lag         prometheus.Gauge
	lastSuccess prometheus.Gauge
	deleted     prometheus.Counter
}

// NewAggregator validates cfg and registers the aggregator's metrics with reg (a
// private registry when reg is nil).
func NewAggregator(cfg AggregatorConfig, pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) (*Aggregator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("stats aggregator: nil pool")
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := aggregatorMetrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hop_stats_aggregator_tick_duration_seconds",
			Help:    "Duration of aggregator ticks that took the lock.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hop_stats_aggregator_rows_total",
			Help: "Raw clicks added to the rollups by this instance.",
		}),
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hop_stats_aggregator_ticks_total",
			Help: "Aggregator ticks by result: ok, skipped (another instance holds the lock) or error.",
		}, []string{"result"}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hop_stats_aggregator_lag_seconds",
			Help: "Age of the oldest committed click not yet aggregated after the last tick; 0 when caught up.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hop_stats_aggregator_last_success_timestamp_seconds",
			Help: "Unix time of this instance's last successful tick.",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hop_stats_retention_deleted_rows_total",
			Help: "Raw clicks deleted by retention.",
		}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.rows, m.ticks, m.lag, m.lastSuccess, m.deleted} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register stats metrics: %w", err)
		}
	}
	return &Aggregator{
		cfg:     cfg.withDefaults(),
		pool:    pool,
		logger:  logger.With("module", "stats"),
		metrics: m,
	}, nil
}

// Run ticks until ctx is cancelled, then runs one final tick so clicks ingested during
// shutdown are aggregated. Tick errors are logged and retried on the next tick; Run
// returns nil on cancellation.
func (a *Aggregator) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	var lastRetention time.Time
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.FinalTimeout)
			defer cancel()
			if _, err := a.RunOnce(final); err != nil {
				a.logger.Error("final aggregation", "err", err)
			}
			return nil
		case <-t.C:
		}
		// A tick that hit the cap leaves a backlog: keep going without waiting.
		for ctx.Err() == nil {
			_, more, err := a.runOnce(ctx)
			if err != nil {
				if ctx.Err() == nil {
					a.logger.Error("aggregate clicks", "err", err)
				}
				break
			}
			if !more {
				break
			}
		}
		if ctx.Err() == nil && time.Since(lastRetention) >= a.cfg.RetentionInterval {
			lastRetention = time.Now()
			if _, err := a.retain(ctx); err != nil && ctx.Err() == nil {
				a.logger.Error("retention", "err", err)
			}
		}
	}
}

const (
	// aggregatorLockKey is the advisory lock that makes one aggregator active ("hopstat").
	aggregatorLockKey = 0x686f7073746174

	tryLockSQL = `SELECT pg_try_advisory_xact_lock($1)`

	tickWorkMemSQL = `SET LOCAL work_mem = '64MB'`

	// The row lock is a second guard: even without the advisory lock, a concurrent tick
	// would wait here and, in READ COMMITTED, then read the advanced watermark.
	watermarkSQL = `SELECT watermark FROM aggregator_state WHERE id = 1 FOR UPDATE`

	// cutSQL reads the first xid in the window and the xid of the first row beyond the
	// cap. Stopping below the latter takes whole transactions only, so the window
	// stays exact. Both are index probes on click_logs_xid_idx.
	cutSQL = `
SELECT (SELECT xid FROM click_logs WHERE xid >= $1 AND xid < $2 ORDER BY xid LIMIT 1),
       (SELECT xid FROM click_logs WHERE xid >= $1 AND xid < $2 ORDER BY xid OFFSET $3 LIMIT 1)`

	// aggregateSQL adds the raw rows with xid in [$1, $2) to every rollup in one
	// statement; all its CTEs see the same snapshot. One pass over the rows counts
	// them two ways at once (grouping sets): by (link, hour, bot, dimension values)
	// for the click rollups, and by (link, hour, bot, visitor) for unique visitors.
	// Both give far fewer groups than rows, since clicks repeat the same few
	// browsers, countries, referrers and visitors, and every rollup is derived from
	// those counts: the raw rows are read and hashed once, not materialised and read
	// again per rollup. Empty dimension values become "unknown" ("(direct)" for
	// referers, "(none)" for campaign parameters) after grouping, so "" and NULL meet
	// in the rollups. Hours are binned
	// from a UTC origin: the same hours as date_trunc('hour', clicked_at, 'UTC'),
	// which is dearer because it looks the zone up for every row.
	aggregateSQL = `
WITH counted AS MATERIALIZED (
    SELECT link_id,
           date_bin('1 hour', clicked_at, '2000-01-01 00:00:00+00') AS hour,
           is_bot, country, referer_host, browser, os, device,
           utm_source, utm_medium, utm_campaign, visitor_hash,
           GROUPING(visitor_hash) = 0 AS per_visitor,
           count(*) AS n
    FROM click_logs
    WHERE xid >= $1 AND xid < $2
    GROUP BY GROUPING SETS (
        (link_id, hour, is_bot, country, referer_host, browser, os, device, utm_source, utm_medium, utm_campaign),
        (link_id, hour, is_bot, visitor_hash))
),
fine AS (
    SELECT link_id, hour, is_bot,
           COALESCE(NULLIF(country, ''), 'unknown') AS country,
           COALESCE(NULLIF(referer_host, ''), '(direct)') AS referer,
           COALESCE(NULLIF(browser, ''), 'unknown') AS browser,
           COALESCE(NULLIF(os, ''), 'unknown') AS os,
           COALESCE(NULLIF(device, ''), 'unknown') AS device,
           COALESCE(NULLIF(utm_source, ''), '(none)') AS utm_source,
           COALESCE(NULLIF(utm_medium, ''), '(none)') AS utm_medium,
           COALESCE(NULLIF(utm_campaign, ''), '(none)') AS utm_campaign,
           n
    FROM counted WHERE NOT per_visitor
),
new_visitors AS (
    INSERT INTO daily_visitors (link_id, day, visitor_hash)
    SELECT DISTINCT link_id, (hour AT TIME ZONE 'UTC')::date, visitor_hash FROM counted
    WHERE per_visitor AND NOT is_bot AND visitor_hash IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING link_id, day
),
uniques AS (
    SELECT link_id, day, count(*) AS n FROM new_visitors GROUP BY link_id, day
),
per_day AS (
    SELECT link_id, (hour AT TIME ZONE 'UTC')::date AS day,
           COALESCE(sum(n) FILTER (WHERE NOT is_bot), 0)::int8 AS clicks,
           COALESCE(sum(n) FILTER (WHERE is_bot), 0)::int8 AS bot_clicks
    FROM fine GROUP BY 1, 2
),
daily AS (
    INSERT INTO daily_stats AS s (link_id, day, clicks, unique_visitors, bot_clicks)
    SELECT d.link_id, d.day, d.clicks, COALESCE(u.n, 0), d.bot_clicks
    FROM per_day d LEFT JOIN uniques u USING (link_id, day)
    ORDER BY d.link_id, d.day
    ON CONFLICT (link_id, day) DO UPDATE SET
        clicks = s.clicks + excluded.clicks,
        unique_visitors = s.unique_visitors + excluded.unique_visitors,
        bot_clicks = s.bot_clicks + excluded.bot_clicks
),
hourly AS (
    INSERT INTO hourly_stats AS s (link_id, hour, clicks, bot_clicks)
    SELECT link_id, hour,
           COALESCE(sum(n) FILTER (WHERE NOT is_bot), 0)::int8,
           COALESCE(sum(n) FILTER (WHERE is_bot), 0)::int8
    FROM fine GROUP BY link_id, hour
    ORDER BY link_id, hour
    ON CONFLICT (link_id, hour) DO UPDATE SET
        clicks = s.clicks + excluded.clicks,
        bot_clicks = s.bot_clicks + excluded.bot_clicks
),
dims AS (
    INSERT INTO dimension_stats AS s (link_id, day, dimension, value, clicks)
    SELECT f.link_id, (f.hour AT TIME ZONE 'UTC')::date, v.dimension, v.value, sum(f.n)::int8
    FROM fine f
    CROSS JOIN LATERAL (VALUES ('country', f.country), ('referer', f.referer),
        ('browser', f.browser), ('os', f.os), ('device', f.device), ('utm_source', f.utm_source),
        ('utm_medium', f.utm_medium), ('utm_campaign', f.utm_campaign)) AS v (dimension, value)
    WHERE NOT f.is_bot
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (link_id, day, dimension, value) DO UPDATE SET clicks = s.clicks + excluded.clicks
),
totals AS (
    UPDATE links l SET total_clicks = l.total_clicks + t.clicks, stats_version = l.stats_version + 1
    FROM (SELECT link_id, sum(clicks)::int8 AS clicks FROM per_day GROUP BY link_id) t
    WHERE l.id = t.link_id
)
SELECT COALESCE(sum(n), 0)::int8 FROM fine`

	advanceSQL = `
UPDATE aggregator_state
SET watermark = $1, last_run_at = now(), rows_total = rows_total + $2
WHERE id = 1`

	// pendingSQL is the click time of the oldest committed row not yet aggregated
	// (lowest xid), for the lag metric and health.
	pendingSQL = `
SELECT clicked_at FROM click_logs WHERE xid >= $1 ORDER BY xid LIMIT 1`
)

// RunOnce aggregates the raw clicks committed since the last tick, at most about
// MaxRowsPerTick of them, and returns how many it took. It returns 0 without error when
// another instance holds the aggregator lock. Everything happens in one transaction:
// a failure at any point leaves rollups and watermark as they were.
func (a *Aggregator) RunOnce(ctx context.Context) (int64, error) {
	n, _, err := a.runOnce(ctx)
	return n, err
}

// runOnce is RunOnce that also reports whether the cap left committed rows behind.
func (a *Aggregator) runOnce(ctx context.Context) (n int64, more bool, err error) {
	start := time.Now()
	n, more, locked, err := a.tick(ctx)
	switch {
	case err != nil:
		a.metrics.ticks.WithLabelValues("error").Inc()
		return 0, false, fmt.Errorf("aggregate clicks: %w", err)
	case !locked:
		a.metrics.ticks.WithLabelValues("skipped").Inc()
		return 0, false, nil
	}
	a.metrics.ticks.WithLabelValues("ok").Inc()
	a.metrics.duration.Observe(time.Since(start).Seconds())
	a.metrics.rows.Add(float64(n))
	a.metrics.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
	return n, more, nil
}

// tick runs one aggregation transaction. more reports that the cap stopped it short
// of the window, so committed rows are still waiting.
func (a *Aggregator) tick(ctx context.Context) (rows int64, more, locked bool, err error) {
	tx, err := a.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return 0, false, false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	if err := tx.QueryRow(ctx, tryLockSQL, int64(aggregatorLockKey)).Scan(&locked); err != nil {
		return 0, false, false, fmt.Errorf("lock: %w", err)
	}
	if !locked {
		return 0, false, false, nil
	}
	var low, high uint64
	if err := tx.QueryRow(ctx, watermarkSQL).Scan(&low); err != nil {
		return 0, false, true, fmt.Errorf("read watermark: %w", err)
	}
	if high, err = horizon.Read(ctx, tx); err != nil {
		return 0, false, true, err
	}
	// The horizon never moves backwards; the guard only keeps the watermark monotonic.
	high = max(high, low)
	var first, cut *uint64
	if err := tx.QueryRow(ctx, cutSQL, low, high, a.cfg.MaxRowsPerTick).Scan(&first, &cut); err != nil {
		return 0, false, true, fmt.Errorf("find cut: %w", err)
	}
	switch {
	case cut == nil:
		// At most the cap: take the whole window.
	case *cut > *first:
		high = *cut
	default:
		// One transaction holds more rows than the cap: take it whole, or no tick
		// would ever make progress past it.
		high = *cut + 1
	}
	if first != nil {
		// A tick sorts and hashes up to MaxRowsPerTick rows several ways; the default
		// 4 MB spills those to disk.
		if _, err := tx.Exec(ctx, tickWorkMemSQL); err != nil {
			return 0, false, true, fmt.Errorf("set work_mem: %w", err)
		}
		if err := tx.QueryRow(ctx, aggregateSQL, low, high).Scan(&rows); err != nil {
			return 0, false, true, fmt.Errorf("add to rollups: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, advanceSQL, high, rows); err != nil {
		return 0, false, true, fmt.Errorf("advance watermark: %w", err)
	}
	var oldest time.Time
	switch err := tx.QueryRow(ctx, pendingSQL, high).Scan(&oldest); {
	case errors.Is(err, pgx.ErrNoRows):
		a.metrics.lag.Set(0)
	case err != nil:
		return 0, false, true, fmt.Errorf("read lag: %w", err)
	default:
		a.metrics.lag.Set(max(0, time.Since(oldest).Seconds()))
	}
	if a.beforeCommit != nil {
		if err := a.beforeCommit(ctx, tx); err != nil {
			return 0, false, true, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, false, true, fmt.Errorf("commit: %w", err)
	}
	return rows, cut != nil, true, nil
}

// Health is the aggregator's state as seen by every instance, for /health.
type Health struct {
	LastRun    time.Time     `json:"last_run"`    // last successful tick of any instance; zero before the first
	Lag        time.Duration `json:"-"`           // age of the oldest committed click not yet aggregated; 0 when caught up
	LagSeconds float64       `json:"lag_seconds"` // Lag, for /health
	// HeldBy is the open transaction in hop's database that keeps committed clicks
	// out of the rollups until it ends; nil when none does.
	HeldBy *Holder `json:"held_by,omitempty"`
}

// Holder names a transaction that holds the aggregator back.
type Holder struct {
	PID int    `json:"pid,omitempty"` // its backend; 0 for a prepared transaction
	GID string `json:"gid,omitempty"` // a prepared transaction's name
	// Age is how long it has been open. PostgreSQL shows another role's start time
	// only to members of pg_read_all_stats; it is 0 when hidden.
	Age        time.Duration `json:"-"`
	AgeSeconds float64       `json:"age_seconds"`
}

// ErrHeldBack is Health.Err's error: a transaction in hop's database has kept
// committed clicks out of the stats for longer than heldBackAfter.
var ErrHeldBack = errors.New("aggregation held back by an open transaction")

// heldBackAfter is how long a transaction may hold committed clicks back before
// /health reports it as degraded: ingest transactions commit within seconds.
const heldBackAfter = time.Minute

// Err reports ErrHeldBack, naming the transaction, when one has held the aggregator
// back for longer than a minute; nil otherwise.
func (h Health) Err() error {
	if h.HeldBy == nil || h.Lag < heldBackAfter {
		return nil
	}
	who := fmt.Sprintf("pid %d", h.HeldBy.PID)
	if h.HeldBy.PID == 0 {
		who = fmt.Sprintf("prepared transaction %q", h.HeldBy.GID)
	}
	return fmt.Errorf("clicks wait %s: %s open %s: %w", h.Lag.Round(time.Second), who, h.HeldBy.Age.Round(time.Second), ErrHeldBack)
}

// healthSQL reads the last run, the oldest committed click not yet aggregated, and
// the oldest transaction in hop's database that has an xid, if committed clicks with
// a higher xid wait for it (see horizon.SQL).
const healthSQL = `
WITH open AS (
    SELECT a.pid, '' AS gid, a.xact_start AS since, x AS xid
    FROM pg_stat_activity a JOIN pg_snapshot_xip(pg_current_snapshot()) x ON x::xid = a.backend_xid
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
    UNION ALL
    SELECT 0, p.gid, p.prepared, x
    FROM pg_prepared_xacts p JOIN pg_snapshot_xip(pg_current_snapshot()) x ON x::xid = p.transaction
    WHERE p.database = current_database()
),
oldest AS (SELECT * FROM open ORDER BY xid LIMIT 1)
SELECT s.last_run_at, c.clicked_at, o.pid, o.gid, now() - o.since
FROM aggregator_state s
LEFT JOIN LATERAL (
    SELECT clicked_at FROM click_logs WHERE xid >= s.watermark ORDER BY xid LIMIT 1
) c ON true
LEFT JOIN oldest o ON EXISTS (SELECT FROM click_logs WHERE xid > o.xid)
WHERE s.id = 1`

// Health reads the aggregator's last run, its lag and what holds it back from the
// database, so it reports the active instance's progress whichever instance answers.
func (a *Aggregator) Health(ctx context.Context) (Health, error) {
	var (
		lastRun, oldest *time.Time
		pid             *int
		gid             *string
		age             *time.Duration
	)
	if err := a.pool.QueryRow(ctx, healthSQL).Scan(&lastRun, &oldest, &pid, &gid, &age); err != nil {
		return Health{}, fmt.Errorf("aggregator health: %w", err)
	}
	var h Health
	if lastRun != nil {
		h.LastRun = *lastRun
	}
	if oldest != nil {
		h.Lag = max(0, time.Since(*oldest))
	}
	h.LagSeconds = h.Lag.Seconds()
	if pid != nil {
		h.HeldBy = &Holder{PID: *pid, GID: *gid}
		if age != nil {
			h.HeldBy.Age = max(0, *age)
			h.HeldBy.AgeSeconds = h.HeldBy.Age.Seconds()
		}
	}
	return h, nil
}

const (
	// retainClicksSQL deletes up to $2 raw clicks older than $1, only ones below the
	// watermark: never a click that is not yet in the rollups. The batch is picked by
	// ctid in an uncorrelated subquery, run once under the statement's snapshot (a row
	// it sees cannot be vacuumed away before the statement ends, so its ctid stays its
	// own; one deleted meanwhile by another instance is skipped), and deleted by TID
	// instead of a join back through an index. The watermark test is wrapped in IS TRUE
	// so that no plan uses it as an index condition: the generic plan a prepared
	// statement may switch to after five runs walked click_logs_xid_idx over every
	// aggregated click, 207 ms at 1.5M clicks with nothing due, where the BRIN index on
	// clicked_at leaves the ranges old enough and the newest one (0.09 ms).
	retainClicksSQL = `
DELETE FROM click_logs WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM click_logs
    WHERE clicked_at < $1 AND (xid < (SELECT watermark FROM aggregator_state WHERE id = 1)) IS TRUE
    LIMIT $2))`

	// retainVisitorsSQL deletes up to $2 visitor rows of days before $1, picked and
	// deleted as in retainClicksSQL. Joined back by key, a batch was hashed against the
	// whole table: by the generic plan before statistics existed (81 ms a batch at 140k
	// rows), by the custom plan after (28 ms); by TID it takes 0.7 ms.
	retainVisitorsSQL = `
DELETE FROM daily_visitors WHERE ctid = ANY(ARRAY(SELECT ctid FROM daily_visitors WHERE day < $1 LIMIT $2))`
)

// retain deletes aggregated raw clicks older than RetentionDays and visitor sets older
// than VisitorDays, in small transactions so it never holds locks for long. It returns
// the number of raw clicks deleted.
func (a *Aggregator) retain(ctx context.Context) (int64, error) {
	now := time.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	visitorsBefore := today.AddDate(0, 0, -a.cfg.VisitorDays)
	if _, err := a.deleteBatches(ctx, retainVisitorsSQL, visitorsBefore); err != nil {
		return 0, fmt.Errorf("prune visitor sets: %w", err)
	}
	if a.cfg.RetentionDays == 0 {
		return 0, nil
	}
	n, err := a.deleteBatches(ctx, retainClicksSQL, now.AddDate(0, 0, -a.cfg.RetentionDays))
	a.metrics.deleted.Add(float64(n))
	if err != nil {
		return n, fmt.Errorf("delete old clicks: %w", err)
	}
	return n, nil
}

func (a *Aggregator) deleteBatches(ctx context.Context, query string, before time.Time) (int64, error) {
	var total int64
	for {
		tag, err := a.pool.Exec(ctx, query, before, a.cfg.RetentionBatch)
		if err != nil {
			return total, err
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(a.cfg.RetentionBatch) {
			return total, nil
		}
	}
}
