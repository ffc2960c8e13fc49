package domains

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/testenv"
)

// Removing a domain counts its live links through links_live_domain_id_idx and asks
// the (domain_id, slug) key only whether any link exists, so a domain whose links
// were all deleted (what the 409 tells the user to do first) is removed without
// reading them, while its row is locked against new links. The tables have no
// statistics, as in a hop's first minutes or after a bulk import.
func TestDeleteCountsOnlyLiveLinks(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	s := NewStore(db.Pool)
	// 4,000 links, half on the default domain; of the branded domain's, every tenth
	// live. A third domain has no links.
	if _, err := db.Pool.Exec(ctx, `
INSERT INTO domains (id, host, base_url) VALUES (2, 'go.example.com', 'https://go.example.com'), (3, 'empty.example.com', 'https://empty.example.com');
INSERT INTO links (slug, original_url, domain_id, deleted_at)
SELECT 's' || i, 'https://example.com', CASE WHEN i % 2 = 0 THEN 1 ELSE 2 END, CASE WHEN i % 20 <> 1 THEN now() END
FROM generate_series(1, 4000) i`); err != nil {
		t.Fatal(err)
	}

	if err := s.Delete(ctx, "go.example.com"); !errors.Is(err, ErrHasLinks) || !strings.Contains(err.Error(), "still has 200 links") {
		t.Fatalf("a domain with live links: %v, want ErrHasLinks counting 200", err)
	}
	conn := testenv.Conn(t, db.Pool, `PREPARE count_links AS `+countLinks)
	for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		plan := testenv.Plan(t, conn, `EXECUTE count_links(2)`)
		if !strings.Contains(plan, "links_live_domain_id_idx") || strings.Contains(plan, "Seq Scan on links") {
			t.Errorf("%s: live links counted other than by links_live_domain_id_idx:\n%s", mode, plan)
		}
	}

	if _, err := db.Pool.Exec(ctx, `UPDATE links SET deleted_at = now() WHERE domain_id = 2 AND deleted_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"go.example.com", "empty.example.com"} {
		if err := s.Delete(ctx, host); err != nil {
			t.Fatalf("delete %s: %v", host, err)
		}
	}
	// The domain whose deleted links reserve slugs keeps its row, marked removed;
	// the one that never had links is gone.
	var removed bool
	if err := db.Pool.QueryRow(ctx, `SELECT deleted_at IS NOT NULL FROM domains WHERE id = 2`).Scan(&removed); err != nil || !removed {
		t.Fatalf("domain with deleted links: removed = %v, %v; want its row kept, marked removed", removed, err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT true FROM domains WHERE id = 3`).Scan(&removed); !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("domain without links: %v, want its row deleted", err)
	}
	if err := s.Delete(ctx, "go.example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a removed domain: %v, want ErrNotFound", err)
	}
}
