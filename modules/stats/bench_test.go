package stats

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/testenv"
)

// seedRollupsSQL fills the rollups of every link for the days [$1, $2], inserted day by
// day across links as the aggregator would, with ~18 dimension rows per link and day
// drawn from value pools so a 30-day window sees dozens of distinct values.
const seedRollupsSQL = `
INSERT INTO daily_stats (link_id, day, clicks, unique_visitors, bot_clicks)
SELECT l.id, d::date, 50 + (l.id * 7 + extract(doy FROM d)::int) % 100, 20 + (l.id + extract(doy FROM d)::int) % 30, l.id % 5
FROM generate_series($1::date, $2::date, interval '1 day') d CROSS JOIN links l
ORDER BY d, l.id;

INSERT INTO dimension_stats (link_id, day, dimension, value, clicks)
SELECT l.id, d::date, v.dim, v.prefix || ((l.id + extract(doy FROM d)::int * v.step + k) % v.pool), 1 + (l.id + k) % 20
FROM generate_series($1::date, $2::date, interval '1 day') d
CROSS JOIN links l
CROSS JOIN (VALUES ('country', 'c', 40, 5, 3), ('referer', 'r', 100, 4, 7), ('browser', 'b', 8, 3, 1),
                   ('os', 'o', 6, 3, 1), ('device', 'd', 4, 3, 1)) v (dim, prefix, pool, n, step)
CROSS JOIN LATERAL generate_series(0, v.n - 1) k
ORDER BY d, l.id;

INSERT INTO hourly_stats (link_id, hour, clicks, bot_clicks)
SELECT l.id, d + h * interval '1 hour', 5 + (l.id + h) % 10, 0
FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 day') d
CROSS JOIN links l CROSS JOIN generate_series(8, 23, 3) h
ORDER BY d, l.id, h`

// BenchmarkStatsHandler serves GET /links/{slug}/stats for random links and 30-day
// windows over 1,000 links × 365 days of rollups, with 64 concurrent requests on a
// 64-connection pool, through the Echo router (no network). ns/op is the inverse of
// throughput; req/s is reported too.
func BenchmarkStatsHandler(b *testing.B) {
	db := testenv.NewDB(b)
	ctx := context.Background()
	const links, days = 1000, 365
	last := time.Date(fixedNow.Year(), fixedNow.Month(), fixedNow.Day(), 0, 0, 0, 0, time.UTC)
	first := last.AddDate(0, 0, -(days - 1))
	start := time.Now()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO links (slug, original_url)
SELECT 'l' || lpad(i::text, 4, '0'), 'https://example.com/' || i FROM generate_series(0, $1 - 1) i`, links); err != nil {
		b.Fatal(err)
	}
	for _, q := range strings.Split(seedRollupsSQL, ";\n\n") {
		if _, err := db.Pool.Exec(ctx, q, first, last); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, "VACUUM ANALYZE links, daily_stats, dimension_stats, hourly_stats"); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d links × %d days of rollups in %s", links, days, time.Since(start).Round(time.Second))

	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = 64, 64
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	env := setupPool(b, pool)

	// Sub-benchmarks, so the seeding above runs once.
	for _, bc := range []struct{ name, path, extra string }{
		{"link/utc", "/links/l%04d/stats", ""},
		{"link/tokyo", "/links/l%04d/stats", "&tz=Asia/Tokyo"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
				for pb.Next() {
					end := last.AddDate(0, 0, -rng.IntN(days-30))
					target := fmt.Sprintf(bc.path+"?start=%s&end=%s"+bc.extra, rng.IntN(links),
						end.AddDate(0, 0, -29).Format(dateLayout), end.Format(dateLayout))
					rec := httptest.NewRecorder()
					env.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
					if rec.Code != http.StatusOK {
						b.Errorf("%s: %d %s", target, rec.Code, rec.Body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkAggregatorTick measures how fast ticks add new raw clicks (batches of 20,000
// over 1,000 links, realistic dimensions and visitors) to the rollups; rows/s counts
// only the time spent in RunOnce.
func BenchmarkAggregatorTick(b *testing.B) {
	db := testenv.NewDB(b)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO links (slug, original_url)
SELECT 'l' || i, 'https://example.com/' || i FROM generate_series(0, 999) i`); err != nil {
		b.Fatal(err)
	}
	agg := newAggregator(b, db.Pool, AggregatorConfig{MaxRowsPerTick: 100_000})
	const batch = 20_000
	var rows int64
	for b.Loop() {
		b.StopTimer()
		if _, err := db.Pool.Exec(ctx, `
INSERT INTO click_logs (event_id, link_id, clicked_at, country, referer_host, browser, os, device, is_bot, visitor_hash)
SELECT gen_random_uuid(), 1 + (random() * 999)::int, now() - random() * interval '2 days',
       (ARRAY['US','DE','FR','JP','GB','BR','IN',''])[1 + (random() * 7)::int],
       (ARRAY['(direct)','t.co','news.ycombinator.com','google.com','reddit.com'])[1 + (random() * 4)::int],
       (ARRAY['Chrome','Firefox','Safari','Edge'])[1 + (random() * 3)::int],
       (ARRAY['Windows','macOS','Linux','Android','iOS'])[1 + (random() * 4)::int],
       (ARRAY['desktop','mobile','tablet'])[1 + (random() * 2)::int],
       random() < 0.1,
       sha224(((random() * 5000)::int)::text::bytea)
FROM generate_series(1, $1)`, batch); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for got := int64(0); got < batch; {
			n, err := agg.RunOnce(ctx)
			if err != nil {
				b.Fatal(err)
			}
			got += n
			rows += n
		}
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}
