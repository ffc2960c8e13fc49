package stats

import (
	"context"
	"strings"
	"testing"

	"github.com/hop-dev/hop/internal/testenv"
)

// The overview's campaign breakdowns read the campaign totals of the range (a row per
// day and value), never the links' breakdown rows, and sum to what those hold.
func TestOverviewCampaignsReadTheirTotals(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `
INSERT INTO dimension_stats (link_id, day, dimension, value, clicks)
SELECT l, DATE '2025-01-01' + d, v.dim, v.dim || (l % 7), 1
FROM generate_series(1, 500) l, generate_series(0, 59) d,
     (VALUES ('country'), ('referer'), ('browser'), ('os'), ('device'), ('utm_source'), ('utm_medium'), ('utm_campaign')) v (dim)`); err != nil {
		t.Fatal(err)
	}
	q, err := parseRange(Range{Start: "2025-02-01", End: "2025-02-07"}.values(), fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	sql, args := overviewQuery(q)
	if plan := testenv.Plan(t, b.pool, sql, args...); !strings.Contains(plan, "campaign_totals") || strings.Contains(plan, "dimension_stats") {
		t.Errorf("overview plan does not read campaigns from campaign_totals alone:\n%s", plan)
	}
	o, err := b.h.reader.Overview(ctx, "", Range{Start: "2025-02-01", End: "2025-02-07", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	// 500 links over 7 days, values spread over 7 names by link: 500 clicks per value a
	// day, rounded by which links land on each name.
	var sum int64
	for _, n := range o.UTMSources {
		sum += n
	}
	if sum != 500*7 || len(o.UTMSources) != 7 || o.UTMSources["utm_source0"] != 71*7 {
		t.Errorf("utm_sources = %v (sum %d), want 7 values summing to 3500, utm_source0 = 497", o.UTMSources, sum)
	}
}
