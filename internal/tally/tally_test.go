package tally_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/tally"
	"github.com/hop-dev/hop/internal/testenv"
)

var table = tally.Table{
	List: `SELECT k, sum(n)::int8, count(*) FROM t GROUP BY k ORDER BY 2 DESC, 1`,
	Fold: `WITH gone AS (DELETE FROM t RETURNING k, n) INSERT INTO t SELECT k, sum(n) FROM gone GROUP BY k HAVING sum(n) <> 0`,
}

func newTable(t *testing.T) *pgxpool.Pool {
	t.Helper()
	db := testenv.NewDB(t)
	if _, err := db.Pool.Exec(t.Context(), `CREATE TABLE t (k text NOT NULL, n bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return db.Pool
}

func read(t *testing.T, pool *pgxpool.Pool) map[string]int64 {
	t.Helper()
	counts, err := tally.Read[string](t.Context(), pool, table)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, c := range counts {
		out[c.Key] = c.N
	}
	return out
}

func rowCount(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM t`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A read returns the positive sums in the list's order and never writes. The folder
// leaves the rows alone until they outnumber the keys; then it folds them into one per
// key with a count, and keys whose links are all gone disappear.
func TestFoldOnceRowsOutnumberKeys(t *testing.T) {
	t.Parallel()
	pool := newTable(t)
	ctx := t.Context()
	folder := tally.NewFolder(pool, []tally.Table{table}, 0, nil)
	// a: 3, b: 1, gone: +1 -1.
	if _, err := pool.Exec(ctx, `INSERT INTO t VALUES ('a', 1), ('a', 1), ('a', 1), ('b', 1), ('gone', 1), ('gone', -1)`); err != nil {
		t.Fatal(err)
	}
	counts, err := tally.Read[string](ctx, pool, table)
	if err != nil {
		t.Fatal(err)
	}
	if want := []tally.Count[string]{{Key: "a", N: 3}, {Key: "b", N: 1}}; !slices.Equal(counts, want) {
		t.Fatalf("counts = %v, want %v", counts, want)
	}
	if err := folder.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, pool); n != 6 {
		t.Fatalf("rows after a fold pass over few changes = %d, want 6 (not folded)", n)
	}

	// 400 more changes to b: now more than twice the keys plus the slack.
	if _, err := pool.Exec(ctx, `INSERT INTO t SELECT 'b', CASE WHEN i % 2 = 0 THEN 1 ELSE -1 END FROM generate_series(1, 400) i`); err != nil {
		t.Fatal(err)
	}
	if got, want := read(t, pool), map[string]int64{"a": 3, "b": 1}; !maps.Equal(got, want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
	if n := rowCount(t, pool); n != 406 {
		t.Fatalf("rows after a read = %d, want 406: a read never writes", n)
	}
	if err := folder.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, pool); n != 2 {
		t.Fatalf("rows after the fold = %d, want 2 (one per key with links)", n)
	}
	if got, want := read(t, pool), map[string]int64{"a": 3, "b": 1}; !maps.Equal(got, want) {
		t.Fatalf("counts after the fold = %v, want %v", got, want)
	}
}

// Writers append while readers read and folders fold, several at once: every read
// returns a state between the changes committed before it began and those committed by
// its end, and in the end every committed change is counted exactly once and none
// rolled back is.
func TestFoldsRacingWritersCountEveryChangeOnce(t *testing.T) {
	t.Parallel()
	pool := newTable(t)
	ctx := t.Context()
	const writers, changes = 4, 600
	var (
		// started counts the commits asked for and committed those that returned: a read
		// sees at least the latter and at most the former.
		started, committed atomic.Int64
		mu                 sync.Mutex
		want               = map[string]int64{}
		wg                 sync.WaitGroup
		done               = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			for i := range changes {
				key := fmt.Sprintf("k%d", (w+i)%5)
				rollback := i%10 == 9
				if err := appendChange(ctx, pool, key, 1, rollback, &started); err != nil {
					t.Error(err)
					return
				}
				if !rollback {
					committed.Add(1)
					mu.Lock()
					want[key]++
					mu.Unlock()
				}
			}
		})
	}
	var others sync.WaitGroup
	for range 2 {
		others.Go(func() {
			folder := tally.NewFolder(pool, []tally.Table{table}, 0, nil)
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := folder.RunOnce(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
		others.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				low := committed.Load()
				counts, err := tally.Read[string](ctx, pool, table)
				high := started.Load()
				if err != nil {
					t.Error(err)
					return
				}
				var total int64
				for _, c := range counts {
					total += c.N
				}
				if total < low || total > high {
					t.Errorf("a read counted %d changes while %d to %d were committed", total, low, high)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	others.Wait()
	if n := rowCount(t, pool); n >= writers*changes*9/10 {
		t.Fatalf("%d rows left of %d committed: no fold ran alongside the writers", n, writers*changes*9/10)
	}
	if got := read(t, pool); !maps.Equal(got, want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
}

// A fold is upkeep: when another fold holds the lock the folder skips its own, and a
// fold that fails leaves the rows as they were, for the next pass.
func TestFoldSkipsWhenLockedAndKeepsRowsWhenItFails(t *testing.T) {
	t.Parallel()
	pool := newTable(t)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `INSERT INTO t SELECT 'a', 1 FROM generate_series(1, 400)`); err != nil {
		t.Fatal(err)
	}
	other, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var held bool
	if err := other.QueryRow(ctx, tally.LockSQL, table.List).Scan(&held); err != nil || !held {
		t.Fatalf("take the fold lock: %v, %v", held, err)
	}
	if err := tally.NewFolder(pool, []tally.Table{table}, 0, nil).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, pool); n != 400 {
		t.Fatalf("rows = %d while another fold held the lock, want 400 (not folded)", n)
	}
	if err := other.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	failing := tally.Table{List: table.List, Fold: `INSERT INTO t VALUES (NULL, 1)`} // k is NOT NULL
	if err := tally.NewFolder(pool, []tally.Table{failing}, 0, nil).RunOnce(ctx); err == nil {
		t.Fatal("a failing fold reported no error")
	}
	if n := rowCount(t, pool); n != 400 {
		t.Fatalf("rows = %d after a failed fold, want the 400 as they were", n)
	}
	if got := read(t, pool); got["a"] != 400 || len(got) != 1 {
		t.Fatalf("counts after a failed fold = %v, want a: 400", got)
	}
	if err := tally.NewFolder(pool, []tally.Table{table}, 0, nil).RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rowCount(t, pool); n != 1 {
		t.Fatalf("rows = %d after a fold, want 1", n)
	}
}

// appendChange adds one row in its own transaction, the way a link's trigger does,
// and rolls it back when asked. started counts the commits it is about to make.
func appendChange(ctx context.Context, pool *pgxpool.Pool, key string, delta int64, rollback bool, started *atomic.Int64) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO t VALUES ($1, $2)`, key, delta); err != nil {
		return err
	}
	if rollback {
		return nil
	}
	started.Add(1)
	return tx.Commit(ctx)
}
