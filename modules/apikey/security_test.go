package apikey

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem/problemtest"
	"github.com/hop-dev/hop/internal/testenv"
)

// countingThrottle allows limit failures per client, as ratelimit.Limiter does in
// one window.
type countingThrottle struct {
	mu    sync.Mutex
	limit int
	fails map[string]int
}

func (c *countingThrottle) Over(_ context.Context, client string) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Minute, c.fails[client] >= c.limit
}

func (c *countingThrottle) Hit(_ context.Context, client string) (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fails == nil {
		c.fails = map[string]int{}
	}
	c.fails[client]++
	return time.Minute, c.fails[client] <= c.limit
}

func guarded(s *Store, fails Throttle) *echo.Echo {
	e := echo.New()
	e.HTTPErrorHandler = problemtest.ErrorHandler(problemtest.Describe(map[error]string{
		ErrUnauthorized: "401 unauthorized", ErrTooManyFailures: "429 rate-limited"}))
	e.GET("/links", func(c echo.Context) error { return c.NoContent(http.StatusOK) }, s.Middleware(fails))
	return e
}

func call(e *echo.Echo, key, addr string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/links", nil)
	req.RemoteAddr = addr
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// A client guessing keys gets 20 answers, then 429 with Retry-After before anything is
// looked up; the wrong keys cost PostgreSQL one lookup each, and a live key this
// instance knows still passes from the same address.
func TestFailedAuthLimitedPerAddress(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	_, good, err := s.Create(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	watch(t, s)
	e := guarded(s, &countingThrottle{limit: 20})
	if rec := call(e, good, "198.51.100.7:1"); rec.Code != http.StatusOK {
		t.Fatalf("good key: %d", rec.Code)
	}
	lookups := s.lookups.Load()
	codes := map[int]int{}
	for i := range 100 {
		rec := call(e, fmt.Sprintf("hop_guess%032d", i), "198.51.100.7:1")
		codes[rec.Code]++
		if rec.Code == http.StatusTooManyRequests {
			if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra != 60 {
				t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
			}
		}
	}
	if codes[http.StatusUnauthorized] != 20 || codes[http.StatusTooManyRequests] != 80 {
		t.Fatalf("answers %v, want 20 × 401 and 80 × 429", codes)
	}
	if n := s.lookups.Load() - lookups; n != 20 {
		t.Fatalf("%d PostgreSQL lookups for 100 wrong keys, want 20", n)
	}
	if rec := call(e, good, "198.51.100.7:1"); rec.Code != http.StatusOK {
		t.Fatalf("good key from the limited address: %d", rec.Code)
	}
	if rec := call(e, "hop_guess_from_elsewhere_0000000000000", "198.51.100.8:1"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("another address: %d, want 401", rec.Code)
	}
}

// A wrong key sent again and again is looked up once while the listener runs, and a
// key stored after it was refused is accepted once the insert's notice arrives.
// Without the change listener (no key is cached) a key found live before still
// passes from an address over its failure limit; once revoked it no longer does.
func TestKnownKeyPassesLimitWithoutListener(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	k, good, err := s.Create(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	e := guarded(s, &countingThrottle{limit: 2})
	if rec := call(e, good, "198.51.100.7:1"); rec.Code != http.StatusOK {
		t.Fatalf("good key: %d", rec.Code)
	}
	for i := range 3 {
		call(e, fmt.Sprintf("hop_guess%032d", i), "198.51.100.7:1")
	}
	if rec := call(e, "hop_guess_more_000000000000000000000000", "198.51.100.7:1"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("guess over the limit: %d", rec.Code)
	}
	if rec := call(e, good, "198.51.100.7:1"); rec.Code != http.StatusOK {
		t.Fatalf("known key from the limited address: %d", rec.Code)
	}
	if err := s.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if rec := call(e, good, "198.51.100.7:1"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked key: %d, want 401", rec.Code)
	}
	if rec := call(e, good, "198.51.100.7:1"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("revoked key again: %d, want 429", rec.Code)
	}
}

func TestWrongKeysRememberedBriefly(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	watch(t, s)
	const key = "a-key-tried-before-it-was-configured"
	for range 10 {
		if _, err := s.Verify(ctx, key); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Verify = %v", err)
		}
	}
	if n := s.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups for one wrong key sent 10 times, want 1", n)
	}
	other := NewStore(s.pool, slog.New(slog.DiscardHandler)) // another instance stores it
	if _, err := other.Bootstrap(ctx, key); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the new key to be accepted", func() bool {
		_, err := s.Verify(ctx, key)
		return err == nil
	})
}

// Changing HOP_API_KEY revokes the previous one, and the key generated at first
// start, and says so in the log.
func TestBootstrapRevokesPreviousEnvKey(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	s := NewStore(db.Pool, slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)))
	ctx := context.Background()
	generated, err := s.Bootstrap(ctx, "")
	if err != nil || generated == "" {
		t.Fatalf("first start: %q, %v", generated, err)
	}
	_, created, err := s.Create(ctx, "made by an operator")
	if err != nil {
		t.Fatal(err)
	}
	const oldKey, newKey = "the-old-configured-key-0123456789", "the-new-configured-key-0123456789"
	if _, err := s.Bootstrap(ctx, oldKey); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Bootstrap(ctx, newKey); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{generated: false, oldKey: false, newKey: true, created: true} {
		_, err := s.Verify(ctx, key)
		if (err == nil) != want {
			t.Errorf("Verify(%.12s…) = %v, want accepted=%v", key, err, want)
		}
	}
	// A restart with the same key revokes nothing more.
	if _, err := s.Bootstrap(ctx, newKey); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(ctx, newKey); err != nil {
		t.Fatalf("configured key refused after a restart: %v", err)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if n := strings.Count(out, "revoked the previous bootstrap API key"); n != 2 {
		t.Fatalf("%d revocations logged, want 2 (generated, then old key):\n%s", n, out)
	}
	if !strings.Contains(out, "prefix="+oldKey[:visiblePrefix]) || strings.Contains(out, oldKey[:visiblePrefix+1]) {
		t.Fatalf("the log should name the old key by its 8-character prefix only:\n%s", out)
	}
}

// A listing shows at most 8 characters of any key.
func TestKeyPrefixRevealsAtMost8Chars(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, "created"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Bootstrap(ctx, "a-configured-key-0123456789abcdefgh"); err != nil {
		t.Fatal(err)
	}
	keys, err := s.List(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("list: %+v, %v", keys, err)
	}
	for _, k := range keys {
		if len(k.Prefix) > 8 {
			t.Errorf("key %q shows %d characters: %q", k.Name, len(k.Prefix), k.Prefix)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
