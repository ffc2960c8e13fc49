package migrations_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/migrations"
)

// TestMain removes this package's template database once its tests are done.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Every BRIN index asks for each block range to be summarized as soon as it is filled:
// one that waits for VACUUM is read whole for every range filled since.
func TestBRINIndexesAutosummarize(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	rows, err := db.Pool.Query(t.Context(), `
SELECT c.relname, 'autosummarize=on' = ANY(coalesce(c.reloptions, '{}'))
FROM pg_class c JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE am.amname = 'brin' AND n.nspname = current_schema()
ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var name string
	var auto bool
	if _, err := pgx.ForEachRow(rows, []any{&name, &auto}, func() error {
		names = append(names, name)
		if !auto {
			t.Errorf("BRIN index %s does not autosummarize", name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) < 3 {
		t.Errorf("BRIN indexes = %v, want click_logs', daily_visitors' and hourly_stats' at least", names)
	}
}

// 00029 counts the links that exist when it runs, and from then on its triggers count
// every change: an upgraded hop lists the same counts as a count over its links.
func TestLinkTalliesCountLinksMadeBeforeTheUpgrade(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	p, err := migrations.Provider(db.Pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.DownTo(ctx, 28); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `
INSERT INTO domains (id, host, base_url) VALUES (2, 'go.example.com', 'https://go.example.com');
INSERT INTO links (slug, original_url, domain_id, tags, deleted_at)
SELECT 's' || i, 'https://example.com', 1 + i % 2, ARRAY['t' || i % 3, 'all'], CASE WHEN i % 4 = 0 THEN now() END
FROM generate_series(1, 200) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 29); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET deleted_at = now() WHERE id % 5 = 0 AND deleted_at IS NULL;
INSERT INTO links (slug, original_url, tags) VALUES ('after', 'https://example.com', '{all}')`); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ kept, counted string }{
		{`SELECT domain_id::text, sum(links) FROM domain_link_tallies GROUP BY 1 HAVING sum(links) <> 0 ORDER BY 1`,
			`SELECT domain_id::text, count(*) FROM links WHERE deleted_at IS NULL GROUP BY 1 ORDER BY 1`},
		{`SELECT tag, sum(links) FROM tag_link_tallies GROUP BY 1 HAVING sum(links) <> 0 ORDER BY 1`,
			`SELECT t, count(*) FROM links, unnest(tags) AS t WHERE deleted_at IS NULL GROUP BY 1 ORDER BY 1`},
	} {
		kept, counted := pairs(t, db, c.kept), pairs(t, db, c.counted)
		if kept != counted {
			t.Errorf("kept counts %s, counted over the links %s", kept, counted)
		}
	}
}

func pairs(t *testing.T, db *testenv.DB, query string) string {
	t.Helper()
	rows, err := db.Pool.Query(t.Context(), query)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out []string
		key string
		n   int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&key, &n}, func() error {
		out = append(out, fmt.Sprintf("%s=%d", key, n))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}

// Webhook delivery bodies are compressed with lz4 (00030), which the PostgreSQL the
// tests run on has.
func TestWebhookBodiesCompressWithLZ4(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	var method string
	if err := db.Pool.QueryRow(ctx, `
WITH w AS (INSERT INTO webhooks (url, secret, cursor_xid) VALUES ('https://example.com', 's', '0') RETURNING id),
d AS (INSERT INTO webhook_deliveries (webhook_id, kind, status, body, events)
      SELECT id, 'events', 'delivered', convert_to(repeat('{"type":"click"},', 2000), 'UTF8'), 2000 FROM w RETURNING id)
SELECT 1 FROM d`).Scan(new(int)); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT pg_column_compression(body) FROM webhook_deliveries`).Scan(&method); err != nil {
		t.Fatal(err)
	}
	// A server built without lz4 lists no lz4 among default_toast_compression's values,
	// and the migration then leaves bodies on pglz rather than failing.
	var lz4 bool
	if err := db.Pool.QueryRow(ctx, `SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'`).Scan(&lz4); err != nil {
		t.Fatal(err)
	}
	want := "pglz"
	if lz4 {
		want = "lz4"
	}
	if method != want {
		t.Fatalf("a delivery body is compressed with %q, want %q (server has lz4: %v)", method, want, lz4)
	}
}

// The tally tables, whose folds delete every row they sum, are vacuumed after 1,000
// dead rows, not after a fifth of the table: reads scan the dead rows until then.
func TestTallyTablesVacuumEarly(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	got := pairs(t, db, `SELECT relname, count(*) FROM pg_class, unnest(reloptions) o
WHERE relname LIKE '%link_tallies' AND o IN ('autovacuum_vacuum_scale_factor=0', 'autovacuum_vacuum_threshold=1000')
GROUP BY relname ORDER BY relname`)
	if want := "domain_link_tallies=2 tag_link_tallies=2"; got != want {
		t.Fatalf("tally tables' autovacuum settings: %q, want %q", got, want)
	}
}
