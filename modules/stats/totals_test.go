package stats

import (
	"context"
	"testing"
	"time"
)

func TestWholeMonths(t *testing.T) {
	t.Parallel()
	d := func(s string) time.Time {
		v, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct{ start, end, from, to string }{
		{"2026-02-15", "2026-04-10", "2026-03-01", "2026-04-01"},
		{"2026-03-01", "2026-03-31", "2026-03-01", "2026-04-01"},
		{"2026-03-01", "2026-03-20", "2026-03-21", "2026-03-21"}, // no whole month
		{"2026-03-05", "2026-03-20", "2026-03-21", "2026-03-21"},
		{"2025-12-04", "2026-12-03", "2026-01-01", "2026-12-01"},
		{"2025-12-01", "2026-12-31", "2025-12-01", "2027-01-01"},
		{"2026-03-15", "2026-03-15", "2026-03-16", "2026-03-16"},
	} {
		from, to := wholeMonths(d(tc.start), d(tc.end))
		if got := from.Format(time.DateOnly) + " " + to.Format(time.DateOnly); got != tc.from+" "+tc.to {
			t.Errorf("wholeMonths(%s, %s) = %s, want %s %s", tc.start, tc.end, got, tc.from, tc.to)
		}
	}
}

// The totals the overview reads follow every change to the rollups exactly: inserts,
// the aggregator's upserts (which are updates), and deletes, in one statement or many;
// campaign_totals takes the campaign breakdowns only.
func TestRollupTotalsFollowRollups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := b.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO links (id, slug, original_url) VALUES (1, 'aaa', 'https://example.com/a'), (2, 'bbb', 'https://example.com/b')`)
	exec(`INSERT INTO daily_stats (link_id, day, clicks, unique_visitors, bot_clicks) VALUES
		(1, '2026-01-31', 10, 5, 1), (1, '2026-02-01', 20, 8, 2), (2, '2026-02-01', 7, 7, 0), (2, '2026-02-28', 3, 1, 1)`)
	exec(`INSERT INTO daily_stats AS s (link_id, day, clicks, unique_visitors, bot_clicks) VALUES
		(1, '2026-02-01', 5, 1, 1), (2, '2026-03-01', 4, 4, 0)
		ON CONFLICT (link_id, day) DO UPDATE SET clicks = s.clicks + excluded.clicks,
		unique_visitors = s.unique_visitors + excluded.unique_visitors, bot_clicks = s.bot_clicks + excluded.bot_clicks`)
	exec(`UPDATE daily_stats SET clicks = clicks + 100 WHERE link_id = 2 AND day = '2026-02-28'`)
	exec(`DELETE FROM daily_stats WHERE link_id = 1 AND day = '2026-01-31'`)
	exec(`INSERT INTO hourly_stats (link_id, hour, clicks, bot_clicks) VALUES
		(1, '2026-02-01 10:00Z', 3, 1), (2, '2026-02-01 10:00Z', 4, 0), (2, '2026-02-01 11:00Z', 1, 1)`)
	exec(`DELETE FROM hourly_stats WHERE link_id = 2 AND hour = '2026-02-01 11:00Z'`)
	exec(`INSERT INTO dimension_stats (link_id, day, dimension, value, clicks) VALUES
		(1, '2026-02-01', 'utm_source', 'news', 4), (2, '2026-02-01', 'utm_source', 'news', 3),
		(1, '2026-02-01', 'utm_campaign', '(none)', 9), (1, '2026-02-01', 'country', 'DE', 8)`)
	exec(`INSERT INTO dimension_stats AS s (link_id, day, dimension, value, clicks) VALUES
		(1, '2026-02-01', 'utm_source', 'news', 2), (2, '2026-02-02', 'utm_medium', 'email', 5), (2, '2026-02-01', 'country', 'FR', 1)
		ON CONFLICT (link_id, day, dimension, value) DO UPDATE SET clicks = s.clicks + excluded.clicks`)
	exec(`UPDATE dimension_stats SET clicks = clicks + 10 WHERE link_id = 2 AND dimension = 'utm_medium'`)
	exec(`DELETE FROM dimension_stats WHERE link_id = 1 AND dimension = 'utm_campaign'`)

	var mismatches int
	for _, q := range []string{
		`SELECT count(*) FROM (SELECT day, sum(clicks), sum(unique_visitors), sum(bot_clicks) FROM daily_stats GROUP BY day
			EXCEPT SELECT day, clicks, unique_visitors, bot_clicks FROM daily_totals WHERE clicks <> 0 OR unique_visitors <> 0 OR bot_clicks <> 0) x`,
		`SELECT count(*) FROM (SELECT date_trunc('month', day)::date, link_id, sum(clicks) FROM daily_stats GROUP BY 1, 2
			EXCEPT SELECT month, link_id, clicks FROM monthly_stats WHERE clicks <> 0) x`,
		`SELECT count(*) FROM (SELECT hour, sum(clicks), sum(bot_clicks) FROM hourly_stats GROUP BY hour
			EXCEPT SELECT hour, clicks, bot_clicks FROM hourly_totals WHERE clicks <> 0 OR bot_clicks <> 0) x`,
		`SELECT count(*) FROM (SELECT day, dimension, value, sum(clicks) FROM dimension_stats
			WHERE dimension LIKE 'utm\_%' GROUP BY 1, 2, 3
			EXCEPT SELECT day, dimension, value, clicks FROM campaign_totals WHERE clicks <> 0) x`,
		`SELECT count(*) FROM campaign_totals WHERE clicks <> 0 AND (day, dimension, value) NOT IN (
			SELECT day, dimension, value FROM dimension_stats)`,
	} {
		if err := b.pool.QueryRow(ctx, q).Scan(&mismatches); err != nil {
			t.Fatal(err)
		}
		if mismatches != 0 {
			t.Errorf("%d rows differ: %s", mismatches, q)
		}
	}
	var feb1, month2 int64
	if err := b.pool.QueryRow(ctx, `SELECT (SELECT clicks FROM daily_totals WHERE day = '2026-02-01'),
		(SELECT clicks FROM monthly_stats WHERE month = '2026-02-01' AND link_id = 2)`).Scan(&feb1, &month2); err != nil {
		t.Fatal(err)
	}
	if feb1 != 32 || month2 != 110 {
		t.Errorf("2026-02-01 has %d clicks (want 32), link 2 in February %d (want 110)", feb1, month2)
	}
	var news, email, none int64
	if err := b.pool.QueryRow(ctx, `SELECT
		(SELECT clicks FROM campaign_totals WHERE day = '2026-02-01' AND dimension = 'utm_source' AND value = 'news'),
		(SELECT clicks FROM campaign_totals WHERE day = '2026-02-02' AND dimension = 'utm_medium' AND value = 'email'),
		(SELECT clicks FROM campaign_totals WHERE day = '2026-02-01' AND dimension = 'utm_campaign' AND value = '(none)')`).Scan(&news, &email, &none); err != nil {
		t.Fatal(err)
	}
	if news != 9 || email != 15 || none != 0 {
		t.Errorf("campaign totals: news %d (want 9), email %d (want 15), deleted (none) %d (want 0)", news, email, none)
	}
	var jan int64
	if err := b.pool.QueryRow(ctx, `SELECT clicks FROM daily_totals WHERE day = '2026-01-31'`).Scan(&jan); err != nil || jan != 0 {
		t.Errorf("a deleted day totals %d (%v), want 0", jan, err)
	}
}
