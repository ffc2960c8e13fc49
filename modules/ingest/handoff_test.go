package ingest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hop-dev/hop/internal/testenv"
)

func BenchmarkPublish(b *testing.B) {
	db, rd := testenv.NewDB(b), testenv.NewRedis(b)
	cfg := Config{Prefix: rd.Prefix, DataDir: b.TempDir(), PublishOnly: true}
	pub := mustPipeline(b, cfg, rd.Client, db.Pool)
	run(b, pub.handoff)
	run(b, pub.log)
	ev := newEvents(1, 1)[0]
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(32) // redirects arrive concurrently; group commit batches them
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			pub.Publish(ctx, ev)
		}
	})
	b.StopTimer()
	if f := value(b, pub.m.fallback); f != 0 {
		b.Logf("%v of %d clicks fell back to the local log", f, b.N)
	}
}

// Concurrent clicks share stream entries (group commit) and each is stored once.
func TestGroupCommitSharesEntries(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	pub := mustPipeline(t, fastConfig(t, rd.Prefix, "c1"), rd.Client, db.Pool)
	stopHandoff := run(t, pub.handoff)
	evs := newEvents(3000, 3)
	publishAll(context.Background(), pub, evs)
	entries, err := rd.Client.Do(context.Background(), rd.Client.B().Xlen().Key(rd.Prefix+"clicks").Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if entries >= int64(len(evs)) || entries == 0 {
		t.Fatalf("%d clicks made %d stream entries: no group commit", len(evs), entries)
	}
	t.Logf("%d clicks in %d stream entries", len(evs), entries)
	stopHandoff()
	run(t, pub)
	waitRows(t, db.Pool, len(evs))
	var distinct int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(DISTINCT event_id) FROM click_logs").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if distinct != len(evs) || countRows(t, db.Pool) != len(evs) {
		t.Fatalf("stored %d rows, %d distinct; want %d", countRows(t, db.Pool), distinct, len(evs))
	}
}

// A Redis that hangs holds no redirect longer than the publish budget: every click
// takes the local log path while Redis is still paused, and is stored exactly once.
func TestSlowRedisDoesNotHoldRedirects(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	srv := testenv.StartPrivateRedis(t)
	rdb := srv.Client(t)
	cfg := fastConfig(t, "", "c1")
	cfg.svc.handoff.Timeout = 50 * time.Millisecond
	pub := mustPipeline(t, cfg, rdb, db.Pool)
	run(t, pub)
	waitRunning(t, pub) // else each click below fsyncs on its own, one after another
	ctx := context.Background()
	// Writes (XADD) are paused until every publish has returned: a Publish that waited
	// for Redis would return only after the pause's minute.
	pausedUntil := time.Now().Add(time.Minute)
	resume := pauseWrites(t, srv.Client(t))
	evs := newEvents(200, 5)
	publishAll(ctx, pub, evs)
	if time.Now().After(pausedUntil) {
		t.Fatal("Publish waited for a paused Redis")
	}
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	if got := value(t, pub.m.fallback); got != float64(len(evs)) {
		t.Fatalf("fallback = %v while Redis is paused, want %d", got, len(evs))
	}
	waitRows(t, db.Pool, len(evs))
	// XADDs that were cut off may still land in the stream once Redis resumes; the
	// stream reader then finds those rows already stored.
	testenv.Eventually(t, 30*time.Second, "stream drained", func() bool { h := health(t, pub); return h.Pending == 0 && h.Lag == 0 })
	if n := countRows(t, db.Pool); n != len(evs) {
		t.Fatalf("%d rows, want %d", n, len(evs))
	}
}

// An XADD that Redis does not answer ends at the hand-off's own deadline (the
// redirect's budget), not at the Redis client's much longer connection timeout.
func TestXaddEndsAtItsDeadline(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	srv := testenv.StartPrivateRedis(t)
	pub := mustPipeline(t, fastConfig(t, "", "c1"), srv.Client(t), db.Pool)
	resume := pauseWrites(t, srv.Client(t))
	t.Cleanup(func() { resume() })
	ev := newEvents(1, 5)[0]
	entry := appendEvent(nil, &ev)
	err := pub.handoff.xadd(time.Now().Add(50*time.Millisecond), &entry, nil, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("XADD to a paused Redis: %v, want the hand-off's deadline", err)
	}
}

// A lone click is never held back to gather others; clicks that arrive together
// share stream entries, and every one of them arrives once.
func TestGatherOnlyWhileClicksArriveTogether(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	cfg := fastConfig(t, rd.Prefix, "c1")
	cfg.svc.handoff.Gather = cfg.svc.handoff.Timeout / 4
	pub := mustPipeline(t, cfg, rd.Client, db.Pool)
	run(t, pub.handoff)
	entries := func() int64 {
		n, err := rd.Client.Do(ctx, rd.Client.B().Xlen().Key(rd.Prefix+"clicks").Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	start := time.Now()
	for _, e := range newEvents(10, 1) {
		pub.Publish(ctx, e)
	}
	if d := time.Since(start); d >= 10*cfg.svc.handoff.Gather {
		t.Fatalf("10 clicks one after another took %s: lone clicks were held for Gather (%s)", d, cfg.svc.handoff.Gather)
	}
	if n := entries(); n != 10 {
		t.Fatalf("%d stream entries for 10 lone clicks, want 10", n)
	}

	publishAll(ctx, pub, newEvents(500, 2))
	if n := entries() - 10; n > 50 {
		t.Errorf("%d stream entries for 500 concurrent clicks, want them shared", n)
	}
	if got := value(t, pub.m.published); got != 510 {
		t.Errorf("published = %v, want 510", got)
	}

	cfg.svc.handoff.Gather = cfg.svc.handoff.Timeout/4 + time.Millisecond
	cfg.DataDir = t.TempDir()
	if _, err := New(cfg, rd.Client, db.Pool, newTestEnricher(t, db.Pool), nil, testLogger(t)); err == nil {
		t.Error("a Gather over a quarter of Timeout was accepted")
	}
}

// Event ids are the idempotency key: made concurrently, each is a distinct UUIDv7
// carrying the time it was made.
func TestEventIDsAreDistinctV7(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	p := mustPipeline(t, Config{DataDir: t.TempDir()}, nil, db.Pool)
	const goroutines, each = 8, 5000
	before := time.Now().Add(-time.Millisecond)
	ids := make([][]uuid.UUID, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				ids[g] = append(ids[g], p.newEventID())
			}
		})
	}
	wg.Wait()
	// Ids made faster than one per 256 ns borrow from the next millisecond to stay
	// ordered, so a burst may run a little ahead of the clock.
	after := time.Now().Add(time.Second)
	seen := make(map[uuid.UUID]bool, goroutines*each)
	// The time and sequence part is unique by construction; the random part must be
	// too (two equal ones in 40,000 draws of 62 bits: about 1e-10).
	randomParts := make(map[[8]byte]bool, goroutines*each)
	for _, list := range ids {
		for _, id := range list {
			if seen[id] || randomParts[[8]byte(id[8:])] {
				t.Fatalf("id %s made twice, or its random part reused", id)
			}
			seen[id], randomParts[[8]byte(id[8:])] = true, true
			if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
				t.Fatalf("id %s is version %d, variant %v; want a UUIDv7", id, id.Version(), id.Variant())
			}
			if at := time.Unix(id.Time().UnixTime()); at.Before(before.Truncate(time.Millisecond)) || at.After(after) {
				t.Fatalf("id %s carries time %s, want between %s and %s", id, at, before, after)
			}
		}
	}
}
