package redirect

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/ratelimit"
)

// gatedFinder reads links from the real store; while armed, each read waits at the
// gate after reading (read signals, release lets it return).
type gatedFinder struct {
	store   *links.Store
	mu      sync.Mutex
	armed   bool
	read    chan struct{}
	release chan struct{}
}

func newGatedFinder(store *links.Store) *gatedFinder {
	return &gatedFinder{store: store, read: make(chan struct{}, 16), release: make(chan struct{})}
}

func (g *gatedFinder) arm(on bool) {
	g.mu.Lock()
	g.armed = on
	g.mu.Unlock()
}

func (g *gatedFinder) FindInDomain(ctx context.Context, domainID int64, slug string) (links.Link, error) {
	l, err := g.store.FindInDomain(ctx, domainID, slug)
	g.mu.Lock()
	armed := g.armed
	g.mu.Unlock()
	if armed {
		g.read <- struct{}{}
		<-g.release
	}
	return l, err
}

func (g *gatedFinder) TakeClick(ctx context.Context, id int64) (bool, error) {
	return g.store.TakeClick(ctx, id)
}

type pwFixture struct {
	e     *echo.Echo
	h     *Handler
	db    *testenv.DB
	store *links.Store
	gate  *gatedFinder
	errs  chan error
}

const rightPassword = "correct-horse-battery"

// setupPassword makes protected links pw1 and pw2 (hashed at bcrypt's lowest cost, to
// keep tests fast; the check is the same) and a handler with cfg.
func setupPassword(t *testing.T, cfg Config) pwFixture {
	t.Helper()
	db := testenv.NewDB(t)
	store, err := links.NewStore(db.Pool, "s", 6)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(rightPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, slug := range []string{"pw1", "pw2", "pw3", "pw4"} {
		if _, err := db.Pool.Exec(t.Context(), `INSERT INTO links (slug, original_url, password_hash) VALUES ($1, 'https://example.com/secret', $2)`, slug, string(hash)); err != nil {
			t.Fatal(err)
		}
	}
	gate := newGatedFinder(store)
	h, err := New(cfg, nil, gate, &countingPublisher{}, prometheus.NewRegistry(), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	f := pwFixture{h: h, db: db, store: store, gate: gate, errs: make(chan error, 100)}
	f.e = echo.New()
	f.e.HTTPErrorHandler = func(err error, c echo.Context) {
		f.errs <- err
		_ = c.NoContent(testDescribe(err).Status)
	}
	h.Register(f.e)
	return f
}

func (f pwFixture) submit(slug, addr, password string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/"+slug, strings.NewReader(url.Values{"password": {password}}.Encode()))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationForm)
	req.RemoteAddr = addr
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec
}

func limiter(t *testing.T, name, rate string) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(ratelimit.Config{Name: name, Rate: rate}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// 40 addresses guessing one link's password get 5 wrong answers between them, then
// 429 with Retry-After; the right password is refused too while the link is locked,
// and other links are not affected.
func TestPasswordAttemptsLimitedPerLink(t *testing.T) {
	t.Parallel()
	f := setupPassword(t, Config{Describe: testDescribe, LinkAttempts: limiter(t, "pw-link", "5-M"), ClientAttempts: limiter(t, "pw-ip", "10-M")})
	codes := map[int]int{}
	for i := range 40 {
		rec := f.submit("pw1", fmt.Sprintf("198.51.100.%d:1", i+1), fmt.Sprintf("guess-%04d", i))
		codes[rec.Code]++
		if rec.Code == http.StatusTooManyRequests {
			if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
				t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
			}
		}
	}
	if codes[http.StatusUnauthorized] != 5 || codes[http.StatusTooManyRequests] != 35 {
		t.Fatalf("answers %v, want 5 × 401 then 35 × 429", codes)
	}
	if rec := f.submit("pw1", "203.0.113.1:1", rightPassword); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("right password on a locked link: %d, want 429", rec.Code)
	}
	if rec := f.submit("pw2", "203.0.113.1:1", rightPassword); rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "https://example.com/secret" {
		t.Fatalf("another link: %d %q, want 303 to its target", rec.Code, rec.Header().Get("Location"))
	}
}

// One address guessing across links is stopped by its own limit; right answers do
// not use it up.
func TestPasswordAttemptsLimitedPerAddress(t *testing.T) {
	t.Parallel()
	f := setupPassword(t, Config{Describe: testDescribe, LinkAttempts: limiter(t, "pw-link", "5-M"), ClientAttempts: limiter(t, "pw-ip", "3-M")})
	const addr = "198.51.100.1:1"
	for range 5 {
		if rec := f.submit("pw4", addr, rightPassword); rec.Code != http.StatusSeeOther {
			t.Fatalf("right password: %d", rec.Code)
		}
	}
	for i, slug := range []string{"pw1", "pw2", "pw3"} {
		if rec := f.submit(slug, addr, "wrong-guess"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong answer %d: %d, want 401", i+1, rec.Code)
		}
	}
	if rec := f.submit("pw4", addr, "wrong-guess"); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("4th wrong answer from one address: %d, want 429 with Retry-After", rec.Code)
	}
	if rec := f.submit("pw4", "198.51.100.2:1", rightPassword); rec.Code != http.StatusSeeOther {
		t.Fatalf("another address: %d, want 303", rec.Code)
	}
}

