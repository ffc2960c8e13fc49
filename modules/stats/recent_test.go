package stats

import (
	"context"
	"testing"
	"time"
)

// RecentHours sums every link per hour over the last n hours, zero-filled, the current
// hour last; hours outside the window are left out.
func TestRecentHours(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `INSERT INTO links (id, slug, original_url) VALUES (1, 'aaa', 'https://example.com/a'), (2, 'bbb', 'https://example.com/b')`); err != nil {
		t.Fatal(err)
	}
	now := fixedNow.Truncate(time.Hour)
	_, err := b.pool.Exec(ctx, `INSERT INTO hourly_stats (link_id, hour, clicks, bot_clicks) VALUES
		(1, $1, 3, 1), (2, $1, 4, 0), (1, $2, 5, 2), (1, $3, 100, 100), (1, $4, 7, 0)`,
		now, now.Add(-23*time.Hour), now.Add(-24*time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	hours, err := b.h.reader.RecentHours(ctx, 24)
	if err != nil {
		t.Fatal(err)
	}
	if len(hours) != 24 {
		t.Fatalf("%d hours, want 24", len(hours))
	}
	want := map[int]HourStats{
		0:  {Hour: now.Add(-23 * time.Hour).UTC().Format(time.RFC3339), Clicks: 5, BotClicks: 2},
		23: {Hour: now.UTC().Format(time.RFC3339), Clicks: 7, BotClicks: 1},
	}
	var total int64
	for i, hs := range hours {
		total += hs.Clicks
		if w, ok := want[i]; ok && hs != w {
			t.Errorf("hour %d = %+v, want %+v", i, hs, w)
		}
	}
	if total != 12 {
		t.Errorf("%d clicks in 24 hours, want 12", total)
	}
	for _, n := range []int{0, 169} {
		if _, err := b.h.reader.RecentHours(ctx, n); err == nil {
			t.Errorf("RecentHours(%d) accepted", n)
		}
	}
}
