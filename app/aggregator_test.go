package app

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

// A transaction left open in hop's database holds committed clicks out of the stats:
// /health names it and reports degraded once clicks have waited a minute. A
// transaction in another database of the cluster does not count.
func TestHealthNamesTransactionHoldingAggregation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := startHop(t, nil)
	link := h.createLink(t, map[string]any{"url": "https://example.com/held"})

	// Another database's open transaction, older than everything below: ignored.
	other := testenv.NewDB(t)
	otherTx, err := other.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer otherTx.Rollback(ctx)
	if _, err := otherTx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	aggregator := func() (status string, check map[string]any) {
		r := h.api(t, http.MethodGet, "/health", nil)
		mustStatus(t, r, http.StatusOK)
		j := r.JSON(t)
		return j["status"].(string), j["checks"].(map[string]any)["aggregator"].(map[string]any)
	}

	// An operator's session in hop's database, holding an xid, then a click made two
	// minutes ago and committed after it.
	held, err := h.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx)
	var pid float64
	if err := held.QueryRow(ctx, "SELECT pg_backend_pid(), pg_current_xact_id()").Scan(&pid, new(uint64)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DB.Pool.Exec(ctx, `
INSERT INTO click_logs (event_id, link_id, clicked_at)
SELECT gen_random_uuid(), id, now() - interval '2 minutes' FROM links WHERE slug = $1`, link["slug"]); err != nil {
		t.Fatal(err)
	}
	// hop's own short transactions (a tick, a batch) may be the oldest for a moment.
	var (
		status        string
		check, heldBy map[string]any
	)
	testenv.Eventually(t, time.Minute, "/health naming the open transaction", func() bool {
		status, check = aggregator()
		details, _ := check["details"].(map[string]any)
		heldBy, _ = details["held_by"].(map[string]any)
		return heldBy != nil && heldBy["pid"] == pid
	})
	if status != "degraded" || check["status"] != "degraded" || heldBy == nil || heldBy["pid"] != pid ||
		!strings.Contains(check["error"].(string), "held back") {
		t.Fatalf("/health while pid %v holds a click back: status %q, aggregator %v; want degraded, held_by pid %v",
			pid, status, check, pid)
	}
	if age, _ := heldBy["age_seconds"].(float64); age <= 0 {
		t.Errorf("held_by.age_seconds = %v, want > 0", heldBy["age_seconds"])
	}

	if err := held.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	h.waitStats(t, link["slug"].(string), func(s map[string]any) bool { return s["total_clicks"].(float64) == 1 })
	// /health is refreshed at most once a second, so the first answer may predate the rollback.
	testenv.Eventually(t, time.Minute, "/health after the transaction ended", func() bool {
		status, check = aggregator()
		return status == "ok"
	})
	if check["status"] != "ok" || check["details"].(map[string]any)["held_by"] != nil {
		t.Fatalf("/health after the transaction ended: status %q, aggregator %v; want ok and nothing held", status, check)
	}
}
