package stats

import (
	"strings"
	"testing"

	"github.com/hop-dev/hop/internal/testenv"
)

// /stats?domain= reads the domain's links through a links index and their rollups by
// link, in the plan a prepared statement may switch to after five runs (one that knows
// no parameter values), so its cost follows the domain's links, not every link's.
func TestDomainOverviewReadsOnlyTheDomainsLinks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	if _, err := b.pool.Exec(ctx, `
INSERT INTO domains (id, host, base_url) VALUES (2, 'a.example', 'https://a.example'), (3, 'b.example', 'https://b.example');
INSERT INTO links (slug, original_url, domain_id) SELECT 'l' || i, 'https://example.com', 1 + i % 3 FROM generate_series(1, 300) i;
INSERT INTO daily_stats (link_id, day, clicks) SELECT l.id, DATE '2025-01-01' + d, 1 FROM links l, generate_series(0, 59) d;
INSERT INTO hourly_stats (link_id, hour, clicks)
SELECT l.id, TIMESTAMPTZ '2025-02-01 00:00Z' + h * interval '1 hour', 1 FROM links l, generate_series(0, 47) h;
INSERT INTO dimension_stats (link_id, day, dimension, value, clicks)
SELECT l.id, DATE '2025-01-01' + d, v.dim, v.dim || (l.id % 5), 1
FROM links l, generate_series(0, 59) d, (VALUES ('country'), ('browser'), ('os'), ('utm_source')) v (dim);
-- links has statistics as soon as autovacuum has seen its first 50 rows; the rollups
-- have none yet.
ANALYZE links;`); err != nil {
		t.Fatal(err)
	}
	conn := testenv.Conn(t, b.pool, `SET plan_cache_mode = force_generic_plan; PREPARE overview AS `+overviewDomainSQL)
	// 30 days in a zone other than UTC, so the hourly branch reads a range too.
	plan := testenv.Plan(t, conn, `EXECUTE overview('2025-01-15', '2025-02-13', 10, '2025-01-14 15:00Z', '2025-02-13 15:00Z', 2,
		'2025-01-15', '2025-02-13', '2025-01-14 15:00Z', '2025-01-15 00:00Z', '2025-02-13 00:00Z', '2025-02-13 15:00Z')`)
	var bad []string
	for _, s := range []string{"Seq Scan on links", "daily_stats_day_idx", "Seq Scan on daily_stats", "Seq Scan on hourly_stats", "Seq Scan on dimension_stats"} {
		if strings.Contains(plan, s) {
			bad = append(bad, s)
		}
	}
	if len(bad) > 0 {
		t.Errorf("the domain overview reads more than the domain's links (%s):\n%s", strings.Join(bad, ", "), plan)
	}
}

// The overview's number of links counts live links, every domain's or one domain's,
// from the counts the links triggers keep (00029), whatever the clicks.
func TestOverviewCountsLiveLinks(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	if _, err := db.Pool.Exec(ctx, `
INSERT INTO domains (id, host, base_url) VALUES (2, 'a.example', 'https://a.example'), (3, 'empty.example', 'https://empty.example');
INSERT INTO links (slug, original_url, domain_id) SELECT 'l' || i, 'https://example.com', 1 + i % 2 FROM generate_series(1, 400) i;
UPDATE links SET deleted_at = now() WHERE id % 5 = 0;
UPDATE links SET domain_id = 2 WHERE domain_id = 1 AND id % 7 = 0 AND deleted_at IS NULL;`); err != nil {
		t.Fatal(err)
	}
	r := NewReader(Config{Domains: newDomains(t, db.Pool)}, db.Pool, nil, nil)
	for _, host := range []string{"", "localhost", "a.example", "empty.example"} {
		var want int64
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM links l JOIN domains d ON d.id = l.domain_id
WHERE l.deleted_at IS NULL AND ($1 = '' OR d.host = $1)`, host).Scan(&want); err != nil {
			t.Fatal(err)
		}
		o, err := r.Overview(ctx, host, Range{Start: "2025-01-01", End: "2025-01-31"})
		if err != nil {
			t.Fatalf("overview of %q: %v", host, err)
		}
		if o.Links != want {
			t.Errorf("overview of %q counts %d links, want %d live", host, o.Links, want)
		}
	}
}
