package domains

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/testenv"
)

// The dashboard's domain picker is on every page: Choices serves it from the
// registry's memory, default domain first, then by host, without link counts, so a
// page view never counts a million links. It keeps answering with the database gone.
func TestChoicesComeFromMemory(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `
INSERT INTO domains (host, base_url) VALUES ('zz.example.com', 'https://zz.example.com'), ('aa.example.com', 'https://aa.example.com');
INSERT INTO domains (host, base_url, deleted_at) VALUES ('gone.example.com', 'https://gone.example.com', now());
INSERT INTO links (slug, original_url, domain_id) SELECT 's' || i, 'https://example.com', (SELECT id FROM domains WHERE host = 'aa.example.com') FROM generate_series(1, 3) i`); err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry(ctx, Config{BaseURL: "https://hop.test", NotFoundRedirect: "https://hop.test/missing"}, NewStore(pool), nil)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close() // from here, any read of the database fails

	got := r.Choices()
	var hosts []string
	for _, d := range got {
		hosts = append(hosts, d.Host)
		if d.Links != 0 {
			t.Errorf("%s: Links = %d, want 0 (not counted)", d.Host, d.Links)
		}
	}
	want := []string{"hop.test", "aa.example.com", "zz.example.com"}
	if len(hosts) != len(want) || hosts[0] != want[0] || hosts[1] != want[1] || hosts[2] != want[2] {
		t.Fatalf("Choices = %v, want %v", hosts, want)
	}
	if !got[0].Default || got[0].NotFoundRedirect != "https://hop.test/missing" {
		t.Fatalf("default domain = %+v, want it first with its configured fallbacks", got[0])
	}
	if _, err := r.List(ctx); err == nil {
		t.Fatal("List with the database closed succeeded; the test does not prove Choices reads none")
	}
}
