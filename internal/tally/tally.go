// Package tally reads counts kept as appended rows of +1 and -1 (see migration 00029):
// writers never wait on a shared counter row. Readers only sum; a Folder, in the
// background, replaces a table's rows by one per key once there are many more rows
// than keys, so a read stays short and never writes.
package tally

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hop-dev/hop/internal/tick"
	"github.com/jackc/pgx/v5"
)

// DB is what reads and folds need of a pool.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Table is one table of counts, as the module that owns it reads and folds it.
type Table struct {
	// List returns per key: the key, the sum of its rows and how many rows it summed.
	List string
	// Fold replaces the rows it sees by one per key with a sum other than 0. Rows
	// appended meanwhile are not seen and stay.
	Fold string
}

// Count is one key's count.
type Count[K any] struct {
	Key K
	N   int64
}

// Read returns the keys of t with a positive sum, in List's order, from one snapshot.
func Read[K any](ctx context.Context, db DB, t Table) ([]Count[K], error) {
	out := []Count[K]{}
	_, _, err := scan(ctx, db, t, func(c Count[K]) {
		if c.N > 0 {
			out = append(out, c)
		}
	})
	return out, err
}

// scan runs t.List, passes each key's count to each, and returns how many keys and
// rows it saw.
func scan[K any](ctx context.Context, db DB, t Table, each func(Count[K])) (keys, rows int64, err error) {
	res, err := db.Query(ctx, t.List)
	if err != nil {
		return 0, 0, err
	}
	var (
		c Count[K]
		n int64
	)
	_, err = pgx.ForEachRow(res, []any{&c.Key, &c.N, &n}, func() error {
		keys, rows = keys+1, rows+n
		each(c)
		return nil
	})
	return keys, rows, err
}

// Folder folds tables of counts in the background.
type Folder struct {
	db       DB
	tables   []Table
	interval time.Duration
	logger   *slog.Logger
}

// NewFolder folds tables every interval (default 10 s) when they are due.
func NewFolder(db DB, tables []Table, interval time.Duration, logger *slog.Logger) *Folder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Folder{db: db, tables: tables, interval: cmp.Or(interval, 10*time.Second), logger: logger}
}

// Run folds until ctx is cancelled. A failed fold is logged and tried at the next tick:
// it leaves the rows as they were, and reads stay exact, only longer.
func (f *Folder) Run(ctx context.Context) error {
	return tick.Every(ctx, f.interval, func(ctx context.Context) {
		if err := f.RunOnce(ctx); err != nil && ctx.Err() == nil {
			f.logger.Warn("folding link counts failed; reads stay exact", "error", err)
		}
	})
}

// RunOnce folds each table that holds more than twice as many rows as keys, and slack
// more. Only one fold of a table runs at a time, whatever the instances: two at once
// are correct (each deletes rows the other has not) but can deadlock on a large
// backlog, each waiting on rows the other deleted.
func (f *Folder) RunOnce(ctx context.Context) error {
	for _, t := range f.tables {
		keys, rows, err := scan(ctx, f.db, t, func(Count[any]) {})
		if err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		if rows <= 2*keys+slack {
			continue
		}
		if err := fold(ctx, f.db, t); err != nil {
			return fmt.Errorf("fold counts: %w", err)
		}
	}
	return nil
}

// fold runs t.Fold unless another fold of t holds the lock.
func fold(ctx context.Context, db DB, t Table) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	var mine bool
	if err := tx.QueryRow(ctx, LockSQL, t.List).Scan(&mine); err != nil || !mine {
		return err
	}
	if _, err := tx.Exec(ctx, t.Fold); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// LockSQL takes the fold lock of the table whose List is $1, for the transaction. The
// two-key form keeps these locks apart from hop's one-key advisory locks (the
// aggregator's, the webhooks', goose's).
const LockSQL = `SELECT pg_try_advisory_xact_lock(x'686f70'::int, hashtext($1))`

// slack is how many changes a table takes before it is folded, however few its keys:
// a fold is a write. Waiting for as many changes as there are keys keeps a read to at
// most three times the keys' rows plus slack and what a tick's worth of changes adds,
// and a fold's cost to one row per change.
const slack = 256
