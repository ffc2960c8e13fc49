package stats

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/testenv"
)

// seedRollupsSQL fills the rollups of every link for the days [$1, $2], inserted day by
// day across links as the aggregator would, with ~21 dimension rows per link and day
// drawn from value pools so a 30-day window sees dozens of distinct values. Three are
// campaign rows: the aggregator writes one of each for every human click ('(none)'
// when the parameter is absent).
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
                   ('os', 'o', 6, 3, 1), ('device', 'd', 4, 3, 1), ('utm_source', 's', 6, 1, 1),
                   ('utm_medium', 'm', 4, 1, 1), ('utm_campaign', 'u', 12, 1, 1)) v (dim, prefix, pool, n, step)
CROSS JOIN LATERAL generate_series(0, v.n - 1) k
ORDER BY d, l.id;

INSERT INTO hourly_stats (link_id, hour, clicks, bot_clicks)
SELECT l.id, d + h * interval '1 hour', 5 + (l.id + h) % 10, 0
FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 day') d
CROSS JOIN links l CROSS JOIN generate_series(8, 23, 3) h
ORDER BY d, l.id, h`

// BenchmarkStatsHandler serves GET /links/{slug}/stats over 1,000 links × 365 days of
// rollups, with 64 concurrent requests on a 64-connection pool, through the Echo router
// (no network), with and without each of the handler's two caches, so each can be
// seen to earn its keep. Workloads: random (a random link and 30-day UTC window: what
// the held rollups serve), repeat (each client polls one link's default range, as a
// dashboard does: what the response cache serves) and tokyo (random windows in
// Asia/Tokyo, which always read PostgreSQL). Variants run alternately, statsRounds
// times; with -v the medians are logged. ns/op is the inverse of throughput.
func BenchmarkStatsHandler(b *testing.B) {
	db := testenv.NewDB(b)
	ctx := context.Background()
	const links, days, statsRounds = 1000, 365, 3
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
	// A budget that holds every link, read whole before measuring. The response cache
	// is off meanwhile: its hits never ask for the held rollups.
	h := NewHandler(NewReader(Config{HeldBytes: 64 << 20, Domains: newDomains(b, pool)}, pool, nil, nil))
	h.reader.now = env.h.reader.now
	b.Cleanup(h.reader.rollups.wait)
	held, cached := h.reader.rollups, env.h.cache
	env.h.reader.rollups, env.h.cache = held, newResponseCache(0)
	for pass := 0; ; pass++ {
		for i := range links {
			env.get(b, fmt.Sprintf("/links/l%04d/stats", i))
		}
		held.wait()
		n, bytes := held.holding()
		if n == links {
			b.Logf("holding every link's rollups: %d bytes", bytes)
			break
		}
		if pass == 100 {
			b.Fatalf("holding %d of %d links after %d passes", n, links, pass)
		}
	}

	variants := []struct {
		name string
		set  func()
	}{
		{"both", func() { env.h.reader.rollups, env.h.cache = held, cached }},
		{"no-response-cache", func() { env.h.reader.rollups, env.h.cache = held, newResponseCache(0) }},
		{"no-held-rollups", func() { env.h.reader.rollups, env.h.cache = newRollupCache(0, nil), cached }},
		{"neither", func() { env.h.reader.rollups, env.h.cache = newRollupCache(0, nil), newResponseCache(0) }},
	}
	rates := map[string][]float64{}
	for round := range statsRounds {
		for _, workload := range []string{"random", "repeat", "tokyo"} {
			for i := range variants {
				v := variants[(i+round)%len(variants)] // alternate, so drift hits every variant alike
				v.set()
				name := workload + "/" + v.name
				var rps float64 // of the last, longest run
				b.Run(name, func(b *testing.B) {
					b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
					b.RunParallel(func(pb *testing.PB) {
						rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
						own := rng.IntN(links)
						for pb.Next() {
							target := fmt.Sprintf("/links/l%04d/stats", own)
							if workload != "repeat" {
								end := last.AddDate(0, 0, -rng.IntN(days-30))
								target = fmt.Sprintf("/links/l%04d/stats?start=%s&end=%s", rng.IntN(links),
									end.AddDate(0, 0, -29).Format(dateLayout), end.Format(dateLayout))
								if workload == "tokyo" {
									target += "&tz=Asia/Tokyo"
								}
							}
							rec := httptest.NewRecorder()
							env.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
							if rec.Code != http.StatusOK {
								b.Errorf("%s: %d %s", target, rec.Code, rec.Body)
								return
							}
						}
					})
					rps = float64(b.N) / b.Elapsed().Seconds()
					b.ReportMetric(rps, "req/s")
				})
				rates[name] = append(rates[name], rps)
			}
		}
	}
	names := slices.Sorted(maps.Keys(rates))
	for _, name := range names {
		b.Logf("%-28s median %6.0f req/s of %d runs", name, median(rates[name]), len(rates[name]))
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Sorted(slices.Values(xs))
	return xs[len(xs)/2]
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

// BenchmarkOverview times GET /stats (the overview a dashboard opens on) over 1,000
// links × 365 days of rollups, one request at a time through the router: over the
// whole year and over the default 30 days. It reports the median server time of the
// runs (-v logs it); b.N requests each.
func BenchmarkOverview(b *testing.B) {
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
	if _, err := db.Pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d links × %d days of rollups in %s", links, days, time.Since(start).Round(time.Second))
	env := setupPool(b, db.Pool)
	for _, r := range []struct{ name, query string }{
		{"365-days", fmt.Sprintf("?start=%s&end=%s", first.Format(dateLayout), last.Format(dateLayout))},
		{"30-days", ""},
		// In another zone the series and the top links read hourly rollups as well.
		{"365-days-New_York", fmt.Sprintf("?start=%s&end=%s&tz=America/New_York", first.Format(dateLayout), last.Format(dateLayout))},
		{"30-days-New_York", "?tz=America/New_York"},
	} {
		b.Run(r.name, func(b *testing.B) {
			var took []float64
			for b.Loop() {
				t0 := time.Now()
				rec := httptest.NewRecorder()
				env.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats"+r.query, nil))
				took = append(took, float64(time.Since(t0).Microseconds())/1000)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
			b.ReportMetric(median(took), "median-ms")
			b.Logf("GET /stats%s: median %.1f ms of %d", r.query, median(took), len(took))
		})
	}
}
