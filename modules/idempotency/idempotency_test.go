package idempotency

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/testenv"
)

// setup serves POST /things through the middleware; the handler counts its runs and
// answers with status (or fails with a 500 while fail is set).
func setup(t *testing.T) (st *Store, e *echo.Echo, runs *atomic.Int64, fail *atomic.Bool) {
	t.Helper()
	db := testenv.NewDB(t)
	st = New(Config{}, db.Pool, slog.New(slog.DiscardHandler))
	e = echo.New()
	// The statuses app's error table gives this module's errors.
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrMismatch):
			status = http.StatusUnprocessableEntity
		case errors.Is(err, ErrInProgress):
			status = http.StatusConflict
		case errors.Is(err, problem.ErrInvalid):
			status = http.StatusBadRequest
		}
		_ = c.JSON(status, map[string]string{"detail": err.Error()})
	}
	runs, fail = new(atomic.Int64), new(atomic.Bool)
	owner := func(c echo.Context) (int64, bool) { return 7, true }
	e.POST("/things", func(c echo.Context) error {
		n := runs.Add(1)
		if fail.Load() {
			return errors.New("broken")
		}
		return c.JSON(http.StatusCreated, map[string]int64{"run": n})
	}, st.Middleware(PostPaths("/things"), owner))
	return st, e, runs, fail
}

func post(e *echo.Echo, key, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/things", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(Header, key)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestServerFailuresAreNotRecorded(t *testing.T) {
	t.Parallel()
	_, e, runs, fail := setup(t)
	fail.Store(true)
	if r := post(e, "k", `{}`); r.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", r.Code)
	}
	fail.Store(false)
	r := post(e, "k", `{}`)
	if r.Code != http.StatusCreated || r.Header().Get(ReplayedHeader) != "" || runs.Load() != 2 {
		t.Fatalf("retry after a 500: %d %v, %d runs; want a fresh run", r.Code, r.Header(), runs.Load())
	}
	if r := post(e, "k", `{}`); r.Header().Get(ReplayedHeader) != "true" || strings.TrimSpace(r.Body.String()) != `{"run":2}` || runs.Load() != 2 {
		t.Fatalf("then a replay: %s %v, %d runs", r.Body, r.Header(), runs.Load())
	}
	if r := post(e, "", `{}`); r.Code != http.StatusCreated || runs.Load() != 3 {
		t.Fatalf("no key: %d, %d runs", r.Code, runs.Load())
	}
}

func TestStaleAndExpiredKeysAreTakenOver(t *testing.T) {
	t.Parallel()
	st, e, runs, _ := setup(t)
	ctx := context.Background()
	post(e, "expired", `{}`)
	post(e, "stale", `{"a":1}`)
	// A claim whose server died three minutes ago, and an answer from yesterday.
	if _, err := st.pool.Exec(ctx, `UPDATE idempotency_keys SET status = NULL, body = NULL, created_at = now() - interval '3 minutes' WHERE key = 'stale'`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.pool.Exec(ctx, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'expired'`); err != nil {
		t.Fatal(err)
	}
	if r := post(e, "stale", `{"a":1}`); r.Code != http.StatusCreated || r.Header().Get(ReplayedHeader) != "" {
		t.Fatalf("stale claim: %d %v", r.Code, r.Header())
	}
	// An expired key may even carry another request now.
	if r := post(e, "expired", `{"b":2}`); r.Code != http.StatusCreated || r.Header().Get(ReplayedHeader) != "" {
		t.Fatalf("expired key: %d %v", r.Code, r.Header())
	}
	if runs.Load() != 4 {
		t.Fatalf("%d runs, want 4", runs.Load())
	}
	// A fresh claim (its request still running) is not taken over: 409.
	if _, err := st.pool.Exec(ctx, `UPDATE idempotency_keys SET status = NULL, body = NULL WHERE key = 'stale'`); err != nil {
		t.Fatal(err)
	}
	if r := post(e, "stale", `{"a":1}`); r.Code != http.StatusConflict || r.Header().Get("Retry-After") != "1" {
		t.Fatalf("running claim: %d %v", r.Code, r.Header())
	}
}

func TestRunOncePurgesOnlyExpiredKeys(t *testing.T) {
	t.Parallel()
	st, e, _, _ := setup(t)
	ctx := context.Background()
	post(e, "old", `{}`)
	post(e, "new", `{}`)
	if _, err := st.pool.Exec(ctx, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	if err := st.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var keys string
	if err := st.pool.QueryRow(ctx, `SELECT string_agg(key, ',') FROM idempotency_keys`).Scan(&keys); err != nil || keys != "new" {
		t.Fatalf("left %q (%v), want new", keys, err)
	}
}

// FuzzValidKey: the header is untrusted; a key that passes is printable ASCII, bounded.
func FuzzValidKey(f *testing.F) {
	for _, s := range []string{"k", "hop-import-abc", "caf\u00e9", "a\x00b", strings.Repeat("x", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if !validKey(k) {
			return
		}
		if len(k) > maxKeyLength {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
		for i := 0; i < len(k); i++ {
			if k[i] < 0x20 || k[i] > 0x7e {
				t.Fatalf("accepted byte %#x", k[i])
			}
		}
	})
}
