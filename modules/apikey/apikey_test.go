package apikey

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"

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
