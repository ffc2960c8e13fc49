package links

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem/problemtest"
	"github.com/hop-dev/hop/internal/testenv"
)

// hookInvalidator runs after each link a handler stores.
type hookInvalidator struct{ after func() }

func (h hookInvalidator) InvalidateLink(context.Context, int64, string) error {
	if h.after != nil {
		h.after()
	}
	return nil
}

type apiFixture struct {
	e     *echo.Echo
	h     *Handler
	store *Store
	db    *testenv.DB
}

func newAPI(t *testing.T, inv Invalidator) apiFixture {
	t.Helper()
	db := testenv.NewDB(t)
	store, err := NewStore(db.Pool, "secret", 6)
	if err != nil {
		t.Fatal(err)
	}
	describe := problemtest.Describe(map[error]string{ErrNotFound: "404 link-not-found", ErrGone: "410 link-gone",
		ErrSlugTaken: "409 slug-taken", ErrOutOfTime: "503 bulk-out-of-time"})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := NewHandler(NewService(store, "https://Hop.Example:8443", inv, logger), describe, logger)
	e := echo.New()
	e.HTTPErrorHandler = problemtest.ErrorHandler(describe)
	h.Routes(e.Group(""))
	return apiFixture{e: e, h: h, store: store, db: db}
}

func (f apiFixture) send(method, path string, body any) (int, map[string]any) {
	b, _ := json.Marshal(body)
	req := httptest.NewRequest(method, path, strings.NewReader(string(b)))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	var m map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &m)
	return rec.Code, m
}

// A link whose target is hop itself would redirect in a loop, counting a click per
// turn: refused on create, in bulk and on PATCH, whatever the scheme, port or case.
func TestLinksToHopItselfRefused(t *testing.T) {
	t.Parallel()
	f := newAPI(t, nil)
	for _, u := range []string{
		"https://hop.example:8443/abcdef",
		"http://HOP.example/abcdef",
		"https://hop.example./x",
		"https://user@hop.example/x",
	} {
		code, body := f.send(http.MethodPost, "/links", map[string]any{"url": u})
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["detail"]), "this hop itself") {
			t.Errorf("create %q: %d %v, want 400 naming the loop", u, code, body)
		}
	}
	code, body := f.send(http.MethodPost, "/links/bulk", map[string]any{"links": []map[string]any{{"url": "https://hop.example/a"}, {"url": "https://example.com/"}}})
	if code != http.StatusMultiStatus || body["created"] != 1.0 || body["failed"] != 1.0 {
		t.Fatalf("bulk: %d %v", code, body)
	}
	code, body = f.send(http.MethodPost, "/links", map[string]any{"url": "https://sub.hop.example/ok", "slug": "fine-link"})
	if code != http.StatusCreated {
		t.Fatalf("another host: %d %v", code, body)
	}
	if code, body = f.send(http.MethodPatch, "/links/fine-link", map[string]any{"url": "https://hop.example/fine-link"}); code != http.StatusBadRequest {
		t.Fatalf("patch to itself: %d %v", code, body)
	}
	var n int
	if err := f.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM links WHERE original_url ILIKE '%//hop.example%' OR original_url ILIKE '%@hop.example%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d self-links stored (%v)", n, err)
	}
}

// Passwords shorter than 8 bytes are refused on create, in bulk and on PATCH.
func TestPasswordMinLength8(t *testing.T) {
	t.Parallel()
	f := newAPI(t, nil)
	if code, body := f.send(http.MethodPost, "/links", map[string]any{"url": "https://example.com/", "password": "1234"}); code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["detail"]), "8 to 72") {
		t.Fatalf("4-byte password: %d %v", code, body)
	}
	if code, body := f.send(http.MethodPost, "/links/bulk", map[string]any{"links": []map[string]any{{"url": "https://example.com/", "password": "1234567"}}}); code != http.StatusMultiStatus || body["failed"] != 1.0 {
		t.Fatalf("bulk 7-byte password: %d %v", code, body)
	}
	if code, body := f.send(http.MethodPost, "/links", map[string]any{"url": "https://example.com/", "slug": "pw-link", "password": "12345678"}); code != http.StatusCreated {
		t.Fatalf("8-byte password: %d %v", code, body)
	}
	if code, body := f.send(http.MethodPatch, "/links/pw-link", map[string]any{"password": "short"}); code != http.StatusBadRequest {
		t.Fatalf("patch short password: %d %v", code, body)
	}
}

