package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// statsPhase is the stats endpoint measured at one size of click_logs.
type statsPhase struct {
	rawRows int64
	runs    []wrkResult
	sizes   string
}

// statsBench seeds 1000 links x 365 days of rollups with SQL and measures
// GET /links/{slug}/stats with 100k and then 10M raw clicks in click_logs.
func statsBench(ctx context.Context, c *config, rep *report) error {
	e, err := startEnv(ctx, c, "stats", "hop_bench_stats")
	if err != nil {
		return err
	}
	defer e.close()
	h, pool := e.h, e.pool

	// The raw rows below are written as already aggregated (xid below the watermark),
	// like old clicks in production; so wait for the aggregator's first tick.
	for {
		var wm uint64
		if err := pool.QueryRow(ctx, `SELECT watermark::text::numeric::int8 FROM aggregator_state WHERE id = 1`).Scan(&wm); err != nil {
			return err
		}
		if wm > 1 {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(200 * time.Millisecond)
	}

	t := time.Now()
	if err := seedRollups(ctx, pool, c.statsLinks, c.statsDays); err != nil {
		return err
	}
	rep.statsSeed = time.Since(t)
	var slugs []string
	rows, err := pool.Query(ctx, `SELECT slug FROM links WHERE slug LIKE 'st%' ORDER BY id`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err
		}
		slugs = append(slugs, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	slugFile := filepath.Join(c.tmp, "stats-slugs.txt")
	if err := os.WriteFile(slugFile, []byte(strings.Join(slugs, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	var minID int64
	if err := pool.QueryRow(ctx, `SELECT min(id) FROM links WHERE slug LIKE 'st%'`).Scan(&minID); err != nil {
		return err
	}

	env := []string{"BENCH_SLUGS=" + slugFile, "BENCH_KEY=" + apiKey, fmt.Sprintf("BENCH_DAYS=%d", c.statsDays)}
	measure := func(raw int64) error {
		t := time.Now()
		if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) click_logs`); err != nil {
			return err
		}
		// Flush the inserts' dirty pages now rather than during the measurement.
		if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
			logf("stats: CHECKPOINT: %v (continuing)", err)
		}
		logf("stats: VACUUM ANALYZE click_logs and CHECKPOINT took %s", time.Since(t).Round(time.Millisecond))
		ph := statsPhase{rawRows: raw}
		if err := pool.QueryRow(ctx, `SELECT format('click_logs %s, daily_stats %s, dimension_stats %s, hourly_stats %s',
pg_size_pretty(pg_total_relation_size('click_logs')), pg_size_pretty(pg_total_relation_size('daily_stats')),
pg_size_pretty(pg_total_relation_size('dimension_stats')), pg_size_pretty(pg_total_relation_size('hourly_stats')))`).Scan(&ph.sizes); err != nil {
			return err
		}
		// Warm up until every link's rollups are held (hop reads them in the background,
		// two at a time, answering from PostgreSQL meanwhile), as after a restart.
		warm := time.Now()
		for i := 0; ; i++ {
			if _, err := runWrk(ctx, c, "stats.lua", h.url, min(c.duration, 3*time.Second), env...); err != nil {
				return err
			}
			m, err := h.metrics(ctx)
			if err != nil {
				return err
			}
			if held := m["hop_stats_held_links"]; held >= float64(len(slugs)) || i == 20 {
				logf("stats: %.0f of %d links held after %s of warm-up", held, len(slugs), time.Since(warm).Round(time.Second))
				break
			}
		}
		for i := 1; i <= c.runs; i++ {
			r, err := runWrk(ctx, c, "stats.lua", h.url, c.duration, env...)
			if err != nil {
				return err
			}
			logf("stats run %d with %d raw clicks: %.0f req/s p50 %.2fms p99 %.2fms (200: %d, other: %d)",
				i, raw, r.RPS, r.P50, r.P99, r.Status[200], r.Requests-r.Status[200])
			ph.runs = append(ph.runs, r)
		}
		rep.stats = append(rep.stats, ph)
		return nil
	}

	t = time.Now()
	if err := insertRawClicks(ctx, pool, minID, int64(len(slugs)), 0, int64(c.rawBase), int64(c.rawRows)); err != nil {
		return err
	}
	logf("stats: %d raw clicks inserted in %s", c.rawBase, time.Since(t).Round(time.Millisecond))
	if err := measure(int64(c.rawBase)); err != nil {
		return err
	}
	if c.rawRows > c.rawBase {
		t = time.Now()
		if err := insertRawClicks(ctx, pool, minID, int64(len(slugs)), int64(c.rawBase), int64(c.rawRows), int64(c.rawRows)); err != nil {
			return err
		}
		rep.rawInsert = time.Since(t)
		logf("stats: raw clicks raised to %d in %s", c.rawRows, rep.rawInsert.Round(time.Millisecond))
		if err := measure(int64(c.rawRows)); err != nil {
			return err
		}
	}
	// The aggregator must not have touched the pre-aggregated raw rows.
	var agg int64
	_ = pool.QueryRow(ctx, `SELECT rows_total FROM aggregator_state WHERE id = 1`).Scan(&agg)
	rep.statsAggregated = agg
	return nil
}

// seedRollups writes links st00001.. and n days of rollups ending today (UTC) for each:
// daily_stats, 15 dimension values per day, and 24 hourly_stats rows per day (in time
// order, as in production).
func seedRollups(ctx context.Context, pool *pgxpool.Pool, links, days int) error {
	steps := []struct{ what, sql string }{
		{"links", `INSERT INTO links (slug, original_url, created_at)
SELECT 'st' || lpad(g::text, 5, '0'), 'https://example.com/article/' || g, now() - interval '400 days'
FROM generate_series(1, $1) g`},
		{"daily_stats", `INSERT INTO daily_stats (link_id, day, clicks, unique_visitors, bot_clicks)
SELECT id, day, c, c * 7 / 10, c / 20 FROM (
  SELECT l.id, d::date AS day, (random() * 500)::int8 AS c
  FROM links l CROSS JOIN generate_series((now() AT TIME ZONE 'UTC')::date - ($2::int - 1), (now() AT TIME ZONE 'UTC')::date, interval '1 day') d
  WHERE l.slug LIKE 'st%' AND $1::int > 0) s
ORDER BY id, day`},
		{"dimension_stats", `INSERT INTO dimension_stats (link_id, day, dimension, value, clicks)
SELECT l.id, d::date, v.dim, v.val, 1 + (random() * 100)::int8
FROM links l
CROSS JOIN generate_series((now() AT TIME ZONE 'UTC')::date - ($2::int - 1), (now() AT TIME ZONE 'UTC')::date, interval '1 day') d
CROSS JOIN (VALUES ('country','US'), ('country','DE'), ('country','FR'), ('country','GB'),
  ('referer','(direct)'), ('referer','news.ycombinator.com'), ('referer','www.google.com'),
  ('browser','Chrome'), ('browser','Safari'), ('browser','Firefox'),
  ('os','Windows'), ('os','macOS'), ('os','iOS'), ('device','desktop'), ('device','mobile')) v (dim, val)
WHERE l.slug LIKE 'st%' AND $1::int > 0
ORDER BY 1, 2, 3, 4`},
		{"hourly_stats", `INSERT INTO hourly_stats (link_id, hour, clicks, bot_clicks)
SELECT l.id, h, (random() * 40)::int8, (random() * 2)::int8
FROM links l
CROSS JOIN generate_series(date_trunc('hour', now(), 'UTC') - ($2::int - 1) * interval '1 day', date_trunc('hour', now(), 'UTC'), interval '1 hour') h
WHERE l.slug LIKE 'st%' AND $1::int > 0
ORDER BY 2, 1`}, // hour by hour, as the aggregator writes them: a link's hours are scattered
		{"vacuum", `VACUUM (ANALYZE) links, daily_stats, dimension_stats, hourly_stats`},
	}
	for _, s := range steps {
		t := time.Now()
		var args []any
		switch s.what {
		case "links":
			args = []any{links}
		case "vacuum":
		default:
			args = []any{links, days}
		}
		ct, err := pool.Exec(ctx, s.sql, args...)
		if err != nil {
			return fmt.Errorf("seed %s: %w", s.what, err)
		}
		logf("stats seed: %s: %d rows in %s", s.what, ct.RowsAffected(), time.Since(t).Round(time.Millisecond))
	}
	return nil
}

// insertRawClicks adds click_logs rows number from+1..to (of total, which spreads them
// over the last 365 days in order) for links minID..minID+links-1. They are written as
// already aggregated (xid 1, below the aggregator's watermark), like old clicks whose
// rollups exist, so the aggregator never scans them. Two connections insert 500k-row
// chunks in parallel; event ids are time-ordered like hop's UUIDv7s.
func insertRawClicks(ctx context.Context, pool *pgxpool.Pool, minID, links, from, to, total int64) error {
	const q = `
INSERT INTO click_logs (event_id, link_id, clicked_at, ip, country, referer, referer_host, user_agent,
                        browser, os, device, is_bot, bot_reason, visitor_hash, xid)
SELECT ('bbbbbbbb' || lpad(to_hex(i), 24, '0'))::uuid,
       $3 + i % $4,
       now() - interval '365 days' + (i::float8 / $5) * interval '365 days',
       '198.51.' || (i % 256) || '.0',
       (ARRAY['US','DE','FR','GB','JP','BR'])[1 + i % 6],
       (ARRAY['', 'https://news.ycombinator.com/item?id=1', 'https://www.google.com/'])[1 + i % 3],
       (ARRAY['(direct)', 'news.ycombinator.com', 'www.google.com'])[1 + i % 3],
       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
       'Chrome', 'Windows', 'desktop', i % 20 = 0, CASE WHEN i % 20 = 0 THEN 'search' ELSE '' END,
       decode(md5(i::text), 'hex'), '1'::xid8
FROM generate_series($1::int8 + 1, $2::int8) i`
	const chunk = 500_000
	type span struct{ a, b int64 }
	work := make(chan span)
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := from
	for range 2 {
		wg.Go(func() {
			for s := range work {
				if _, err := pool.Exec(ctx, q, s.a, s.b, minID, links, total); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				done += s.b - s.a
				if to-from > 2*chunk {
					logf("stats: raw clicks %d / %d", done, to)
				}
				mu.Unlock()
			}
		})
	}
	var err error
feed:
	for a := from; a < to; a += chunk {
		select {
		case work <- span{a, min(a+chunk, to)}:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("insert raw clicks: %w", err)
	}
	return nil
}
