package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hop-dev/hop/internal/testenv"
)

// Without Redis the local log is the stream: every click is enriched and stored once,
// and the log is emptied once PostgreSQL has them.
func TestNoRedisEndToEnd(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	p := mustPipeline(t, fastConfig(t, "", "c1"), nil, db.Pool)
	run(t, p)
	evs := newEvents(300, 7)
	evs[0].IP, evs[0].UserAgent, evs[0].Referer = "8.8.8.8", "curl/8.4.0", ""
	publishAll(context.Background(), p, evs)
	if got := value(t, p.m.fallback); got != 300 {
		t.Fatalf("fallback = %v, want 300", got)
	}
	waitRows(t, db.Pool, 300)
	var ip, country, reason string
	if err := db.Pool.QueryRow(context.Background(), `SELECT ip, country, bot_reason FROM click_logs WHERE event_id = $1`,
		evs[0].ID).Scan(&ip, &country, &reason); err != nil {
		t.Fatal(err)
	}
	if ip != "8.8.8.0" || country != "US" || reason != botHTTPClient {
		t.Errorf("curl row: ip %q, country %q, bot %q", ip, country, reason)
	}
	testenv.Eventually(t, 30*time.Second, "the log truncated", func() bool { _, n := p.log.usage(); return n == 0 })
	if h := health(t, p); h.Mode != "log" || h.Dropped != 0 {
		t.Errorf("health %+v", h)
	}
}

// A crash after the COPY of a batch and before the log was truncated: the next start
// replays that batch, and no click is stored twice.
func TestLogReplayAfterCrashBetweenCopyAndTruncate(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	cfg := fastConfig(t, "", "c1")
	cfg.BatchSize = 300
	p := mustPipeline(t, cfg, nil, db.Pool)
	evs := newEvents(500, 8)
	for _, ev := range evs { // not running: an entry each
		p.Publish(ctx, ev)
	}
	lr := logReaderOf(t, p)
	n, _, err := lr.runOnce(ctx)
	if err != nil || n != 300 {
		t.Fatalf("first batch took %d entries, %v; want 300", n, err)
	}
	if got := countRows(t, db.Pool); got != 300 {
		t.Fatalf("%d rows after the first batch, want 300", got)
	}
	p.log.close() // the crash: nothing truncated

	again := cfg
	again.svc.logReader.BatchSize = 200 // replayed batches straddle what was committed
	p2 := mustPipeline(t, again, nil, db.Pool)
	if _, entries := p2.log.usage(); entries != 500 {
		t.Fatalf("%d entries in the reopened log, want 500", entries)
	}
	run(t, p2)
	waitRows(t, db.Pool, 500)
	testenv.Eventually(t, 30*time.Second, "the log truncated", func() bool { _, n := p2.log.usage(); return n == 0 })
}

// With PostgreSQL down and no Redis every redirect still returns with its click on
// disk; once PostgreSQL is back, exactly those clicks are stored, without a restart.
func TestPostgresDownWithoutRedisKeepsEveryClick(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	proxied, proxy := proxiedPool(t, db)
	p := mustPipeline(t, fastConfig(t, "", "c1"), nil, proxied)
	run(t, p)
	publishAll(ctx, p, newEvents(100, 1))
	waitRows(t, db.Pool, 100)

	proxy.cut()
	down := newEvents(200, 2)
	publishAll(ctx, p, down)
	var lw *writer
	for _, s := range p.back {
		if r, ok := s.(*logReader); ok {
			lw = r.w
		}
	}
	testenv.Eventually(t, 30*time.Second, "failed writes while PostgreSQL is down", func() bool { return value(t, lw.m.errors) >= 2 })
	if n := countRows(t, db.Pool); n != 100 {
		t.Fatalf("%d rows while cut off, want 100", n)
	}
	onDisk := map[uuid.UUID]bool{}
	for _, ev := range readAll(t, p.log) {
		onDisk[ev.ID] = true
	}
	for _, ev := range down {
		if !onDisk[ev.ID] {
			t.Fatalf("click %s answered but not in the local log", ev.ID)
		}
	}
	proxy.restore()
	waitRows(t, db.Pool, 300)
	if got := value(t, p.m.dropped); got != 0 {
		t.Errorf("dropped = %v, want 0", got)
	}
}

// Under a steady flow the reader waits Linger after a batch that was not full, so
// clicks go to PostgreSQL in fewer, larger commits; full batches mean a backlog,
// copied one after another without waiting.
func TestLogReaderLingersOnlyAfterAPartialBatch(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	cfg := fastConfig(t, "", "c1")
	cfg.BatchSize = 100
	cfg.svc.logReader.Linger = time.Hour
	p := mustPipeline(t, cfg, nil, db.Pool)
	for _, ev := range newEvents(350, 9) { // not running: an entry each
		p.Publish(ctx, ev)
	}
	lr := logReaderOf(t, p)
	lingered := make(chan time.Duration, 10)
	lr.linger = func(ctx context.Context, d time.Duration) bool {
		lingered <- d
		<-ctx.Done()
		return false
	}
	run(t, p)
	select {
	case d := <-lingered:
		if d < 59*time.Minute {
			t.Fatalf("lingered %s, want about the configured hour", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the reader never lingered")
	}
	// Three full batches went in at once, the partial fourth, then the wait.
	if got := countRows(t, db.Pool); got != 350 {
		t.Fatalf("%d rows when the reader first lingered, want all 350", got)
	}
	if n := len(lingered); n != 0 {
		t.Fatalf("%d more lingers", n)
	}
}

// Clicks appended while a partial batch is being copied wait for the next batch, after
// Linger: a steady flow must not turn into one small commit per log append.
func TestLogReaderLingersWhileClicksKeepComing(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	cfg := fastConfig(t, "", "c1")
	cfg.svc.logReader.Linger = time.Hour
	p := mustPipeline(t, cfg, nil, db.Pool)
	evs := newEvents(70, 10)
	for _, ev := range evs[:50] { // not running: an entry each
		p.Publish(ctx, ev)
	}
	lr := logReaderOf(t, p)
	lingered := make(chan struct{}, 10)
	lr.linger = func(ctx context.Context, d time.Duration) bool {
		lingered <- struct{}{}
		<-ctx.Done()
		return false
	}
	// Hold the first COPY back with a lock, and append 20 more clicks meanwhile.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // committed below
	if _, err := tx.Exec(ctx, `LOCK TABLE click_logs IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	run(t, p)
	testenv.Eventually(t, 30*time.Second, "the first COPY waiting for the lock", func() bool {
		var n int
		_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE 'copy%'`).Scan(&n)
		return n == 1
	})
	publishAll(ctx, p, evs[50:])
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lingered:
	case <-time.After(30 * time.Second):
		t.Fatal("the reader never lingered")
	}
	if got := countRows(t, db.Pool); got != 50 {
		t.Fatalf("%d rows when the reader lingered, want the first batch's 50", got)
	}
}

// logReaderOf returns the pipeline's log reader.
func logReaderOf(t *testing.T, p *Pipeline) *logReader {
	t.Helper()
	for _, s := range p.back {
		if r, ok := s.(*logReader); ok {
			return r
		}
	}
	t.Fatal("the pipeline has no log reader")
	return nil
}
