package stats

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestAggregatorAddsEveryRollupExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a, l2 := createLink(t, b.pool, "a"), createLink(t, b.pool, "b")
	day := time.Date(2025, 3, 10, 0, 0, 0, 0, time.UTC)
	at := func(h, m int) time.Time { return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute) }
	insertClicks(t, b.pool, []click{
		{link: a, at: at(1, 0), country: "US", refHost: "t.co", browser: "Chrome", os: "Windows", device: "desktop", visitor: visitor(1)},
		{link: a, at: at(1, 30), country: "US", refHost: "t.co", browser: "Chrome", os: "Windows", device: "desktop", visitor: visitor(1)},
		{link: a, at: at(2, 0), country: "DE", refHost: "(direct)", browser: "Firefox", os: "Linux", device: "mobile", visitor: visitor(2)},
		{link: a, at: at(2, 5), country: "", refHost: "", browser: "", os: "", device: "", visitor: nil},
		{link: a, at: at(3, 0), bot: true, botReason: "user-agent", device: "bot", visitor: visitor(3)},
		{link: a, at: at(25, 0), country: "US", visitor: visitor(1)}, // next day: visitor 1 is unique again
		{link: l2, at: at(4, 0), country: "JP", visitor: visitor(1)},
	})
	if n := drain(t, b.agg); n != 7 {
		t.Fatalf("aggregated %d rows, want 7", n)
	}
	assertRollupsMatchRaw(t, b.pool)

	type dayRow struct{ clicks, uniques, bots int64 }
	var got dayRow
	if err := b.pool.QueryRow(ctx, `SELECT clicks, unique_visitors, bot_clicks FROM daily_stats WHERE link_id = $1 AND day = $2`,
		a, day).Scan(&got.clicks, &got.uniques, &got.bots); err != nil {
		t.Fatal(err)
	}
	if want := (dayRow{clicks: 4, uniques: 2, bots: 1}); got != want {
		t.Errorf("daily_stats for a on %s = %+v, want %+v", day.Format(dateLayout), got, want)
	}
	var country, unknownBrowser, direct int64
	if err := b.pool.QueryRow(ctx, `
SELECT (SELECT clicks FROM dimension_stats WHERE link_id = $1 AND day = $2 AND dimension = 'country' AND value = 'US'),
       (SELECT clicks FROM dimension_stats WHERE link_id = $1 AND day = $2 AND dimension = 'browser' AND value = 'unknown'),
       (SELECT clicks FROM dimension_stats WHERE link_id = $1 AND day = $2 AND dimension = 'referer' AND value = '(direct)')`,
		a, day).Scan(&country, &unknownBrowser, &direct); err != nil {
		t.Fatal(err)
	}
	if country != 2 || unknownBrowser != 1 || direct != 2 {
		t.Errorf("dimensions: US %d (want 2), unknown browser %d (want 1), (direct) %d (want 2)", country, unknownBrowser, direct)
	}
	_, _, totals := linkTotals(t, b.pool)
	if totals[a] != 5 || totals[l2] != 1 {
		t.Errorf("links.total_clicks = a:%d b:%d, want 5 and 1 (humans only)", totals[a], totals[l2])
	}

	// A second tick finds nothing new and changes nothing.
	if n, err := b.agg.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second RunOnce = %d, %v; want 0", n, err)
	}
	// A returning visitor on a later tick is not a new unique.
	insertClicks(t, b.pool, []click{{link: a, at: at(5, 0), visitor: visitor(2)}, {link: a, at: at(5, 1), visitor: visitor(9)}})
	drain(t, b.agg)
	assertRollupsMatchRaw(t, b.pool)
	if err := b.pool.QueryRow(ctx, `SELECT clicks, unique_visitors, bot_clicks FROM daily_stats WHERE link_id = $1 AND day = $2`,
		a, day).Scan(&got.clicks, &got.uniques, &got.bots); err != nil {
		t.Fatal(err)
	}
	if want := (dayRow{clicks: 6, uniques: 3, bots: 1}); got != want {
		t.Errorf("after second batch daily_stats = %+v, want %+v", got, want)
	}
	if v := metricValue(t, b.agg.metrics.rows); v != 9 {
		t.Errorf("hop_stats_aggregator_rows_total = %v, want 9", v)
	}
}

