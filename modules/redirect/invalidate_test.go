package redirect

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/links"
)

// instanceWithClient is a redirect handler on its own Redis connection with
// invalidations wired as the app wires them.
func instanceWithClient(t *testing.T, store *links.Store, prefix string) (*Handler, *echo.Echo) {
	t.Helper()
	var h atomic.Pointer[Handler]
	opt, err := rueidis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	opt.OnInvalidations = func(m []rueidis.RedisMessage) {
		if x := h.Load(); x != nil {
			x.Invalidated(m)
		}
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	handler, err := New(Config{Describe: testDescribe, RedisPrefix: prefix}, client, store, &countingPublisher{}, prometheus.NewRegistry(), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	h.Store(handler)
	e := newEcho()
	handler.Register(e)
	return handler, e
}

func location(e *echo.Echo, slug string) (int, string) {
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+slug, nil))
	return rec.Code, rec.Header().Get("Location")
}

// twoInstances makes a link and two redirect instances sharing its database and Redis
// prefix: a (its router and handler) and b (its handler).
func twoInstances(t *testing.T, slug, url string) (db *testenv.DB, aRouter *echo.Echo, a, b *Handler) {
	t.Helper()
	db = testenv.NewDB(t)
	r := testenv.NewRedis(t)
	store, err := links.NewStore(db.Pool, "s", 6)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO links (slug, original_url) VALUES ($1, $2)`, slug, url); err != nil {
		t.Fatal(err)
	}
	a, aRouter = instanceWithClient(t, store, r.Prefix)
	b, _ = instanceWithClient(t, store, r.Prefix)
	return db, aRouter, a, b
}

// An edit made through one instance is seen by another instance that has the link
// in its caches, without waiting for a TTL.
func TestInvalidationReachesOtherInstances(t *testing.T) {
	t.Parallel()
	db, a, _, b := twoInstances(t, "multi", "https://old.example/")
	ctx := context.Background()

	for range 3 { // warm every layer of A's cache
		if code, loc := location(a, "multi"); code != 302 || loc != "https://old.example/" {
			t.Fatalf("before edit: %d %q", code, loc)
		}
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET original_url = 'https://new.example/' WHERE slug = 'multi'`); err != nil {
		t.Fatal(err)
	}
	if err := b.Invalidate(ctx, "multi"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the invalidation to arrive", func() bool { _, loc := location(a, "multi"); return loc == "https://new.example/" })

	// Deleting is seen the same way, and a negatively cached slug comes alive once created.
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET deleted_at = now() WHERE slug = 'multi'`); err != nil {
		t.Fatal(err)
	}
	if err := b.Invalidate(ctx, "multi"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the invalidation to arrive", func() bool { code, _ := location(a, "multi"); return code == http.StatusGone })

	if code, _ := location(a, "fresh"); code != http.StatusNotFound {
		t.Fatalf("unknown slug: %d", code)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO links (slug, original_url) VALUES ('fresh', 'https://fresh.example/')`); err != nil {
		t.Fatal(err)
	}
	if err := b.Invalidate(ctx, "fresh"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the invalidation to arrive", func() bool { code, _ := location(a, "fresh"); return code == http.StatusFound })
}

// The instance that makes a change serves it on its very next redirect, before Redis'
// invalidation message has arrived, and still hears of later changes by others.
func TestOwnChangeIsReadAtOnce(t *testing.T) {
	t.Parallel()
	db, ae, a, b := twoInstances(t, "own", "https://v1.example/")
	ctx := context.Background()
	for i := range 20 {
		location(ae, "own") // warm
		url := fmt.Sprintf("https://v%d.example/", i+2)
		if _, err := db.Pool.Exec(ctx, `UPDATE links SET original_url = $1 WHERE slug = 'own'`, url); err != nil {
			t.Fatal(err)
		}
		if err := a.Invalidate(ctx, "own"); err != nil {
			t.Fatal(err)
		}
		if _, loc := location(ae, "own"); loc != url {
			t.Fatalf("round %d: the changing instance answered %q, want %q", i, loc, url)
		}
	}
	// A change made elsewhere still reaches the instance that made the last one.
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET original_url = 'https://other.example/' WHERE slug = 'own'`); err != nil {
		t.Fatal(err)
	}
	if err := b.Invalidate(ctx, "own"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the invalidation to arrive", func() bool { _, loc := location(ae, "own"); return loc == "https://other.example/" })
}
