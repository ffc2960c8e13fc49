package domains

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/tally"
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

// A domain's link count in GET /domains comes from the counts the links triggers
// keep (00029), and equals a count over its live links after links are made, deleted,
// moved and removed by hand, and after their rows are folded.
func TestListCountsLiveLinks(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	s := NewStore(db.Pool)
	check := func(step string) {
		t.Helper()
		ds, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int64{}
		for _, d := range ds {
			got[d.Host] = d.Links
		}
		rows, err := db.Pool.Query(ctx, `SELECT d.host, count(l.id) FROM domains d
LEFT JOIN links l ON l.domain_id = d.id AND l.deleted_at IS NULL WHERE d.deleted_at IS NULL GROUP BY d.host`)
		if err != nil {
			t.Fatal(err)
		}
		want, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct {
			host string
			n    int64
		}, error) {
			var v struct {
				host string
				n    int64
			}
			return v, r.Scan(&v.host, &v.n)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d domains listed, want %d", step, len(got), len(want))
		}
		for _, w := range want {
			if got[w.host] != w.n {
				t.Fatalf("%s: %s has %d links, want %d (counted over the links)", step, w.host, got[w.host], w.n)
			}
		}
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO domains (id, host, base_url) VALUES (2, 'go.example.com', 'https://go.example.com'), (3, 'empty.example.com', 'https://empty.example.com');
INSERT INTO links (slug, original_url, domain_id) SELECT 's' || i, 'https://example.com', 1 + i % 2 FROM generate_series(1, 500) i`)
	check("created")
	exec(`UPDATE links SET deleted_at = now() WHERE id % 5 = 0`)
	check("deleted")
	exec(`UPDATE links SET domain_id = 3 WHERE domain_id = 2 AND id % 3 = 0`)
	check("moved")
	exec(`DELETE FROM links WHERE domain_id = 1 AND id % 7 = 0`)
	check("removed by hand")
	exec(`INSERT INTO links (slug, original_url, domain_id) SELECT 'n' || i, 'https://example.com', 2 FROM generate_series(1, 300) i`)
	check("300 more")
	if err := tally.NewFolder(db.Pool, []tally.Table{LinkCounts()}, 0, nil).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM domain_link_tallies`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows > 3 {
		t.Fatalf("%d rows left after folding hundreds of changes, want one per domain", rows)
	}
	check("after the fold")
}
