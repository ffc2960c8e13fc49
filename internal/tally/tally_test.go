package tally_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/tally"
	"github.com/hop-dev/hop/internal/testenv"
)

const (
	list = `SELECT k, sum(n)::int8, count(*) FROM t GROUP BY k ORDER BY 2 DESC, 1`
	fold = `WITH gone AS (DELETE FROM t RETURNING k, n) INSERT INTO t SELECT k, sum(n) FROM gone GROUP BY k HAVING sum(n) <> 0`
)

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
	counts, err := tally.Read[string](t.Context(), pool, list, fold)
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

// A read returns the positive sums in the list's order and leaves the rows alone until
// they outnumber the keys; then it folds them into one per key with a count, and keys
// whose links are all gone disappear.
func TestReadFoldsOnceRowsOutnumberKeys(t *testing.T) {
	t.Parallel()
	pool := newTable(t)
	ctx := t.Context()
	// a: 3, b: 1, gone: +1 -1.
	if _, err := pool.Exec(ctx, `INSERT INTO t VALUES ('a', 1), ('a', 1), ('a', 1), ('b', 1), ('gone', 1), ('gone', -1)`); err != nil {
		t.Fatal(err)
	}
	counts, err := tally.Read[string](ctx, pool, list, fold)
	if err != nil {
		t.Fatal(err)
	}
	if want := []tally.Count[string]{{Key: "a", N: 3}, {Key: "b", N: 1}}; !slices.Equal(counts, want) {
		t.Fatalf("counts = %v, want %v", counts, want)
	}
	if n := rowCount(t, pool); n != 6 {
		t.Fatalf("rows after a read of few changes = %d, want 6 (not folded)", n)
	}

	// 400 more changes to b: now more than twice the keys plus the slack.
	if _, err := pool.Exec(ctx, `INSERT INTO t SELECT 'b', CASE WHEN i % 2 = 0 THEN 1 ELSE -1 END FROM generate_series(1, 400) i`); err != nil {
		t.Fatal(err)
	}
	if got, want := read(t, pool), map[string]int64{"a": 3, "b": 1}; !maps.Equal(got, want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
	if n := rowCount(t, pool); n != 2 {
		t.Fatalf("rows after the fold = %d, want 2 (one per key with links)", n)
	}
	if got, want := read(t, pool), map[string]int64{"a": 3, "b": 1}; !maps.Equal(got, want) {
		t.Fatalf("counts after the fold = %v, want %v", got, want)
	}
}

// Writers append while readers fold, several at once: every committed change is
// counted exactly once and none rolled back is.
func TestFoldsRacingWritersCountEveryChangeOnce(t *testing.T) {
	t.Parallel()
	pool := newTable(t)
	ctx := t.Context()
	const writers, changes = 4, 600
	var (
		mu   sync.Mutex
		want = map[string]int64{}
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			for i := range changes {
				key := fmt.Sprintf("k%d", (w+i)%5)
				delta := int64(1)
				if i%3 == 2 {
					delta = -1
				}
				if err := appendChange(ctx, pool, key, delta, i%10 == 9); err != nil {
					t.Error(err)
					return
				}
				if i%10 != 9 { // the tenth is rolled back
					mu.Lock()
					want[key] += delta
					mu.Unlock()
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 3 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := tally.Read[string](ctx, pool, list, fold); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	if n := rowCount(t, pool); n >= writers*changes*9/10 {
		t.Fatalf("%d rows left of %d committed: no fold ran alongside the writers", n, writers*changes*9/10)
	}
	for k, n := range want {
		if n <= 0 {
			delete(want, k)
		}
	}
	if got := read(t, pool); !maps.Equal(got, want) {
		t.Fatalf("counts = %v, want %v", got, want)
	}
}

// appendChange adds one row in its own transaction, the way a link's trigger does,
// and rolls it back when asked.
func appendChange(ctx context.Context, pool *pgxpool.Pool, key string, delta int64, rollback bool) error {
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
	return tx.Commit(ctx)
}
