package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

// publishInRounds publishes evs 20 at a time: concurrent clicks share one XADD (group
// commit), and the breaker counts failed XADDs.
func publishInRounds(ctx context.Context, p *Pipeline, evs []Event) {
	for i := 0; i < len(evs); i += 20 {
		publishAll(ctx, p, evs[i:min(i+20, len(evs))])
	}
}

// Redis down: clicks go to the local log and from there to PostgreSQL. Redis back
// (empty): the breaker closes without a restart, the reset is counted, and every
// click is stored exactly once.
func TestRedisDownLogThenDrains(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	srv := testenv.StartPrivateRedis(t)
	p := mustPipeline(t, fastConfig(t, "", "c1"), srv.Client(t), db.Pool)
	run(t, p)

	publishAll(ctx, p, newEvents(100, 1))
	waitRows(t, db.Pool, 100)
	if got := value(t, p.m.published); got != 100 {
		t.Fatalf("published = %v, want 100", got)
	}

	srv.Kill()
	down := newEvents(100, 2)
	publishInRounds(ctx, p, down)
	if got := value(t, p.m.fallback); got != 100 {
		t.Fatalf("fallback = %v with Redis down, want 100", got)
	}
	if !p.handoff.open.Load() {
		t.Error("breaker still closed with Redis down")
	}
	waitRows(t, db.Pool, 200) // the log reader does not need Redis

	srv.Restart() // same port, empty: no stream, no group
	testenv.Eventually(t, 30*time.Second, "breaker to close", func() bool { return !p.handoff.open.Load() })
	// New clicks plus replays of clicks that already took the local log.
	publishAll(ctx, p, append(newEvents(100, 3), down...))
	waitRows(t, db.Pool, 300)
	testenv.Eventually(t, 30*time.Second, "stream drained", func() bool { h := health(t, p); return h.Pending == 0 && h.Lag == 0 })
	if n := countRows(t, db.Pool); n != 300 {
		t.Fatalf("%d rows, want 300", n)
	}
	if got := value(t, p.m.published) + value(t, p.m.fallback); got != 400 {
		t.Errorf("published+fallback = %v, want 400", got)
	}
	if got := value(t, p.m.dropped); got != 0 {
		t.Errorf("dropped = %v, want 0", got)
	}
	if got := value(t, p.m.resets); got != 1 {
		t.Errorf("stream resets = %v, want 1", got)
	}
}

// Redis and PostgreSQL down together: redirects keep returning and every click is on
// disk. Redis comes back first: new clicks go to the stream at once, while the log
// waits for PostgreSQL; PostgreSQL back: every click is stored once. No restart.
func TestRedisAndPostgresDown(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	srv := testenv.StartPrivateRedis(t)
	proxied, proxy := proxiedPool(t, db)
	p := mustPipeline(t, fastConfig(t, "", "c1"), srv.Client(t), proxied)
	run(t, p)
	publishAll(ctx, p, newEvents(50, 1))
	waitRows(t, db.Pool, 50)

	proxy.cut()
	srv.Kill()
	both := newEvents(200, 2)
	publishInRounds(ctx, p, both)
	if got, dropped := value(t, p.m.fallback), value(t, p.m.dropped); got != 200 || dropped != 0 {
		t.Fatalf("fallback %v, dropped %v with both down; want 200, 0", got, dropped)
	}
	onDisk := 0
	for range readAll(t, p.log) {
		onDisk++
	}
	if onDisk < 200 {
		t.Fatalf("%d clicks in the local log, want at least the 200 answered while both were down", onDisk)
	}

	srv.Restart()
	testenv.Eventually(t, 30*time.Second, "breaker to close while PostgreSQL is still down", func() bool { return !p.handoff.open.Load() })
	// The first XADD on a reconnected client may fail and take the log: publish
	// single clicks until one goes through.
	warmup := 0
	testenv.Eventually(t, 30*time.Second, "a click through Redis again", func() bool {
		p.Publish(ctx, newEvents(1, 3)[0])
		warmup++
		return value(t, p.m.published) > 50
	})
	publishAll(ctx, p, newEvents(100, 3))
	if got := value(t, p.m.published) - 50; got < 101 {
		t.Fatalf("%v clicks through Redis after it came back, want the 100 and the first warm-up click", got)
	}
	if n := countRows(t, db.Pool); n != 50 {
		t.Fatalf("%d rows with PostgreSQL down, want 50", n)
	}

	proxy.restore()
	waitRows(t, db.Pool, 350+warmup)
	testenv.Eventually(t, 30*time.Second, "log and stream drained", func() bool {
		h := health(t, p)
		return h.Pending == 0 && h.Lag == 0 && h.LogEntries == 0
	})
}

