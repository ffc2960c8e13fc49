package apikey

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	return NewStore(testenv.NewDB(t).Pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// Instances starting together on an empty database generate exactly one key.
func TestBootstrapGeneratesOneKeyAcrossInstances(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	generated := make(chan string, 4)
	for range 4 {
		wg.Go(func() {
			k, err := s.Bootstrap(ctx, "")
			if err != nil {
				t.Error(err)
			}
			if k != "" {
				generated <- k
			}
		})
	}
	wg.Wait()
	close(generated)
	var keys []string
	for k := range generated {
		keys = append(keys, k)
	}
	if len(keys) != 1 {
		t.Fatalf("%d keys generated, want 1", len(keys))
	}
	if _, err := s.Verify(ctx, keys[0]); err != nil {
		t.Fatalf("generated key does not verify: %v", err)
	}
	// A later start with keys present generates nothing.
	if k, err := s.Bootstrap(ctx, ""); err != nil || k != "" {
		t.Fatalf("second bootstrap: %q, %v", k, err)
	}
}

func TestConfiguredKeyAndRevocation(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	const configured = "a-configured-key-of-enough-length"
	for range 2 { // idempotent across restarts
		if k, err := s.Bootstrap(ctx, configured); err != nil || k != "" {
			t.Fatalf("bootstrap with HOP_API_KEY: %q, %v", k, err)
		}
	}
	id, err := s.Verify(ctx, configured)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := s.List(ctx)
	if err != nil || len(keys) != 1 || keys[0].Prefix != configured[:visiblePrefix] {
		t.Fatalf("list: %+v, %v", keys, err)
	}
	if err := s.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(ctx, configured); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("revoked key verifies: %v", err)
	}
	if err := s.Revoke(ctx, id+100); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoking an unknown key: %v", err)
	}
	for _, bad := range []string{"", "short", "x" + string(make([]byte, 300))} {
		if _, err := s.Verify(ctx, bad); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Verify(%.10q) = %v", bad, err)
		}
	}
}

// watch runs s.Watch until the test ends and waits until its listener is connected.
func watch(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	testenv.Eventually(t, 10*time.Second, "the key listener to connect", s.cache.listening)
}

// While the listener runs a key is read from PostgreSQL once; a revocation by SQL in
// psql (not through hop) reaches a second instance through the trigger's notice.
func TestVerifiedKeysCachedUntilChanged(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	logger := slog.New(slog.DiscardHandler)
	a, b := NewStore(db.Pool, logger), NewStore(db.Pool, logger)
	ctx := context.Background()
	k, key, err := a.Create(ctx, "cached")
	if err != nil {
		t.Fatal(err)
	}
	watch(t, a)
	watch(t, b)
	for range 5 {
		for _, s := range []*Store{a, b} {
			if id, err := s.Verify(ctx, key); err != nil || id != k.ID {
				t.Fatalf("Verify = %d, %v; want %d", id, err, k.ID)
			}
		}
	}
	if a.lookups.Load() != 1 || b.lookups.Load() != 1 {
		t.Fatalf("lookups %d and %d for 5 requests each, want 1 and 1", a.lookups.Load(), b.lookups.Load())
	}

	// Revoked behind hop's back: both instances refuse it once the notice arrives.
	if _, err := db.Pool.Exec(ctx, `UPDATE api_keys SET revoked_at = now() WHERE id = $1`, k.ID); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{a, b} {
		testenv.Eventually(t, 10*time.Second, "the revocation to reach an instance", func() bool {
			_, err := s.Verify(ctx, key)
			return errors.Is(err, ErrUnauthorized)
		})
	}

	// Revoked through an instance: refused there on the very next request.
	k2, key2, err := a.Create(ctx, "second")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(ctx, key2); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, k2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(ctx, key2); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Verify right after Revoke = %v, want ErrUnauthorized", err)
	}
}

// Without a listener nothing is cached; when the listener's connection dies the cache
// is emptied and off until it reconnects, so notices missed meanwhile cannot matter.
func TestNoCacheWithoutListener(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	s := NewStore(db.Pool, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	_, key, err := s.Create(ctx, "uncached")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Verify(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.lookups.Load(); n != 3 {
		t.Fatalf("%d lookups without a listener, want 3", n)
	}

	watch(t, s)
	if _, err := s.Verify(ctx, key); err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := db.Pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the listener to notice its connection is gone", func() bool { return !s.cache.listening() })
	before := s.lookups.Load()
	if _, err := s.Verify(ctx, key); err != nil {
		t.Fatal(err)
	}
	if s.lookups.Load() != before+1 {
		t.Fatal("a key was served from the cache while the listener was down")
	}
	testenv.Eventually(t, 10*time.Second, "the listener to reconnect", s.cache.listening)
}

// A lookup that started before a change must not be kept: it may have read the key
// just before it was revoked.
func TestLookupRacingAChangeIsNotKept(t *testing.T) {
	var v verified
	v.reset(true)
	h := [32]byte{1}
	gen := v.generation()
	v.changed() // a notice arrives while the lookup is in flight
	v.put(h, 7, gen)
	if _, ok := v.get(h); ok {
		t.Fatal("a lookup older than a change was cached")
	}
	v.put(h, 7, v.generation())
	if id, ok := v.get(h); !ok || id != 7 {
		t.Fatalf("get = %d, %v after a current lookup", id, ok)
	}
	v.reset(false)
	v.put(h, 7, v.generation())
	if _, ok := v.get(h); ok {
		t.Fatal("cached without a listener")
	}
}