// Password checks run a bounded number at a time: over capacity a check is refused
// at once with 429, without waiting, so bcrypt can never queue up behind redirects.
func TestPasswordChecksBoundedPool(t *testing.T) {
	t.Parallel()
	f := setupPassword(t, Config{Describe: testDescribe, PasswordChecks: 1})
	// Warm the redirect cache so only the password check reads the store.
	for _, slug := range []string{"pw1", "pw2"} {
		if code, _ := location(f.e, slug); code != http.StatusOK {
			t.Fatalf("warm-up %s: %d", slug, code)
		}
	}
	f.gate.arm(true)
	first := make(chan int)
	go func() { first <- f.submit("pw1", "198.51.100.1:1", rightPassword).Code }()
	<-f.gate.read // the first check holds the only slot
	rec := f.submit("pw2", "198.51.100.2:1", rightPassword)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("check over capacity: %d, Retry-After %q; want 429 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	f.gate.arm(false)
	close(f.gate.release)
	if code := <-first; code != http.StatusSeeOther {
		t.Fatalf("first check: %d", code)
	}
	if rec := f.submit("pw2", "198.51.100.2:1", rightPassword); rec.Code != http.StatusSeeOther {
		t.Fatalf("after the slot is free: %d", rec.Code)
	}
}

// The password is read from the form body only, never from the query string, and
// the form is a small urlencoded body: anything else is refused before bcrypt.
func TestPasswordOnlyFromSmallFormBody(t *testing.T) {
	t.Parallel()
	f := setupPassword(t, Config{Describe: testDescribe})
	req := httptest.NewRequest(http.MethodPost, "/pw1?password="+rightPassword, strings.NewReader(""))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationForm)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("password in the query string: %d, want 401", rec.Code)
	}
	rec = httptest.NewRecorder()
	f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/pw1?password="+rightPassword, nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Location") != "" {
		t.Fatalf("GET with the password in the query: %d %q, want the form", rec.Code, rec.Header().Get("Location"))
	}

	big := "password=" + strings.Repeat("a", 5000)
	for name, tc := range map[string]struct {
		ct, body string
		chunked  bool
		want     int
	}{
		"multipart":      {"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n" + rightPassword + "\r\n--x--\r\n", false, http.StatusUnsupportedMediaType},
		"json":           {"application/json", `{"password":"` + rightPassword + `"}`, false, http.StatusUnsupportedMediaType},
		"no type":        {"", "password=" + rightPassword, false, http.StatusUnsupportedMediaType},
		"5000 bytes":     {echo.MIMEApplicationForm, big, false, http.StatusRequestEntityTooLarge},
		"chunked, large": {echo.MIMEApplicationForm, big, true, http.StatusRequestEntityTooLarge},
		"charset":        {echo.MIMEApplicationForm + "; charset=utf-8", "password=" + rightPassword, false, http.StatusSeeOther},
	} {
		req := httptest.NewRequest(http.MethodPost, "/pw1", strings.NewReader(tc.body))
		if tc.ct != "" {
			req.Header.Set(echo.HeaderContentType, tc.ct)
		}
		if tc.chunked {
			req.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s: %d, want %d", name, rec.Code, tc.want)
		}
	}
}

