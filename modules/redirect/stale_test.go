package redirect

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/links"
)

// With Redis and PostgreSQL down together, a link this instance resolved before keeps
// redirecting; an unknown slug, a limited link and an expired one answer the failure;
// once PostgreSQL is back, a change made meanwhile is seen.
func TestStaleIfErrorBothDown(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO links (slug, original_url) VALUES ('keep', 'https://keep.example/')`,
		`INSERT INTO links (slug, original_url) VALUES ('change', 'https://old.example/')`,
		`INSERT INTO links (slug, original_url, max_clicks) VALUES ('lim', 'https://lim.example/', 100)`,
		`INSERT INTO links (slug, original_url, expires_at) VALUES ('exp', 'https://exp.example/', now() + interval '1 hour')`,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	pg := newPGProxy(t, db.URL)
	pool, err := pgxpool.New(ctx, pg.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := links.NewStore(pool, "s", 6)
	if err != nil {
		t.Fatal(err)
	}
	rs := testenv.StartPrivateRedis(t)
	h, e, client := instanceOn(t, rs.URL, store)

	// The first answer's own fill of Redis invalidates it, asynchronously: look up until
	// every link is held locally.
	testenv.Eventually(t, 10*time.Second, "every link in the local cache before the outage", func() bool {
		held := 0
		for _, slug := range []string{"keep", "change", "lim", "exp"} {
			if code, _ := location(e, slug); code != 302 {
				t.Fatalf("%s before the outage: %d, want 302", slug, code)
			}
			if _, ok := h.cache.local.Load(linkKey{domain: defaultDomain, slug: slug}); ok {
				held++
			}
		}
		return held == 4
	})
	epoch := h.cache.epoch.Load()
	rs.Kill()
	redisGone(t, h, client, epoch)
	pg.down()

	for range 3 {
		if code, loc := location(e, "keep"); code != 302 || loc != "https://keep.example/" {
			t.Fatalf("cached link, both down: %d %q, want 302 https://keep.example/", code, loc)
		}
	}
	if code, loc := location(e, "change"); code != 302 || loc != "https://old.example/" {
		t.Fatalf("cached link, both down: %d %q, want 302 https://old.example/", code, loc)
	}
	// Changed while hop cannot hear of it: visible once PostgreSQL is back.
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET original_url = 'https://new.example/' WHERE slug = 'change'`); err != nil {
		t.Fatal(err)
	}
	// What cannot be answered from memory is a passing failure: 503, try again soon.
	for _, slug := range []string{"unknown", "lim"} {
		if code, loc := location(e, slug); code != 503 {
			t.Fatalf("%s, both down: %d %q, want 503", slug, code, loc)
		}
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/unknown", nil))
	if rec.Header().Get("Retry-After") != "1" || problemType(t, rec) != "lookup-unavailable" {
		t.Fatalf("unknown, both down: Retry-After %q, type %q; want 1, lookup-unavailable", rec.Header().Get("Retry-After"), problemType(t, rec))
	}
	h.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if code, loc := location(e, "exp"); code != 503 {
		t.Fatalf("expired by now, both down: %d %q, want 503", code, loc)
	}
	h.now = time.Now
	if got := testutil.ToFloat64(h.metrics.stale); got != 4 {
		t.Fatalf("hop_redirect_stale_total = %v, want 4 (lookups: %v hit, %v redis, %v miss, %v error)", got,
			testutil.ToFloat64(h.metrics.cacheHits), testutil.ToFloat64(h.metrics.cacheRedis),
			testutil.ToFloat64(h.metrics.cacheMisses), testutil.ToFloat64(h.metrics.cacheErrors))
	}

	pg.up()
	if code, loc := location(e, "change"); code != 302 || loc != "https://new.example/" {
		t.Fatalf("changed link, PostgreSQL back: %d %q, want 302 https://new.example/", code, loc)
	}
	if code, loc := location(e, "keep"); code != 302 || loc != "https://keep.example/" {
		t.Fatalf("cached link, PostgreSQL back: %d %q, want 302 https://keep.example/", code, loc)
	}
	if got := testutil.ToFloat64(h.metrics.stale); got != 4 {
		t.Fatalf("hop_redirect_stale_total after PostgreSQL returned = %v, want 4", got)
	}
	if h.cache.staleOn.Load() {
		t.Fatal("still in stale mode after PostgreSQL answered")
	}
}