// Hours are binned from a UTC origin; they must be exactly the UTC hours
// (date_trunc), also at hour edges, before the origin and far from it.
func TestAggregatorHoursAreUTCHours(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := createLink(t, b.pool, "hours")
	var clicks []click
	for _, at := range []time.Time{
		time.Date(1999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(1999, 12, 31, 23, 0, 0, 0, time.UTC), // an hour's edge before the origin
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 30, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 3, 30, 1, 59, 59, 999999000, time.UTC), // a DST change in Europe
		time.Date(2025, 3, 30, 2, 0, 0, 0, time.UTC),
		time.Date(2025, 3, 30, 2, 0, 0, 1000, time.UTC),
		time.Date(2099, 12, 31, 23, 0, 0, 0, time.FixedZone("X", 5*3600+1800)),
	} {
		clicks = append(clicks, click{link: id, at: at, visitor: visitor(1)})
	}
	insertClicks(t, b.pool, clicks)
	if n := drain(t, b.agg); n != int64(len(clicks)) {
		t.Fatalf("aggregated %d rows, want %d", n, len(clicks))
	}
	assertRollupsMatchRaw(t, b.pool)
	var hours int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM hourly_stats WHERE link_id = $1`, id).Scan(&hours); err != nil {
		t.Fatal(err)
	}
	if hours != 6 {
		t.Errorf("hourly_stats has %d hours, want 6", hours)
	}
}

// A transaction that inserted early but commits late must be counted once it commits:
// a watermark on time or sequence would have moved past it.
func TestAggregatorCountsLateCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := createLink(t, b.pool, "late")
	now := time.Now().UTC()

	late, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	insertClicks(t, late, []click{{link: id, at: now.Add(-time.Hour), visitor: visitor(1)}})
	insertClicks(t, b.pool, []click{{link: id, at: now, visitor: visitor(2)}, {link: id, at: now, visitor: visitor(3)}})

	// The open transaction holds the window below its xid, so the later rows wait too.
	if _, err := b.agg.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	humans, _, _ := linkTotals(t, b.pool)
	if humans[id] != 0 {
		t.Fatalf("aggregated %d clicks while an older transaction was open; want 0", humans[id])
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	drain(t, b.agg)
	humans, _, totals := linkTotals(t, b.pool)
	if humans[id] != 3 || totals[id] != 3 {
		t.Fatalf("after the late commit: rollups %d, total_clicks %d; want 3 and 3", humans[id], totals[id])
	}
	drain(t, b.agg)
	assertRollupsMatchRaw(t, b.pool)
}

// A tick that dies at its last moment (connection killed, or context cancelled, just
// before COMMIT) must leave no trace, and the next tick must count everything once.
func TestAggregatorCrashBeforeCommit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		crash func(ctx context.Context, tx pgx.Tx, pool *pgxpool.Pool, cancel context.CancelFunc) error
	}{
		{"connection killed", func(ctx context.Context, tx pgx.Tx, pool *pgxpool.Pool, _ context.CancelFunc) error {
			var pid int
			if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				return err
			}
			_, err := pool.Exec(context.Background(), "SELECT pg_terminate_backend($1, 5000)", pid)
			return err
		}},
		{"context cancelled", func(ctx context.Context, tx pgx.Tx, _ *pgxpool.Pool, cancel context.CancelFunc) error {
			cancel()
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			id := createLink(t, b.pool, "crash")
			rng := rand.New(rand.NewPCG(1, 2))
			clicks := make([]click, 500)
			for i := range clicks {
				clicks[i] = randomClick(rng, []int64{id}, time.Now())
			}
			insertClicks(t, b.pool, clicks)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			crashed := false
			b.agg.beforeCommit = func(ctx context.Context, tx pgx.Tx) error {
				var inRollups int64
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM daily_stats").Scan(&inRollups); err != nil {
					return err
				}
				if crashed || inRollups == 0 {
					return nil // crash only a tick that took rows
				}
				crashed = true
				return tc.crash(ctx, tx, b.pool, cancel)
			}
			if _, err := b.agg.RunOnce(ctx); err == nil || !crashed {
				t.Fatalf("RunOnce = %v, crashed %v; want an error from the tick crashed before commit", err, crashed)
			}
			var rollups, total int64
			if err := b.pool.QueryRow(context.Background(),
				`SELECT (SELECT COALESCE(sum(clicks + bot_clicks), 0)::int8 FROM daily_stats), (SELECT total_clicks FROM links)`).Scan(&rollups, &total); err != nil {
				t.Fatal(err)
			}
			if rollups != 0 || total != 0 {
				t.Fatalf("after the crash: %d clicks in rollups, total_clicks %d; want nothing", rollups, total)
			}
			if got := drain(t, b.agg); got != 500 {
				t.Fatalf("after the crash the aggregator took %d rows, want 500", got)
			}
			assertRollupsMatchRaw(t, b.pool)
		})
	}
}

// Two aggregators ticking at once, while clicks arrive, count every click exactly once.
func TestAggregatorConcurrentInstances(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	links := []int64{createLink(t, b.pool, "x"), createLink(t, b.pool, "y")}
	other := newAggregator(t, b.pool, AggregatorConfig{MaxRowsPerTick: 50})
	b.agg = newAggregator(t, b.pool, AggregatorConfig{MaxRowsPerTick: 50})

	var wg sync.WaitGroup
	done := make(chan struct{})
	var taken atomic.Int64
	for _, a := range []*Aggregator{b.agg, other} {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				n, err := a.RunOnce(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				taken.Add(n)
			}
		})
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var inserted int64
	for range 40 {
		batch := make([]click, 1+rng.IntN(60))
		for i := range batch {
			batch[i] = randomClick(rng, links, time.Now())
		}
		insertClicks(t, b.pool, batch)
		inserted += int64(len(batch))
	}
	close(done)
	wg.Wait()
	taken.Add(drain(t, b.agg))
	if taken.Load() != inserted {
		t.Fatalf("aggregators took %d rows, %d were inserted", taken.Load(), inserted)
	}
	assertRollupsMatchRaw(t, b.pool)
}

// The cap on rows per tick stops only between transactions: one transaction larger
// than the cap is taken whole, smaller ones fill ticks up to the cap.
func TestAggregatorCapTakesWholeTransactions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.agg = newAggregator(t, b.pool, AggregatorConfig{MaxRowsPerTick: 10})
	id := createLink(t, b.pool, "cap")
	rng := rand.New(rand.NewPCG(5, 6))
	batch := func(n int) []click {
		cs := make([]click, n)
		for i := range cs {
			cs[i] = randomClick(rng, []int64{id}, time.Now())
		}
		return cs
	}
	insertClicks(t, b.pool, batch(25)) // one transaction over the cap
	for range 6 {
		insertClicks(t, b.pool, batch(4))
	}
	// Nothing else runs in the test's database, so the ticks are exact: the big
	// transaction alone, then 4-row transactions up to the cap.
	var ticks []int64
	for {
		n, err := b.agg.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		ticks = append(ticks, n)
	}
	if want := []int64{25, 8, 8, 8}; !slices.Equal(ticks, want) {
		t.Errorf("rows per tick = %v, want %v", ticks, want)
	}
	if p := pending(t, b.pool); p != 0 {
		t.Errorf("%d clicks pending after the ticks, want 0", p)
	}
	assertRollupsMatchRaw(t, b.pool)
}

// Property: under concurrent ingest (commits, rollbacks, transactions held open) and
// aggregators started, stopped, cancelled mid-tick and run side by side at random
// points, the rollups always end equal to the committed raw clicks.
func TestAggregatorRandomInterleavings(t *testing.T) {
	t.Parallel()
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			runInterleaving(t, seed)
		})
	}
}

func runInterleaving(t *testing.T, seed uint64) {
	db := testenv.NewDB(t)
	pool := db.Pool
	ctx := context.Background()

	// Another database of the cluster keeps a transaction open, with an xid older than
	// every click, for the whole run: hop's aggregator must not wait for it.
	otherDB := testenv.NewDB(t)
	other, err := otherDB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	links := make([]int64, 5)
	for i := range links {
		links[i] = createLink(t, pool, fmt.Sprint("p", i))
	}
	rng := rand.New(rand.NewPCG(seed, 42))
	maxRows := 5 + rng.IntN(200)

	// Ingest: committed clicks are tallied per link; rolled-back ones must never count.
	var (
		mu       sync.Mutex
		want     = map[int64]int64{}
		wantBots = map[int64]int64{}
		ingest   sync.WaitGroup
	)
	for w := range 4 {
		r := rand.New(rand.NewPCG(seed, uint64(w)))
		ingest.Go(func() {
			for range 25 {
				batch := make([]click, 1+r.IntN(40))
				for i := range batch {
					batch[i] = randomClick(r, links, time.Now())
				}
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if r.IntN(3) == 0 {
					// The transaction takes its xid before it writes a click, as one
					// that writes something else first would: its clicks then carry
					// an xid older than others committed meanwhile.
					if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
						t.Error(err)
						_ = tx.Rollback(ctx)
						return
					}
					time.Sleep(time.Duration(r.IntN(8)) * time.Millisecond)
				}
				if err := copyClicks(ctx, tx, batch); err != nil {
					t.Error(err)
					_ = tx.Rollback(ctx)
					return
				}
				time.Sleep(time.Duration(r.IntN(8)) * time.Millisecond) // commit late
				if r.IntN(8) == 0 {
					_ = tx.Rollback(ctx)
					continue
				}
				if err := tx.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, c := range batch {
					if c.bot {
						wantBots[c.link]++
					} else {
						want[c.link]++
					}
				}
				mu.Unlock()
			}
		})
	}
	ingestDone := make(chan struct{})
	go func() { ingest.Wait(); close(ingestDone) }()

	// Aggregators: each step picks a way to run, or to die.
	cfg := AggregatorConfig{MaxRowsPerTick: maxRows, Interval: time.Millisecond, FinalTimeout: 5 * time.Second}
	for step := 0; ; step++ {
		select {
		case <-ingestDone:
		default:
			switch rng.IntN(4) {
			case 0: // a Run loop stopped at a random point (with its final tick)
				a := newAggregator(t, pool, cfg)
				runCtx, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(20))*time.Millisecond)
				if err := a.Run(runCtx); err != nil {
					t.Fatal(err)
				}
				cancel()
			case 1: // a tick killed at a random moment
				a := newAggregator(t, pool, cfg)
				tickCtx, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(3000))*time.Microsecond)
				_, _ = a.RunOnce(tickCtx) // an error is the point
				cancel()
			case 2: // two instances at once
				a1, a2 := newAggregator(t, pool, cfg), newAggregator(t, pool, cfg)
				var wg sync.WaitGroup
				for _, a := range []*Aggregator{a1, a2} {
					wg.Go(func() {
						if _, err := a.RunOnce(ctx); err != nil {
							t.Error(err)
						}
					})
				}
				wg.Wait()
			case 3: // a pause
				time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
			}
			continue
		}
		break
	}
	// The other database's transaction is still open: drain would give up if it held
	// the window.
	drain(t, newAggregator(t, pool, cfg))
	assertRollupsMatchRaw(t, pool)
	humans, bots, totals := linkTotals(t, pool)
	for _, id := range links {
		if humans[id] != want[id] || bots[id] != wantBots[id] || totals[id] != want[id] {
			t.Errorf("link %d: rollups %d humans %d bots, total_clicks %d; committed %d humans %d bots",
				id, humans[id], bots[id], totals[id], want[id], wantBots[id])
		}
	}
}

// Transactions of other databases in the cluster cannot write hop's tables: one held
// open there, with an xid older than every click, must not delay aggregation. The
// first tick takes every committed click.
func TestAggregatorIgnoresOtherDatabases(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// Another hop on the same cluster, in the middle of writing its own clicks.
	otherDB := testenv.NewDB(t)
	other, err := otherDB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	insertClicks(t, other, []click{{link: createLink(t, otherDB.Pool, "theirs"), at: time.Now(), visitor: visitor(1)}})
	var otherXid uint64
	if err := other.QueryRow(ctx, "SELECT pg_current_xact_id()").Scan(&otherXid); err != nil {
		t.Fatal(err)
	}

	id := createLink(t, b.pool, "ours")
	clicks := make([]click, 5)
	for i := range clicks {
		clicks[i] = click{link: id, at: time.Now().Add(-time.Minute), visitor: visitor(i)}
	}
	insertClicks(t, b.pool, clicks)
	var firstXid uint64
	if err := b.pool.QueryRow(ctx, "SELECT min(xid) FROM click_logs").Scan(&firstXid); err != nil {
		t.Fatal(err)
	}
	if firstXid <= otherXid {
		t.Fatalf("setup: our clicks have xid %d, not above the other database's open %d", firstXid, otherXid)
	}

	if n, err := b.agg.RunOnce(ctx); err != nil || n != 5 {
		t.Fatalf("first tick with a transaction open in another database = %d, %v; want 5, nil", n, err)
	}
	h, err := b.agg.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Lag != 0 || h.HeldBy != nil || h.Err() != nil {
		t.Errorf("Health = %+v (held by %+v), err %v; want no lag, no holder, no error", h, h.HeldBy, h.Err())
	}
	if v := metricValue(t, b.agg.metrics.lag); v != 0 {
		t.Errorf("hop_stats_aggregator_lag_seconds = %v, want 0", v)
	}
	assertRollupsMatchRaw(t, b.pool)
}

// A transaction open in hop's own database may yet write clicks under its xid, so it
// holds back the clicks committed after it. /health names it (pid, age) and reports
// degraded once clicks have waited a minute; the lag gauge shows the wait. When it
// ends, every click is counted once.
func TestAggregatorHeldByOwnTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := createLink(t, b.pool, "held")

	// An operator's psql session that wrote something and was left open.
	hold, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	var pid int
	var xid uint64
	if err := hold.QueryRow(ctx, "SELECT pg_backend_pid(), pg_current_xact_id()").Scan(&pid, &xid); err != nil {
		t.Fatal(err)
	}
	insertClicks(t, b.pool, []click{
		{link: id, at: time.Now().Add(-2 * time.Minute), visitor: visitor(1)},
		{link: id, at: time.Now().Add(-2 * time.Minute), visitor: visitor(2)},
		{link: id, at: time.Now(), visitor: visitor(3)},
	})

	if n, err := b.agg.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("tick while an older transaction of hop's database is open = %d, %v; want 0, nil", n, err)
	}
	if v := metricValue(t, b.agg.metrics.lag); v < 120 {
		t.Errorf("hop_stats_aggregator_lag_seconds = %v, want >= 120 (clicks made 2 minutes ago wait)", v)
	}
	h, err := b.agg.Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case h.HeldBy == nil:
		t.Fatalf("Health = %+v; want held by pid %d", h, pid)
	case h.HeldBy.PID != pid || h.HeldBy.Age <= 0 || h.HeldBy.AgeSeconds != h.HeldBy.Age.Seconds():
		t.Errorf("held by %+v; want pid %d with a positive age", *h.HeldBy, pid)
	case h.Lag < 2*time.Minute:
		t.Errorf("lag %s, want >= 2m", h.Lag)
	}
	if err := h.Err(); !errors.Is(err, ErrHeldBack) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", pid)) {
		t.Errorf("Health.Err() = %v; want ErrHeldBack naming pid %d", err, pid)
	}

	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := drain(t, b.agg); n != 3 {
		t.Fatalf("after the transaction ended the aggregator took %d clicks, want 3", n)
	}
	if h, err = b.agg.Health(ctx); err != nil || h.HeldBy != nil || h.Lag != 0 || h.Err() != nil {
		t.Errorf("Health after it ended = %+v, %v; want nothing held, no lag", h, err)
	}
	if v := metricValue(t, b.agg.metrics.lag); v != 0 {
		t.Errorf("hop_stats_aggregator_lag_seconds after catching up = %v, want 0", v)
	}
	assertRollupsMatchRaw(t, b.pool)
}

// Run ends with one last tick after cancellation, so clicks ingested during shutdown
// are aggregated before the process exits.
func TestAggregatorRunFinalTick(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.agg = newAggregator(t, b.pool, AggregatorConfig{Interval: time.Hour})
	id := createLink(t, b.pool, "final")
	insertClicks(t, b.pool, []click{{link: id, at: time.Now(), visitor: visitor(1)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.agg.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil on cancellation", err)
	}
	humans, _, _ := linkTotals(t, b.pool)
	if humans[id] != 1 {
		t.Fatalf("clicks after Run stopped = %d, want 1 (counted by the final tick)", humans[id])
	}
	if metricValue(t, b.agg.metrics.ticks.WithLabelValues("ok")) < 1 {
		t.Error("final tick not counted in hop_stats_aggregator_ticks_total")
	}
}

func TestRetentionDeletesOnlyAggregatedOldClicks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.agg = newAggregator(t, b.pool, AggregatorConfig{RetentionDays: 30, RetentionBatch: 7, VisitorDays: 3})
	id := createLink(t, b.pool, "old")
	now := time.Now().UTC()
	var old, recent []click
	for i := range 20 {
		old = append(old, click{link: id, at: now.AddDate(0, 0, -40).Add(time.Duration(i) * time.Minute), visitor: visitor(i)})
		recent = append(recent, click{link: id, at: now.Add(-time.Duration(i) * time.Minute), visitor: visitor(i)})
	}
	insertClicks(t, b.pool, old)
	insertClicks(t, b.pool, recent)
	drain(t, b.agg)
	// Old clicks arriving now are not aggregated yet: retention must keep them.
	insertClicks(t, b.pool, old[:5])

	n, err := b.agg.retain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Errorf("retention deleted %d raw clicks, want the 20 aggregated old ones", n)
	}
	var raw, visitorsOld, visitorsRecent int64
	if err := b.pool.QueryRow(ctx, `
SELECT (SELECT count(*) FROM click_logs),
       (SELECT count(*) FROM daily_visitors WHERE day < (now() AT TIME ZONE 'UTC')::date - 3),
       (SELECT count(*) FROM daily_visitors WHERE day >= (now() AT TIME ZONE 'UTC')::date - 3)`).Scan(&raw, &visitorsOld, &visitorsRecent); err != nil {
		t.Fatal(err)
	}
	if raw != 25 || visitorsOld != 0 || visitorsRecent == 0 {
		t.Errorf("after retention: %d raw clicks (want 25), %d old visitor rows (want 0), %d recent (want > 0)",
			raw, visitorsOld, visitorsRecent)
	}
	humans, _, totals := linkTotals(t, b.pool)
	if humans[id] != 40 || totals[id] != 40 {
		t.Errorf("rollups after retention: %d clicks, total_clicks %d; want 40 kept", humans[id], totals[id])
	}
	if v := metricValue(t, b.agg.metrics.deleted); v != 20 {
		t.Errorf("hop_stats_retention_deleted_rows_total = %v, want 20", v)
	}
	// The late old clicks are aggregated, then retention may take them too.
	drain(t, b.agg)
	if n, err := b.agg.retain(ctx); err != nil || n != 5 {
		t.Errorf("second retention = %d, %v; want 5", n, err)
	}
	humans, _, _ = linkTotals(t, b.pool)
	if humans[id] != 45 {
		t.Errorf("rollups = %d clicks, want 45", humans[id])
	}
}

func TestAggregatorHealthAndLag(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	h, err := b.agg.Health(ctx)
	if err != nil || !h.LastRun.IsZero() || h.Lag != 0 {
		t.Fatalf("Health before any tick = %+v, %v; want zero", h, err)
	}
	id := createLink(t, b.pool, "health")
	insertClicks(t, b.pool, []click{{link: id, at: time.Now().Add(-time.Minute)}})
	if h, err = b.agg.Health(ctx); err != nil || h.Lag < time.Minute {
		t.Fatalf("Health with a pending click = %+v, %v; want lag >= 1m", h, err)
	}
	drain(t, b.agg)
	if h, err = b.agg.Health(ctx); err != nil || h.Lag != 0 || time.Since(h.LastRun) > time.Minute {
		t.Fatalf("Health after catching up = %+v, %v; want no lag and a recent run", h, err)
	}
	if v := metricValue(t, b.agg.metrics.lastSuccess); v == 0 {
		t.Error("hop_stats_aggregator_last_success_timestamp_seconds not set")
	}
}

func TestNewAggregatorConfig(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	a := newAggregator(t, db.Pool, AggregatorConfig{})
	if a.cfg.Interval != 2*time.Second || a.cfg.MaxRowsPerTick != 50_000 || a.cfg.RetentionDays != 0 {
		t.Errorf("defaults = %+v", a.cfg)
	}
	if _, err := NewAggregator(AggregatorConfig{RetentionDays: -1}, db.Pool, nil, nil); err == nil {
		t.Error("negative retention accepted")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewAggregator(AggregatorConfig{}, db.Pool, reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := NewAggregator(AggregatorConfig{}, db.Pool, reg, nil); err == nil {
		t.Error("registering the metrics twice on one registry did not fail")
	}
}

// A tick's cost must follow the new rows, not the table: its reads are index scans on
// click_logs_xid_idx, even with many aggregated rows below the watermark.
func TestClickLogsQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `
INSERT INTO click_logs (event_id, link_id, clicked_at)
SELECT gen_random_uuid(), i % 100, now() - i * interval '1 second' FROM generate_series(1, 100000) i`); err != nil {
		t.Fatal(err)
	}
	drain(t, b.agg)
	if _, err := b.pool.Exec(ctx, "ANALYZE click_logs"); err != nil {
		t.Fatal(err)
	}
	var wm uint64
	if err := b.pool.QueryRow(ctx, "SELECT watermark FROM aggregator_state").Scan(&wm); err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]string{"aggregate": aggregateSQL, "cut": cutSQL, "pending": pendingSQL} {
		args := []any{wm, wm + 1000}
		switch name {
		case "cut":
			args = append(args, 50_000)
		case "pending":
			args = args[:1]
		}
		plan := testenv.Plan(t, b.pool, q, args...)
		if strings.Contains(plan, "Seq Scan on click_logs") || !strings.Contains(plan, "click_logs_xid_idx") {
			t.Errorf("%s plan does not use click_logs_xid_idx:\n%s", name, plan)
		}
	}
	// The CSV export reads one link's range through the unique key.
	if plan := testenv.Plan(t, b.pool, csvSelect(7, time.Now().Add(-time.Hour), time.Now())); !strings.Contains(plan, "click_logs_link_event_key") || strings.Contains(plan, "Seq Scan") {
		t.Errorf("CSV export plan does not use click_logs_link_event_key:\n%s", plan)
	}
}

// Retention runs every 10 minutes and mostly finds nothing due. Its plans, the generic
// ones a prepared statement may switch to after five runs included, look for due rows
// through the BRIN index on their time (the old ranges and the newest one), never
// through click_logs_xid_idx (every aggregated click) or the whole table, and delete
// the batch found by TID, rather than joining it back to the table.
func TestRetentionReadsOnlyOldRanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	conn := testenv.Conn(t, b.pool, "")
	exec := func(q string) {
		t.Helper()
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO click_logs (event_id, link_id, clicked_at)
SELECT gen_random_uuid(), i % 100, now() - interval '20 days' + i * interval '10 seconds' FROM generate_series(1, 100000) i`)
	exec(`UPDATE aggregator_state SET watermark = pg_current_xact_id()`) // all aggregated
	exec(`INSERT INTO daily_visitors (link_id, day, visitor_hash)
SELECT l, current_date - d, sha256(int8send(v)) FROM generate_series(0, 6) d, generate_series(1, 100) l, generate_series(1, 100) v
ORDER BY 2, 1`)
	exec(`SET plan_cache_mode = force_generic_plan; PREPARE clicks AS ` + retainClicksSQL + `; PREPARE visitors AS ` + retainVisitorsSQL)

	// Without statistics, due visitor sets are deleted by TID, not by hashing the
	// whole table against the batch.
	plan := testenv.Plan(t, conn, `EXECUTE visitors(current_date - 3, 1000)`)
	if !strings.Contains(plan, "Tid Scan on daily_visitors") || strings.Contains(plan, "Hash") {
		t.Errorf("without statistics, retention does not delete old visitor sets by TID:\n%s", plan)
	}

	// A BRIN index is chosen only knowing how its column follows the table's order,
	// which ANALYZE measures (autovacuum's, or hop restore's).
	exec(`ANALYZE click_logs, daily_visitors`)
	plan = testenv.Plan(t, conn, `EXECUTE clicks(now() - interval '30 days', 1000)`)
	if !strings.Contains(plan, "click_logs_time_idx") || !strings.Contains(plan, "Tid Scan on click_logs") ||
		strings.Contains(plan, "click_logs_xid_idx") || strings.Contains(plan, "Seq Scan on click_logs") {
		t.Errorf("retention does not find old clicks through click_logs_time_idx alone and delete them by TID:\n%s", plan)
	}
	plan = testenv.Plan(t, conn, `EXECUTE visitors(current_date - 3, 1000)`)
	if !strings.Contains(plan, "daily_visitors_day_idx") || !strings.Contains(plan, "Tid Scan on daily_visitors") ||
		strings.Contains(plan, "Seq Scan on daily_visitors") {
		t.Errorf("retention does not find old visitor sets through daily_visitors_day_idx and delete them by TID:\n%s", plan)
	}
}