// Redis restarted empty while clicks waited in the stream: the reset is counted and
// logged at ERROR; the clicks this instance published that the group never delivered
// are copied from memory to the local log and reach click_logs, as do the clicks
// published after the restart. Nothing is lost while hop lives.
func TestStreamResetRecoversUndelivered(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	srv := testenv.StartPrivateRedis(t)
	p, logs := loggedPipeline(t, fastConfig(t, "", "c1"), srv.Client(t), db.Pool)
	if _, err := p.stream.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	run(t, p.handoff)
	publishAll(ctx, p, newEvents(120, 1)) // published, never read
	if got := value(t, p.m.published); got != 120 {
		t.Fatalf("published = %v, want 120", got)
	}

	srv.Kill()
	srv.Restart()
	rdb := p.handoff.rdb
	testenv.Eventually(t, 30*time.Second, "the client reconnected", func() bool {
		return rdb.Do(ctx, rdb.B().Ping().Build()).Error() == nil
	})
	after := newEvents(30, 2)
	publishAll(ctx, p, after) // into the new stream (or the log), before anyone notices
	// The first XADD on a reconnected client may fail: those clicks take the local log.
	if got := value(t, p.m.published) + value(t, p.m.fallback); got != 150 {
		t.Fatalf("published+fallback = %v, want 150", got)
	}

	run(t, p)
	wantOneReset(t, p, logs, db.Pool, 120, 150)
}

// Redis killed while clicks waited in the stream, and not back yet: once the breaker
// opens, the clicks the group never read are copied to the local log, so a Redis that
// then comes back empty loses none of them.
func TestRedisKilledSpillsUndelivered(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	srv := testenv.StartPrivateRedis(t)
	p := mustPipeline(t, fastConfig(t, "", "c1"), srv.Client(t), db.Pool)
	if _, err := p.stream.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	stopHandoff := run(t, p.handoff)
	publishAll(ctx, p, newEvents(100, 1)) // published, never read
	if got := value(t, p.m.published); got != 100 {
		t.Fatalf("published = %v, want 100", got)
	}
	srv.Kill()
	// Redis down: these fail over to the log and open the breaker, which spills.
	publishInRounds(ctx, p, newEvents(60, 2))
	if got := value(t, p.m.fallback); got != 60 {
		t.Fatalf("fallback = %v, want 60", got)
	}
	if _, entries := p.log.usage(); entries == 0 {
		t.Fatal("the local log is empty after the breaker opened")
	}
	if got := len(readAll(t, p.log)); got != 160 {
		t.Fatalf("local log holds %d clicks, want 160 (100 spilled + 60 fallen back)", got)
	}
	stopHandoff()
	srv.Restart() // empty
	run(t, p)
	waitRows(t, db.Pool, 160)
	if got := countRows(t, db.Pool); got != 160 {
		t.Fatalf("click_logs has %d rows, want 160", got)
	}
}

// Redis flushed (or restarted empty) while instance A had clicks in the stream that
// no one had read, and instance B noticed first: B recreates the group and goes on
// reading new clicks, so A's reader never gets NOGROUP and its trimmer sees a group
// that has acknowledged entries past A's. Before the stream's epoch, A's trimmer took
// them as acknowledged and 100 clicks were lost without a word. Now A tells the
// stream was made anew, copies its undelivered clicks to its local log and counts the
// reset.
func TestResetNoticedByAnotherInstance(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	srv := testenv.StartPrivateRedis(t)
	rdb := srv.Client(t)
	a, logsA := loggedPipeline(t, fastConfig(t, "", "a"), rdb, db.Pool)
	b := mustPipeline(t, fastConfig(t, "", "b"), rdb, db.Pool)
	stopA := run(t, a)
	publishAll(ctx, a, newEvents(10, 1))
	waitRows(t, db.Pool, 10)
	testenv.Eventually(t, 10*time.Second, "A's trimmer saw its clicks acknowledged", func() bool {
		return len(a.stream.ledger.snapshot()) == 0
	})
	stopA() // as if A's reader were busy while Redis is flushed: it gets no NOGROUP

	// A publishes with no reader running anywhere, then Redis loses everything.
	publishAll(ctx, a, newEvents(100, 2))
	if err := rdb.Do(ctx, rdb.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	run(t, b)
	publishAll(ctx, b, newEvents(20, 3))
	waitRows(t, db.Pool, 30)

	run(t, a)
	wantOneReset(t, a, logsA, db.Pool, 100, 130)
}
