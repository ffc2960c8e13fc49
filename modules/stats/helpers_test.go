package stats

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hop-dev/hop/internal/problem/problemtest"
	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/domains"
)

// fixedNow is "now" for handler tests, so default ranges are deterministic.
var fixedNow = time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)

type bundle struct {
	pool *pgxpool.Pool
	agg  *Aggregator
	h    *Handler
	e    *echo.Echo
}

func setup(t testing.TB) *bundle {
	t.Helper()
	db := testenv.NewDB(t)
	return setupPool(t, db.Pool)
}

// newDomains is the domain registry hop gives the reader: it resolves ?domain= and
// counts live links.
func newDomains(t testing.TB, pool *pgxpool.Pool) *domains.Registry {
	t.Helper()
	reg, err := domains.NewRegistry(context.Background(), domains.Config{BaseURL: "http://localhost:8080"}, domains.NewStore(pool), nil)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func setupPool(t testing.TB, pool *pgxpool.Pool) *bundle {
	t.Helper()
	agg := newAggregator(t, pool, AggregatorConfig{})
	h := NewHandler(NewReader(Config{Domains: newDomains(t, pool)}, pool, nil, nil))
	h.reader.now = func() time.Time { return fixedNow }
	t.Cleanup(func() { h.reader.rollups.wait() }) // before the database goes
	e := echo.New()
	e.HTTPErrorHandler = problemErrorHandler
	h.Routes(e.Group(""))
	return &bundle{pool: pool, agg: agg, h: h, e: e}
}

func newAggregator(t testing.TB, pool *pgxpool.Pool, cfg AggregatorConfig) *Aggregator {
	t.Helper()
	a, err := NewAggregator(cfg, pool, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testDescribe stands in for app's error table.
var testDescribe = problemtest.Describe(map[error]string{ErrNotFound: "404 link-not-found", ErrGone: "410 link-gone"})

// problemErrorHandler renders errors the way the app does, as RFC 9457.
func problemErrorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, detail := http.StatusInternalServerError, "internal error"
	var he *echo.HTTPError
	switch p := testDescribe(err); {
	case p.Status != http.StatusInternalServerError:
		status, detail = p.Status, p.Detail
	case errors.As(err, &he):
		status, detail = he.Code, fmt.Sprint(he.Message)
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	_ = c.JSON(status, map[string]any{"status": status, "title": http.StatusText(status), "detail": detail})
}

func (b *bundle) get(t testing.TB, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	b.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

// createLinks creates n links with slugs prefix0, prefix1, … and returns their ids.
func createLinks(t testing.TB, pool *pgxpool.Pool, prefix string, n int) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = createLink(t, pool, fmt.Sprintf("%s%d", prefix, i))
	}
	return ids
}

func createLink(t testing.TB, pool *pgxpool.Pool, slug string) int64 {
	t.Helper()
	var id int64
	err := pool.QueryRow(context.Background(),
		`INSERT INTO links (slug, original_url) VALUES ($1, 'https://example.com/'||$1) RETURNING id`, slug).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// click is one raw click_logs row as ingest would write it.
type click struct {
	link                               int64
	at                                 time.Time
	country, refHost, referer          string
	browser, os, device, ip, botReason string
	bot                                bool
	visitor                            []byte
	utmSource, utmMedium, utmCampaign  string // "" is NULL
}

var clickColumns = []string{"event_id", "link_id", "clicked_at", "ip", "country", "referer", "referer_host",
	"user_agent", "browser", "os", "device", "is_bot", "bot_reason", "visitor_hash",
	"utm_source", "utm_medium", "utm_campaign"}

type copier interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

func insertClicks(t testing.TB, db copier, clicks []click) {
	t.Helper()
	if err := copyClicks(context.Background(), db, clicks); err != nil {
		t.Fatal(err)
	}
}

func copyClicks(ctx context.Context, db copier, clicks []click) error {
	_, err := db.CopyFrom(ctx, pgx.Identifier{"click_logs"}, clickColumns,
		pgx.CopyFromSlice(len(clicks), func(i int) ([]any, error) {
			c := clicks[i]
			return []any{uuid.New(), c.link, c.at, c.ip, c.country, c.referer, c.refHost, "test-agent",
				c.browser, c.os, c.device, c.bot, c.botReason, c.visitor,
				nullable(c.utmSource), nullable(c.utmMedium), nullable(c.utmCampaign)}, nil
		}))
	return err
}

// nullable is s, or NULL when s is empty.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func visitor(n int) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h := sha256.Sum256(b[:])
	return h[:16]
}

// randomClick draws a click for one of links within the 3 days before base.
func randomClick(rng *rand.Rand, links []int64, base time.Time) click {
	pick := func(vs ...string) string { return vs[rng.IntN(len(vs))] }
	c := click{
		link:    links[rng.IntN(len(links))],
		at:      base.Add(-time.Duration(rng.Int64N(int64(72 * time.Hour)))),
		country: pick("US", "DE", "JP", "FR", ""),
		refHost: pick("(direct)", "news.ycombinator.com", "t.co", ""),
		browser: pick("Chrome", "Firefox", "Safari", ""),
		os:      pick("Windows", "macOS", "Android", "iOS"),
		device:  pick("desktop", "mobile", "tablet", "other"),
		ip:      "192.0.2.0",
		visitor: visitor(rng.IntN(40)),
		// Most clicks carry no campaign; the rest a few sources, mediums and names.
		utmSource:   pick("", "", "", "news", "twitter"),
		utmMedium:   pick("", "", "email", "social"),
		utmCampaign: pick("", "", "launch", "spring"),
	}
	if rng.IntN(10) == 0 {
		c.bot, c.botReason, c.device = true, "user-agent", "bot"
	}
	if rng.IntN(20) == 0 {
		c.visitor = nil
	}
	return c
}

// pending is the number of committed raw clicks not yet aggregated.
func pending(t testing.TB, pool *pgxpool.Pool) int64 {
	t.Helper()
	var n int64
	err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM click_logs WHERE xid >= (SELECT watermark FROM aggregator_state)`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// drain ticks until every committed click is aggregated. A transaction of the test's
// own database that still holds an xid (an autovacuum ANALYZE, say) can hold the
// window back for a moment; drain waits it out, up to a give-up bound.
func drain(t testing.TB, a *Aggregator) int64 {
	t.Helper()
	var total int64
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := a.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += n
		if n == 0 && pending(t, a.pool) == 0 {
			return total
		}
		if time.Now().After(deadline) {
			t.Fatalf("aggregator did not catch up: %d clicks pending", pending(t, a.pool))
		}
		if n == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// rollupMismatchSQL recomputes every rollup from the raw clicks and counts the rows
// that differ, per rollup. All zero means the rollups are exact.
const rollupMismatchSQL = `
WITH raw AS (
    SELECT link_id, (clicked_at AT TIME ZONE 'UTC')::date AS day, date_trunc('hour', clicked_at, 'UTC') AS hour,
           is_bot, visitor_hash,
           COALESCE(NULLIF(country, ''), 'unknown') AS country, COALESCE(NULLIF(referer_host, ''), '(direct)') AS referer,
           COALESCE(NULLIF(browser, ''), 'unknown') AS browser, COALESCE(NULLIF(os, ''), 'unknown') AS os,
           COALESCE(NULLIF(device, ''), 'unknown') AS device,
           COALESCE(utm_source, '(none)') AS utm_source, COALESCE(utm_medium, '(none)') AS utm_medium,
           COALESCE(utm_campaign, '(none)') AS utm_campaign
    FROM click_logs
),
d AS (
    SELECT link_id, day, count(*) FILTER (WHERE NOT is_bot) AS clicks,
           count(DISTINCT visitor_hash) FILTER (WHERE NOT is_bot) AS uniques, count(*) FILTER (WHERE is_bot) AS bots
    FROM raw GROUP BY 1, 2
),
h AS (
    SELECT link_id, hour, count(*) FILTER (WHERE NOT is_bot) AS clicks, count(*) FILTER (WHERE is_bot) AS bots
    FROM raw GROUP BY 1, 2
),
x AS (
    SELECT link_id, day, v.dimension, v.value, count(*) AS clicks
    FROM raw CROSS JOIN LATERAL (VALUES ('country', country), ('referer', referer), ('browser', browser),
        ('os', os), ('device', device), ('utm_source', utm_source), ('utm_medium', utm_medium),
        ('utm_campaign', utm_campaign)) v (dimension, value)
    WHERE NOT is_bot GROUP BY 1, 2, 3, 4
),
t AS (
    SELECT l.id, l.total_clicks, COALESCE(sum(d.clicks), 0) AS clicks
    FROM links l LEFT JOIN daily_stats d ON d.link_id = l.id GROUP BY l.id
)
SELECT
  (SELECT count(*) FROM ((TABLE d EXCEPT SELECT link_id, day, clicks, unique_visitors, bot_clicks FROM daily_stats)
      UNION ALL (SELECT link_id, day, clicks, unique_visitors, bot_clicks FROM daily_stats EXCEPT TABLE d)) z),
  (SELECT count(*) FROM ((TABLE h EXCEPT SELECT link_id, hour, clicks, bot_clicks FROM hourly_stats)
      UNION ALL (SELECT link_id, hour, clicks, bot_clicks FROM hourly_stats EXCEPT TABLE h)) z),
  (SELECT count(*) FROM ((TABLE x EXCEPT SELECT link_id, day, dimension, value, clicks FROM dimension_stats)
      UNION ALL (SELECT link_id, day, dimension, value, clicks FROM dimension_stats EXCEPT TABLE x)) z),
  (SELECT count(*) FROM t WHERE total_clicks <> clicks)`

func assertRollupsMatchRaw(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	var daily, hourly, dims, totals int64
	if err := pool.QueryRow(context.Background(), rollupMismatchSQL).Scan(&daily, &hourly, &dims, &totals); err != nil {
		t.Fatal(err)
	}
	if daily+hourly+dims+totals != 0 {
		t.Fatalf("rollups differ from raw clicks: daily %d rows, hourly %d, dimensions %d, links.total_clicks %d",
			daily, hourly, dims, totals)
	}
}

// linkTotals returns, per link, human and bot clicks in daily_stats and the links row.
func linkTotals(t testing.TB, pool *pgxpool.Pool) (humans, bots, totalClicks map[int64]int64) {
	t.Helper()
	humans, bots, totalClicks = map[int64]int64{}, map[int64]int64{}, map[int64]int64{}
	rows, err := pool.Query(context.Background(), `
SELECT l.id, l.total_clicks, COALESCE(sum(d.clicks), 0)::int8, COALESCE(sum(d.bot_clicks), 0)::int8
FROM links l LEFT JOIN daily_stats d ON d.link_id = l.id GROUP BY l.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, total, h, b int64
		if err := rows.Scan(&id, &total, &h, &b); err != nil {
			t.Fatal(err)
		}
		humans[id], bots[id], totalClicks[id] = h, b, total
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return humans, bots, totalClicks
}
