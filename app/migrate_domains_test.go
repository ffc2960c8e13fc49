package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/migrations"
)

// beforeDomains is the last migration before the domains ones (00023, 00024).
const beforeDomains = 22

// emptyDB creates a database with no schema, dropped when t ends.
func emptyDB(t *testing.T) *testenv.DB {
	t.Helper()
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, testenv.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "hop_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	url := testenv.WithDatabase(testenv.AdminURL(), name)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, testenv.AdminURL())
		if err != nil {
			t.Errorf("drop test database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return &testenv.DB{Pool: pool, URL: url, Name: name}
}

// Links and clicks made before domains existed keep working after the domain
// migrations: every slug redirects as before, counts its old clicks and new ones, and
// sits on the default domain.
func TestDomainMigrationKeepsExistingLinks(t *testing.T) {
	t.Parallel()
	db := emptyDB(t)
	ctx := t.Context()
	p, err := migrations.Provider(db.Pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, beforeDomains); err != nil {
		t.Fatal(err)
	}
	p.Close()

	// 40 links, link i with i%4 clicks a day ago; the last one deleted.
	const n = 40
	for i := range n {
		var id int64
		if err := db.Pool.QueryRow(ctx, `INSERT INTO links (slug, original_url) VALUES ($1, $2) RETURNING id`,
			fmt.Sprintf("old%02d", i), fmt.Sprintf("https://example.com/%d", i)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO click_logs (event_id, link_id, clicked_at, user_agent, browser)
			SELECT gen_random_uuid(), $1, now() - interval '1 day', 'Mozilla/5.0 Firefox/127.0', 'Firefox' FROM generate_series(1, $2)`,
			id, i%4); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET deleted_at = now() WHERE slug = $1`, fmt.Sprintf("old%02d", n-1)); err != nil {
		t.Fatal(err)
	}

	h := startWith(t, db, nil, testConfig(t, db, nil)) // migrates up at start
	var domainless, invalid int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE domain_id IS DISTINCT FROM 1) FROM links`).Scan(&domainless); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
		WHERE c.relname IN ('links_domain_slug_key', 'links_live_domain_id_idx') AND i.indisvalid`).Scan(&invalid); err != nil {
		t.Fatal(err)
	}
	if domainless != 0 || invalid != 2 {
		t.Fatalf("after migrating: %d links off the default domain, %d of 2 valid new indexes", domainless, invalid)
	}

	ua := "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
	for i := range n - 1 {
		slug := fmt.Sprintf("old%02d", i)
		mustVisit(t, h, "hop.test", "/"+slug, http.StatusFound, fmt.Sprintf("https://example.com/%d", i), "User-Agent", ua)
		l := h.api(t, http.MethodGet, "/links/"+slug, nil)
		mustStatus(t, l, http.StatusOK)
		if m := l.JSON(t); m["domain"] != "hop.test" || m["short_url"] != "https://hop.test/"+slug {
			t.Fatalf("migrated link: %s", l.Body)
		}
	}
	mustVisit(t, h, "hop.test", fmt.Sprintf("/old%02d", n-1), http.StatusGone, "")
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://evil.example/", "slug": fmt.Sprintf("old%02d", n-1)}), http.StatusConflict)

	// Every link counts its old clicks and the one just made.
	start := time.Now().UTC().AddDate(0, 0, -3).Format("2006-01-02")
	for i := range n - 1 {
		slug := fmt.Sprintf("old%02d", i)
		want := float64(i%4 + 1)
		testenv.Eventually(t, 20*time.Second, "clicks of "+slug, func() bool {
			r := h.api(t, http.MethodGet, "/links/"+slug+"/stats?start="+start, nil)
			return r.Status == http.StatusOK && r.JSON(t)["total_clicks"] == want
		})
	}
}