// The password page is never sniffed as another type and leaks no referrer.
func TestPasswordPageHeaders(t *testing.T) {
	t.Parallel()
	f := setupPassword(t, Config{Describe: testDescribe})
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/pw1", nil))
	if rec.Code != http.StatusOK || rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("Referrer-Policy") != "same-origin" {
		t.Fatalf("password page: %d %v", rec.Code, rec.Header())
	}
}

// lockLinks holds an ACCESS EXCLUSIVE lock on links until the test ends, so every
// lookup in PostgreSQL stalls, and returns a func counting lookups waiting on it.
func lockLinks(t *testing.T, db *testenv.DB) (waiting func() int) {
	t.Helper()
	tx, err := db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(t.Context(), `LOCK TABLE links IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return func() int {
		var n int
		if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FROM links WHERE slug%'`).Scan(&n); err != nil {
			t.Error(err)
		}
		return n
	}
}

// With PostgreSQL stalled, a lookup gives up at its timeout with 503 and Retry-After,
// and leaves no query behind.
func TestRedirectLookupTimesOut(t *testing.T) {
	t.Parallel()
	f := setupPassword(t, Config{Describe: testDescribe, LookupTimeout: 200 * time.Millisecond})
	waiting := lockLinks(t, f.db)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/not-cached", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("stalled lookup: %d, Retry-After %q; want 503 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	testenv.Eventually(t, 10*time.Second, "the timed-out query to be cancelled", func() bool { return waiting() == 0 })
}

// A lookup stops when its client leaves: the handler returns the context's error
// (not a failure of hop) and PostgreSQL's query is cancelled.
func TestRedirectLookupStopsWhenClientLeaves(t *testing.T) {
	t.Parallel()
	f := setupPassword(t, Config{Describe: testDescribe, LookupTimeout: time.Hour})
	waiting := lockLinks(t, f.db)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		f.e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/not-cached", nil).WithContext(ctx))
		done <- rec.Code
	}()
	testenv.Eventually(t, 10*time.Second, "the lookup to wait in PostgreSQL", func() bool { return waiting() == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the lookup went on after its client left")
	}
	if err := <-f.errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler error %v, want context.Canceled", err)
	}
	testenv.Eventually(t, 10*time.Second, "the abandoned query to be cancelled", func() bool { return waiting() == 0 })
}

// Without Redis, a lookup that read a link just before a PATCH must not put the old
// target back into the cache after the PATCH's invalidation dropped it.
func TestLocalCacheFillRacingInvalidation(t *testing.T) {
	t.Parallel()
	f := setupPassword(t, Config{Describe: testDescribe})
	if _, err := f.db.Pool.Exec(t.Context(), `INSERT INTO links (slug, original_url) VALUES ('racy', 'https://old.example/')`); err != nil {
		t.Fatal(err)
	}
	f.gate.arm(true)
	first := make(chan string)
	go func() { _, loc := location(f.e, "racy"); first <- loc }()
	<-f.gate.read // the lookup has read the old target
	f.gate.arm(false)
	if _, err := f.db.Pool.Exec(t.Context(), `UPDATE links SET original_url = 'https://new.example/' WHERE slug = 'racy'`); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Invalidate(t.Context(), "racy"); err != nil {
		t.Fatal(err)
	}
	close(f.gate.release)
	if loc := <-first; loc != "https://old.example/" {
		t.Fatalf("the racing request went to %q", loc)
	}
	if code, loc := location(f.e, "racy"); code != http.StatusFound || loc != "https://new.example/" {
		t.Fatalf("after the change: %d %q, want the new target", code, loc)
	}
}