// A Redis disconnect alone changes nothing while PostgreSQL answers: an entry that
// could not be verified is looked up again, so a change made meanwhile is seen.
func TestUnverifiedEntryIsLookedUpAgain(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO links (slug, original_url) VALUES ('moved', 'https://old.example/')`); err != nil {
		t.Fatal(err)
	}
	store, err := links.NewStore(db.Pool, "s", 6)
	if err != nil {
		t.Fatal(err)
	}
	rs := testenv.StartPrivateRedis(t)
	h, e, client := instanceOn(t, rs.URL, store)
	if code, loc := location(e, "moved"); code != 302 || loc != "https://old.example/" {
		t.Fatalf("before: %d %q", code, loc)
	}
	epoch := h.cache.epoch.Load()
	rs.Kill()
	redisGone(t, h, client, epoch)
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET original_url = 'https://new.example/' WHERE slug = 'moved'`); err != nil {
		t.Fatal(err)
	}
	if code, loc := location(e, "moved"); code != 302 || loc != "https://new.example/" {
		t.Fatalf("Redis down, PostgreSQL up: %d %q, want 302 https://new.example/", code, loc)
	}
	if got := testutil.ToFloat64(h.metrics.stale); got != 0 {
		t.Fatalf("hop_redirect_stale_total = %v, want 0", got)
	}
}

// After Redis failed, lookups leave it out only briefly: once it is back they go
// through it again (tracked), so another instance's change reaches this one at once.
func TestRedisUsedAgainAfterOutage(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO links (slug, original_url) VALUES ('back', 'https://old.example/')`); err != nil {
		t.Fatal(err)
	}
	store, err := links.NewStore(db.Pool, "s", 6)
	if err != nil {
		t.Fatal(err)
	}
	rs := testenv.StartPrivateRedis(t)
	a, e, _ := instanceOn(t, rs.URL, store)
	b, _, _ := instanceOn(t, rs.URL, store)
	rs.Kill()
	if code, loc := location(e, "back"); code != 302 || loc != "https://old.example/" {
		t.Fatalf("Redis down: %d %q, want 302 https://old.example/", code, loc)
	}
	if a.cache.redisBackoff.Load() == 0 {
		t.Fatal("a failing Redis did not start the backoff")
	}
	rs.Restart()
	testenv.Eventually(t, 10*time.Second, "lookups to use Redis again", func() bool {
		location(e, "back")
		return a.cache.redisBackoff.Load() == 0
	})
	for range 2 { // tracked, and in the local map
		location(e, "back")
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE links SET original_url = 'https://new.example/' WHERE slug = 'back'`); err != nil {
		t.Fatal(err)
	}
	if err := b.Invalidate(ctx, "back"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "b's change to reach a", func() bool {
		_, loc := location(e, "back")
		return loc == "https://new.example/"
	})
}

// redisGone waits until h has been told Redis is gone (its entries are unverified) and
// the client's connection, with rueidis' own cache, is dropped: until then a cached
// read may still answer from rueidis' memory.
func redisGone(t *testing.T, h *Handler, client rueidis.Client, epoch uint64) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "rueidis to report Redis gone", func() bool {
		return h.cache.epoch.Load() != epoch && client.Do(context.Background(), client.B().Ping().Build()).Error() != nil
	})
}

// instanceOn is a redirect handler on its own connection to the Redis at redisURL,
// with invalidations wired as the app wires them.
func instanceOn(t *testing.T, redisURL string, store Store) (*Handler, *echo.Echo, rueidis.Client) {
	t.Helper()
	var h atomic.Pointer[Handler]
	opt, err := rueidis.ParseURL(redisURL)
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
	handler, err := New(Config{Describe: testDescribe, RedisPrefix: "stale:"}, client, store, &countingPublisher{}, prometheus.NewRegistry(), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	h.Store(handler)
	e := newEcho()
	handler.Register(e)
	return handler, e, client
}

// pgProxy forwards TCP to PostgreSQL; down closes the listener and every connection
// through it (PostgreSQL unreachable, as when it stops), up listens again on the same
// port.
type pgProxy struct {
	t      *testing.T
	url    string
	addr   string
	target string
	mu     sync.Mutex
	l      net.Listener
	conns  map[net.Conn]struct{}
}

func newPGProxy(t *testing.T, dbURL string) *pgProxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{t: t, target: u.Host, conns: map[net.Conn]struct{}{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = l.Addr().String()
	u.Host = p.addr
	p.url = u.String()
	p.serve(l)
	t.Cleanup(p.down)
	return p
}

func (p *pgProxy) serve(l net.Listener) {
	p.mu.Lock()
	p.l = l
	p.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *pgProxy) forward(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.l == nil { // went down meanwhile
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); s.Close(); c.Close() }()
	_, _ = io.Copy(c, s)
	c.Close()
	s.Close()
}

func (p *pgProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *pgProxy) up() {
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen again: %v", err)
	}
	p.serve(l)
}
