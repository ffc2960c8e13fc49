package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/testenv"
)

// Hit, Over and Undo count outcomes (wrong passwords, failed sign-ins) exactly, in
// Redis and in memory: a refund gives back only what was taken, never a spare hit.
func TestHitOverUndo(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"redis", "memory"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			var rdb rueidis.Client
			var prefix string
			if backend == "redis" {
				r := testenv.NewRedis(t)
				rdb, prefix = r.Client, r.Prefix
			}
			l := mustNew(t, Config{Timeout: countingTimeout, Name: "outcome", Rate: "3-M", Prefix: prefix}, rdb, prometheus.NewRegistry())
			ctx := context.Background()

			// A refund of a key never hit gives nothing.
			l.Undo(ctx, "k")
			for i := range 3 {
				if _, over := l.Over(ctx, "k"); over {
					t.Fatalf("over before hit %d", i+1)
				}
				if _, ok := l.Hit(ctx, "k"); !ok {
					t.Fatalf("hit %d refused", i+1)
				}
			}
			retry, over := l.Over(ctx, "k")
			if !over || retry < time.Second || retry > time.Minute {
				t.Fatalf("after 3 hits: over=%v retry=%s, want over with 1s..1m", over, retry)
			}
			if _, ok := l.Hit(ctx, "k"); ok {
				t.Fatal("4th hit allowed")
			}
			// Two refunds bring the count (4) back to 2: one more hit is allowed, then none.
			l.Undo(ctx, "k")
			l.Undo(ctx, "k")
			if _, ok := l.Hit(ctx, "k"); !ok {
				t.Fatal("hit after refunds refused")
			}
			if _, ok := l.Hit(ctx, "k"); ok {
				t.Fatal("hit past the limit allowed after refunds")
			}
			if _, over := l.Over(ctx, "other"); over {
				t.Fatal("another key is over")
			}
		})
	}
}

// Concurrent hits never let more than the limit through.
func TestHitExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	l := mustNew(t, Config{Timeout: countingTimeout, Name: "outcome", Rate: "5-M", Prefix: r.Prefix}, r.Client, prometheus.NewRegistry())
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, ok := l.Hit(context.Background(), "link:1"); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 5 {
		t.Fatalf("%d of 50 concurrent hits allowed, want 5", allowed)
	}
}

func TestOffLimiterAllowsOutcomes(t *testing.T) {
	t.Parallel()
	l := mustNew(t, Config{Name: "outcome", Rate: Off}, nil, nil)
	for range 10 {
		if _, ok := l.Hit(context.Background(), "k"); !ok {
			t.Fatal("off limiter refused")
		}
	}
	if _, over := l.Over(context.Background(), "k"); over {
		t.Fatal("off limiter over")
	}
	l.Undo(context.Background(), "k")
}