// A bulk create that runs past its budget answers anyway: the items it stored are
// 201 and exactly the links in the database; the rest are 503, to be sent again.
func TestBulkAnswersWithinBudget(t *testing.T) {
	t.Parallel()
	var stored atomic.Int64
	var clock atomic.Int64 // seconds past the start
	start := time.Now()
	f := newAPI(t, hookInvalidator{after: func() {
		if stored.Add(1) == 3 {
			clock.Store(3600) // the third insert took an hour
		}
	}})
	f.h.svc.now = func() time.Time { return start.Add(time.Duration(clock.Load()) * time.Second) }
	var items []map[string]any
	for i := range 10 {
		items = append(items, map[string]any{"url": fmt.Sprintf("https://example.com/%d", i), "password": fmt.Sprintf("password-%d", i%3)})
	}
	code, body := f.send(http.MethodPost, "/links/bulk", map[string]any{"links": items})
	if code != http.StatusMultiStatus || body["created"] != 3.0 || body["failed"] != 7.0 {
		t.Fatalf("bulk past its budget: %d created=%v failed=%v", code, body["created"], body["failed"])
	}
	for i, r := range body["results"].([]any) {
		want := http.StatusServiceUnavailable
		if i < 3 {
			want = http.StatusCreated
		}
		if got := int(r.(map[string]any)["status"].(float64)); got != want {
			t.Errorf("item %d: status %d, want %d", i, got, want)
		}
	}
	var n int
	if err := f.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM links`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d links stored, want the 3 answered as created (%v)", n, err)
	}
}

// Bulk passwords are hashed in parallel, once per distinct password, and every link
// opens with its own password only.
func TestBulkPasswordsHashedInParallel(t *testing.T) {
	t.Parallel()
	f := newAPI(t, nil)
	var items []map[string]any
	for i := range 6 {
		items = append(items, map[string]any{"url": "https://example.com/", "slug": fmt.Sprintf("bulk-%02d", i), "password": fmt.Sprintf("password-%d", i%2)})
	}
	if code, body := f.send(http.MethodPost, "/links/bulk", map[string]any{"links": items}); code != http.StatusCreated || body["created"] != 6.0 {
		t.Fatalf("bulk: %d %v", code, body)
	}
	byPassword := map[string]string{}
	for i := range 6 {
		l, err := f.store.FindBySlug(t.Context(), fmt.Sprintf("bulk-%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		pw := fmt.Sprintf("password-%d", i%2)
		if h, ok := byPassword[pw]; ok && h != l.PasswordHash {
			t.Fatalf("link %d: one password hashed twice", i)
		}
		byPassword[pw] = l.PasswordHash
	}
	if len(byPassword) != 2 || byPassword["password-0"] == byPassword["password-1"] {
		t.Fatalf("hashes %v", byPassword)
	}
	if !CheckPassword(byPassword["password-0"], "password-0") || !CheckPassword(byPassword["password-1"], "password-1") || CheckPassword(byPassword["password-0"], "password-1") {
		t.Fatal("a link does not open with its own password only")
	}
}

// Without HOP_SLUG_SECRET instances starting together agree on one random secret,
// kept across restarts; slugs made under the old default secret stay valid and new
// ones never collide with them.
func TestStoredSlugSecret(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	old, err := NewStore(db.Pool, "hop-dev-secret-change-me", 6)
	if err != nil {
		t.Fatal(err)
	}
	var oldSlugs []string
	for i := range 5 {
		l, err := old.create(ctx, newLink{URL: fmt.Sprintf("https://example.com/%d", i), RedirectStatus: 302})
		if err != nil {
			t.Fatal(err)
		}
		oldSlugs = append(oldSlugs, l.Slug)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	secrets := map[string]int{}
	generated := 0
	for range 4 {
		wg.Go(func() {
			s, gen, err := StoredSlugSecret(ctx, db.Pool)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			secrets[s]++
			if gen {
				generated++
			}
		})
	}
	wg.Wait()
	if len(secrets) != 1 || generated != 1 {
		t.Fatalf("%d secrets, %d generated; want 1 and 1", len(secrets), generated)
	}
	var secret string
	for s := range secrets {
		secret = s
	}
	if len(secret) < 32 {
		t.Fatalf("secret %q is short", secret)
	}
	again, gen, err := StoredSlugSecret(ctx, db.Pool)
	if err != nil || again != secret || gen {
		t.Fatalf("restart: %q, %v, %v", again, gen, err)
	}

	s, err := NewStore(db.Pool, secret, 6)
	if err != nil {
		t.Fatal(err)
	}
	for _, slug := range oldSlugs {
		if _, err := s.FindBySlug(ctx, slug); err != nil {
			t.Fatalf("old slug %q: %v", slug, err)
		}
	}
	for i := range 20 {
		l, err := s.create(ctx, newLink{URL: "https://example.com/new", RedirectStatus: 302})
		if err != nil {
			t.Fatal(err)
		}
		// The enumeration of the issue: ids decode to slugs under the default secret.
		if want, _ := old.slug.slug(l.ID); l.Slug == want {
			t.Fatalf("link %d (%d) has the slug the default secret gives", i, l.ID)
		}
	}
}

// A bulk dry run is ?dry_run=true; any other value, none included, is refused before
// anything is created, so a typo never turns a trial into real links.
func TestBulkDryRunValueIsStrict(t *testing.T) {
	t.Parallel()
	f := newAPI(t, nil)
	one := map[string]any{"links": []map[string]any{{"url": "https://example.com/dry"}}}
	// Bare and empty too: they read like a dry run asked for.
	for _, q := range []string{"dry_run=1", "dry_run=yes", "dry_run=TRUE", "dry_run=True", "dry_run=maybe", "dry_run", "dry_run="} {
		code, body := f.send(http.MethodPost, "/links/bulk?"+q, one)
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["detail"]), "dry_run must be true or false") {
			t.Errorf("?%s: %d %v, want 400", q, code, body)
		}
	}
	if code, body := f.send(http.MethodPost, "/links/bulk?dry_run=true", one); code != http.StatusOK {
		t.Fatalf("dry_run=true: %d %v", code, body)
	}
	var n int
	if err := f.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM links`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d links stored by refused and dry runs (%v), want 0", n, err)
	}
	if code, body := f.send(http.MethodPost, "/links/bulk?dry_run=false", one); code != http.StatusCreated || body["created"] != 1.0 {
		t.Fatalf("dry_run=false: %d %v, want 201 creating one", code, body)
	}
}
