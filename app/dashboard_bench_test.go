package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"
	"time"
)

// seedYearSQL gives 1,000 links a year of rollups ending today, daily, hourly and
// breakdowns (~18 rows per link and day), as the aggregator would have written them.
const seedYearSQL = `
INSERT INTO links (slug, original_url, tags)
SELECT 'l' || lpad(i::text, 4, '0'), 'https://example.com/' || i, ARRAY['t' || (i % 10)] FROM generate_series(0, 999) i;

INSERT INTO daily_stats (link_id, day, clicks, unique_visitors, bot_clicks)
SELECT l.id, d::date, 50 + (l.id * 7 + extract(doy FROM d)::int) % 100, 20 + (l.id + extract(doy FROM d)::int) % 30, l.id % 5
FROM generate_series(current_date - 364, current_date, interval '1 day') d CROSS JOIN links l
ORDER BY d, l.id;

INSERT INTO dimension_stats (link_id, day, dimension, value, clicks)
SELECT l.id, d::date, v.dim, v.prefix || ((l.id + extract(doy FROM d)::int * v.step + k) % v.pool), 1 + (l.id + k) % 20
FROM generate_series(current_date - 364, current_date, interval '1 day') d
CROSS JOIN links l
CROSS JOIN (VALUES ('country', 'c', 40, 5, 3), ('referer', 'r', 100, 4, 7), ('browser', 'b', 8, 3, 1),
                   ('os', 'o', 6, 3, 1), ('device', 'd', 4, 3, 1)) v (dim, prefix, pool, n, step)
CROSS JOIN LATERAL generate_series(0, v.n - 1) k
ORDER BY d, l.id;

INSERT INTO hourly_stats (link_id, hour, clicks, bot_clicks)
SELECT l.id, d + h * interval '1 hour', 5 + (l.id + h) % 10, 0
FROM generate_series((current_date - 364)::timestamptz, current_date::timestamptz, interval '1 day') d
CROSS JOIN links l CROSS JOIN generate_series(8, 23, 3) h
ORDER BY d, l.id, h;

UPDATE links l SET total_clicks = s.clicks FROM (SELECT link_id, sum(clicks) AS clicks FROM daily_stats GROUP BY link_id) s
WHERE s.link_id = l.id;

VACUUM ANALYZE`

// BenchmarkDashboardPages times the dashboard's pages, signed in, one request at a
// time over loopback against a running hop, at 1,000 links × 365 days of rollups:
// the overview, a link page over its default 30 days and over the whole year, and
// the overview filtered by a tag. -v logs each page's median.
func BenchmarkDashboardPages(b *testing.B) {
	h := startHop(b, nil)
	ctx := context.Background()
	start := time.Now()
	for _, q := range strings.Split(seedYearSQL, ";\n\n") {
		if _, err := h.DB.Pool.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("seeded 1,000 links × 365 days in %s", time.Since(start).Round(time.Second))
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	h.signIn(b, client, h.Key)
	year := fmt.Sprintf("?start=%s&end=%s", time.Now().UTC().AddDate(0, 0, -364).Format(time.DateOnly), time.Now().UTC().Format(time.DateOnly))
	for _, p := range []struct{ name, path string }{
		{"overview", "/dashboard"},
		{"link-30-days", "/dashboard/links/l0500"},
		{"link-365-days", "/dashboard/links/l0501" + year},
		{"overview-tag", "/dashboard?tag=t3"},
	} {
		b.Run(p.name, func(b *testing.B) {
			var took []float64
			for b.Loop() {
				t0 := time.Now()
				resp, err := client.Get(h.URL + p.path)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				took = append(took, float64(time.Since(t0).Microseconds())/1000)
				if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<h1") {
					b.Fatalf("%s: %d %.300s", p.path, resp.StatusCode, body)
				}
			}
			first := took[0] // before the stats caches hold anything of this page
			slices.Sort(took)
			b.ReportMetric(took[len(took)/2], "median-ms")
			b.Logf("GET %s: first %.1f ms, median %.1f ms of %d", p.path, first, took[len(took)/2], len(took))
		})
	}
}
