package stats

import (
	"net/http"
	"testing"
)

// A cached response lives exactly as long as the link's rollups are unchanged: the
// tick that adds any click of the link — human or bot — makes the next request fresh.
func TestStatsResponseCacheIsNeverStale(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := createLink(t, b.pool, "cached")
	other := createLink(t, b.pool, "other")
	const url = "/links/cached/stats?start=2025-03-01&end=2025-03-15"
	totals := func() (int64, int64) {
		t.Helper()
		rec := b.get(t, url)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		s := decode[LinkStats](t, rec)
		return s.TotalClicks, s.BotClicks
	}
	if h, bots := totals(); h != 0 || bots != 0 {
		t.Fatalf("empty link: %d humans, %d bots", h, bots)
	}
	insertClicks(t, b.pool, []click{{link: id, at: utc("2025-03-10T08:00:00Z"), visitor: visitor(1)}})
	drain(t, b.agg)
	if h, _ := totals(); h != 1 {
		t.Fatalf("after a human click: %d", h)
	}
	totals() // served from the cache now
	insertClicks(t, b.pool, []click{{link: id, at: utc("2025-03-10T09:00:00Z"), bot: true, botReason: "crawler", device: "bot"}})
	drain(t, b.agg)
	if h, bots := totals(); h != 1 || bots != 1 {
		t.Fatalf("after a bot click: %d humans, %d bots", h, bots)
	}
	// Clicks of another link leave this link's cached response valid and correct.
	insertClicks(t, b.pool, []click{{link: other, at: utc("2025-03-10T09:00:00Z"), visitor: visitor(2)}})
	drain(t, b.agg)
	if h, bots := totals(); h != 1 || bots != 1 {
		t.Fatalf("after another link's click: %d humans, %d bots", h, bots)
	}
	// Deleting the link is seen at once.
	if _, err := b.pool.Exec(t.Context(), "UPDATE links SET deleted_at = now() WHERE id = $1", id); err != nil {
		t.Fatal(err)
	}
	if rec := b.get(t, url); rec.Code != http.StatusGone {
		t.Fatalf("deleted link: %d", rec.Code)
	}
}
