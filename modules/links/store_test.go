package links

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/tally"
	"github.com/hop-dev/hop/internal/testenv"
)

// newStore is a store on a database of the test's own.
func newStore(t *testing.T) (*Store, *testenv.DB) {
	t.Helper()
	db := testenv.NewDB(t)
	s, err := NewStore(db.Pool, "secret", 6)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

func TestGeneratedSlugSkipsCustomSlugThatTookIt(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	first, err := s.create(ctx, newLink{URL: "https://example.com/1", RedirectStatus: 302})
	if err != nil {
		t.Fatal(err)
	}
	// A custom link (which itself consumes id first.ID+1) takes the slug the
	// generator will produce for the id after it.
	next, err := s.slug.slug(first.ID + 2)
	if err != nil {
		t.Fatal(err)
	}
	custom, err := s.create(ctx, newLink{URL: "https://example.com/custom", Slug: next, RedirectStatus: 302})
	if err != nil {
		t.Fatal(err)
	}
	if custom.ID != first.ID+1 {
		t.Fatalf("custom link got id %d, want %d", custom.ID, first.ID+1)
	}
	got, err := s.create(ctx, newLink{URL: "https://example.com/2", RedirectStatus: 302})
	if err != nil {
		t.Fatalf("generated create after a collision: %v", err)
	}
	if got.Slug == next || got.ID != first.ID+3 {
		t.Fatalf("generated link %d %q: want id %d and a slug other than %q", got.ID, got.Slug, first.ID+3, next)
	}
}

func TestSlugsDependOnSecret(t *testing.T) {
	a, _ := newSlugger("one", 6)
	b, _ := newSlugger("two", 6)
	a2, _ := newSlugger("one", 6)
	sa, _ := a.slug(42)
	sb, _ := b.slug(42)
	sa2, _ := a2.slug(42)
	if sa == sb {
		t.Fatalf("secrets one and two give the same slug %q", sa)
	}
	if sa != sa2 {
		t.Fatalf("same secret gave %q and %q", sa, sa2)
	}
	seen := map[string]bool{}
	for id := int64(1); id <= 5000; id++ {
		s, err := a.slug(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) < 6 || seen[s] || !ValidSlugSyntax(s) {
			t.Fatalf("slug %q for id %d: too short, duplicate or invalid", s, id)
		}
		seen[s] = true
	}
}

// GET /links with a domain or a tag is planned with that filter's value on every call.
// listLinks makes every filter optional; as a prepared statement, PostgreSQL may switch
// it after five runs to a generic plan, made without the values, which can use neither
// the domain's index nor the tags' and reads every live link (0.4-0.7 s at 1M links
// while the table has no statistics). So the statement is never kept prepared on the
// connection, and planned with its values a domain's list walks the domain's index.
// (Which way a tag is read is the planner's call from the statistics.)
func TestListIsPlannedWithItsFilters(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	// 20,000 links on the default domain, 50 older ones on another, 50 with a rare
	// tag; no ANALYZE, as in a hop's first minutes.
	if _, err := db.Pool.Exec(ctx, `
INSERT INTO domains (id, host, base_url) VALUES (2, 'go.example', 'https://go.example');
INSERT INTO links (slug, original_url, domain_id, tags)
SELECT 's' || i, 'https://example.com/' || i, CASE WHEN i <= 50 THEN 2 ELSE 1 END,
       CASE WHEN i % 400 = 0 THEN '{rare,common}'::text[] WHEN i % 2 = 0 THEN '{common}' ELSE '{}' END
FROM generate_series(1, 20050) i;
`); err != nil {
		t.Fatal(err)
	}
	// One connection: the one the statements below are looked for on.
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, err := NewStore(pool, "secret", 6)
	if err != nil {
		t.Fatal(err)
	}
	filters := map[string]listQuery{
		"domain": {Limit: 21, Domain: 2},
		"tag":    {Limit: 21, Tag: "rare"},
	}
	for name, q := range filters {
		for range 6 { // past the five runs after which a prepared statement may go generic
			got, err := s.list(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 21 {
				t.Fatalf("%s: %d links, want 21", name, len(got))
			}
		}
	}
	var prepared int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE statement = $1`, listLinks).Scan(&prepared); err != nil {
		t.Fatal(err)
	}
	if prepared != 0 {
		t.Errorf("listLinks is kept prepared on the connection: PostgreSQL may run it with a generic plan")
	}
	for name, q := range filters {
		plan := testenv.Plan(t, pool, listLinks, pgx.QueryExecModeDescribeExec, q.Before, q.Q, q.Tag, q.Limit, q.Status, q.Domain)
		if strings.Contains(plan, "Seq Scan on links") || name == "domain" && !strings.Contains(plan, "links_live_domain_id_idx") {
			t.Errorf("%s: links are read other than by an index for the filter:\n%s", name, plan)
		}
	}
}

// GET /tags reads the counts the links triggers keep (00029). After every kind of
// change, by the API or by hand in SQL (truncate included), they equal a count over the live links, and
// updates that move no link in or out of a count (the aggregator's, the click limit's,
// a new target) add nothing for the next read to sum.
func TestTagCountsFollowEveryChange(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := t.Context()
	check := func(step string) {
		t.Helper()
		got, err := s.tags(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.Pool.Query(ctx, `SELECT t, count(*) FROM links, unnest(tags) AS t
WHERE deleted_at IS NULL GROUP BY t ORDER BY count(*) DESC, t`)
		if err != nil {
			t.Fatal(err)
		}
		want, err := pgx.CollectRows(rows, pgx.RowToStructByPos[TagCount])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: tags = %v, want %v (counted over the links)", step, got, want)
		}
	}
	tallyRows := func() (n int) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM tag_link_tallies`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	create := func(slug string, tags ...string) (Link, error) {
		return s.create(ctx, newLink{Slug: slug, URL: "https://example.com/" + slug, RedirectStatus: 302, Tags: tags})
	}

	one, err := create("one", "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := create("two", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := create("three"); err != nil {
		t.Fatal(err)
	}
	if _, err := create("two", "z"); !errors.Is(err, ErrSlugTaken) {
		t.Fatalf("taken slug: %v, want ErrSlugTaken", err)
	}
	check("created")

	tags := []string{"b", "c"}
	if _, err := s.update(ctx, 0, "two", linkPatch{Tags: &tags}); err != nil {
		t.Fatal(err)
	}
	check("tags changed")

	before := tallyRows()
	url := "https://example.com/elsewhere"
	if _, err := s.update(ctx, 0, "two", linkPatch{URL: &url, Tags: &tags}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET total_clicks = total_clicks + 1, stats_version = stats_version + 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeClick(ctx, one.ID); err != nil {
		t.Fatal(err)
	}
	if after := tallyRows(); after != before {
		t.Fatalf("updates that change no count added %d rows", after-before)
	}
	check("other columns changed")

	if err := s.delete(ctx, 0, "one"); err != nil {
		t.Fatal(err)
	}
	check("deleted")
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET tags = '{a,a}' WHERE slug = 'one'`); err != nil {
		t.Fatal(err)
	}
	check("a deleted link's tags changed")
	if _, err := db.Pool.Exec(ctx, `DELETE FROM links WHERE slug = 'two';
INSERT INTO links (slug, original_url, tags) VALUES ('four', 'https://example.com', '{c,d}')`); err != nil {
		t.Fatal(err)
	}
	check("deleted and inserted by hand")

	// Concurrent writers, and reads while they write.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 100 {
				slug := fmt.Sprintf("w%d-%d", w, i)
				if _, err := create(slug, fmt.Sprintf("t%d", i%7), "shared"); err != nil {
					t.Error(err)
					return
				}
				if i%4 == 0 {
					if err := s.delete(ctx, 0, slug); err != nil {
						t.Error(err)
						return
					}
				}
				if i%25 == 0 {
					if _, err := s.tags(ctx); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	check("after concurrent writers")
	if err := tally.NewFolder(db.Pool, []tally.Table{TagCounts()}, 0, nil).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the fold")
	if n := tallyRows(); n > 20 {
		t.Fatalf("%d rows after folding 400 changes, want one per tag", n)
	}
	if _, err := db.Pool.Exec(ctx, `TRUNCATE links CASCADE`); err != nil {
		t.Fatal(err)
	}
	check("truncated by hand")
}

// A limit set on a link without one starts from every click stored: counted ones and
// ones the aggregator has not counted yet, each once, also when an aggregator batch
// with clicks of the link commits while the limit waits for the link's row.
func TestLimitStartsFromEveryStoredClickOnce(t *testing.T) {
	t.Parallel()
	s, db := newStore(t)
	ctx := t.Context()
	l, err := s.create(ctx, newLink{URL: "https://example.com/", Slug: "capped", RedirectStatus: 302})
	if err != nil {
		t.Fatal(err)
	}
	// 5 clicks (2 by bots) already counted, as the aggregator leaves them, then 4 stored
	// after its watermark.
	exec := func(db interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}, sqls ...string) {
		t.Helper()
		for _, q := range sqls {
			if _, err := db.Exec(ctx, q, l.ID); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		exec(tx,
			`INSERT INTO click_logs (event_id, link_id, clicked_at, is_bot) SELECT gen_random_uuid(), $1, now(), i <= 2 FROM generate_series(1, 5) i`,
			`INSERT INTO daily_stats (link_id, day, clicks, bot_clicks) VALUES ($1, current_date, 3, 2)`,
			`UPDATE links SET total_clicks = 3 WHERE id = $1`,
			`UPDATE aggregator_state SET watermark = (pg_current_xact_id()::text::numeric + 1)::text::xid8 WHERE id = 1 AND $1 > 0`)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	exec(db.Pool, `INSERT INTO click_logs (event_id, link_id, clicked_at) SELECT gen_random_uuid(), $1, now() FROM generate_series(1, 4)`)
	// An aggregator batch counting those 4 holds the link's row while the limit is set.
	agg, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Rollback(ctx)
	exec(agg,
		`UPDATE daily_stats SET clicks = clicks + 4 WHERE link_id = $1`,
		`UPDATE links SET total_clicks = total_clicks + 4 WHERE id = $1`,
		`UPDATE aggregator_state SET watermark = (pg_current_xact_id()::text::numeric + 1)::text::xid8 WHERE id = 1 AND $1 > 0`)
	limit := int64(20)
	limited := new(*int64)
	*limited = &limit
	type result struct {
		l   Link
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := s.update(ctx, 0, "capped", linkPatch{MaxClicks: limited})
		done <- result{l, err}
	}()
	testenv.Eventually(t, 10*time.Second, "the limit waiting for the link's row", func() bool {
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND query = $1`, lockForLimitSQL).Scan(&n)
		return err == nil && n == 1
	})
	if err := agg.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.l.ClicksUsed != 9 || r.l.MaxClicks == nil || *r.l.MaxClicks != 20 {
		t.Fatalf("clicks_used %d, max_clicks %v; want the 9 clicks stored, each once, and 20", r.l.ClicksUsed, r.l.MaxClicks)
	}
}

// A PATCH of a slug that is not there, or deleted, answers 404 or 410 on a pool of one
// connection: it never waits for a second connection while holding the first.
func TestUpdateOfAMissingLinkNeedsOneConnection(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := NewStore(pool, "secret", 6)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.create(ctx, newLink{URL: "https://example.com/", Slug: "gone-one", RedirectStatus: 302}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE links SET deleted_at = now() WHERE slug = 'gone-one'`); err != nil {
		t.Fatal(err)
	}
	limit := int64(5)
	limited := new(*int64)
	*limited = &limit
	for slug, want := range map[string]error{"no-such-link": ErrNotFound, "gone-one": ErrGone} {
		for _, p := range []linkPatch{{MaxClicks: limited}, {Tags: &[]string{"x"}}} {
			if _, err := s.update(ctx, 0, slug, p); !errors.Is(err, want) {
				t.Errorf("PATCH %s (limit %v): %v, want %v", slug, p.MaxClicks != nil, err, want)
			}
		}
	}
}
