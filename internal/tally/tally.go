// Package tally reads counts kept as appended rows of +1 and -1 (see migration 00029):
// writers never wait on a shared counter row, and readers fold the rows into one per
// key once there are many more rows than keys, so a read stays short.
package tally

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// DB is what Read needs of a pool.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Count is one key's count.
type Count[K any] struct {
	Key K
	N   int64
}

// Read runs list, which returns per key: the key, the sum of its rows and how many
// rows it summed. It returns the keys with a positive sum, in list's order. When there
// are more than twice as many rows as keys, and slack more, it then runs fold, which
// replaces the rows it sees by one per key (rows appended meanwhile are not seen and
// stay).
//
// The counts are read before the fold, in one snapshot, so a fold never changes them
// and its failure does not fail the read: a fold that fails (cancelled with its
// request, say) leaves the rows as they were, and a later read folds them. Only one
// fold of a table runs at a time; a read that finds another one running skips its own.
// Two folds at once are correct (each deletes rows the other has not), but on a large
// backlog they can deadlock, each waiting on rows the other deleted.
func Read[K any](ctx context.Context, db DB, list, fold string) ([]Count[K], error) {
	rows, err := db.Query(ctx, list)
	if err != nil {
		return nil, err
	}
	out := []Count[K]{}
	var (
		c          Count[K]
		n          int64
		keys, seen int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&c.Key, &c.N, &n}, func() error {
		keys, seen = keys+1, seen+n
		if c.N > 0 {
			out = append(out, c)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if seen > 2*keys+slack {
		_ = runFold(ctx, db, list, fold)
	}
	return out, nil
}

// runFold runs fold unless another fold of the same counts (named by their list
// query) holds the lock.
func runFold(ctx context.Context, db DB, list, fold string) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	var mine bool
	if err := tx.QueryRow(ctx, LockSQL, list).Scan(&mine); err != nil || !mine {
		return err
	}
	if _, err := tx.Exec(ctx, fold); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// LockSQL takes the fold lock of the counts that list ($1) reads, for the transaction.
// The two-key form keeps these locks apart from hop's one-key advisory locks (the
// aggregator's, the webhooks', goose's).
const LockSQL = `SELECT pg_try_advisory_xact_lock(x'686f70'::int, hashtext($1))`

// slack is how many changes a read waits for before it folds, however few the keys: a
// fold is a write. Waiting for as many changes as there are keys keeps a read to at
// most three times the keys' rows plus slack, and a fold's cost to one row per change.
const slack = 256