func TestAggregatorSkipsWhileAnotherHoldsTheLock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := createLink(t, b.pool, "lock")
	insertClicks(t, b.pool, []click{{link: id, at: time.Now()}})
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, tryLockSQL, int64(aggregatorLockKey)); err != nil {
		t.Fatal(err)
	}
	if n, err := b.agg.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("RunOnce while locked = %d, %v; want 0, nil", n, err)
	}
	if v := metricValue(t, b.agg.metrics.ticks.WithLabelValues("skipped")); v != 1 {
		t.Errorf("skipped ticks = %v, want 1", v)
	}
	if err := tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		t.Fatal(err)
	}
	if drain(t, b.agg) != 1 {
		t.Error("the click was not aggregated once the lock was free")
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither counter nor gauge", m.Desc())
	return 0
}

// A tick stopped by the cap says so, so Run goes on at once instead of waiting for the
// next interval (the cap stops below a transaction, so the count alone cannot tell).
func TestCappedTickReportsBacklog(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	link := createLink(t, db.Pool, "capped")
	for tx := range 5 {
		clicks := make([]click, 100)
		for i := range clicks {
			clicks[i] = click{link: link, at: fixedNow.Add(time.Duration(tx*100+i) * time.Second), visitor: visitor(i)}
		}
		insertClicks(t, db.Pool, clicks) // one COPY: one transaction
	}
	a := newAggregator(t, db.Pool, AggregatorConfig{MaxRowsPerTick: 150})
	// The cap falls inside the second transaction, so each tick takes one whole
	// transaction and says more are waiting, until the last.
	type tick struct {
		n    int64
		more bool
	}
	var got []tick
	for {
		n, more, err := a.runOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && !more {
			break
		}
		got = append(got, tick{n, more})
	}
	want := []tick{{100, true}, {100, true}, {100, true}, {100, true}, {100, false}}
	if !slices.Equal(got, want) {
		t.Fatalf("ticks (rows, backlog) = %v, want %v", got, want)
	}
	assertRollupsMatchRaw(t, db.Pool)
}
