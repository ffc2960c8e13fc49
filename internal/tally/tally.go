// Package tally reads counts kept as appended rows of +1 and -1 (see migration 00029):
// writers never wait on a shared counter row, and readers fold the rows into one per
// key once there are many more rows than keys, so a read stays short.
package tally

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what Read needs of a pool.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Count is one key's count.
type Count[K any] struct {
	Key K
	N   int64
}

// Read runs list, which returns per key: the key, the sum of its rows and how many
// rows it summed. It returns the keys with a positive sum, in list's order. When there
// are more than twice as many rows as keys, and slack more, it then runs fold, which replaces the
// rows it sees by one per key (rows appended meanwhile are not seen and stay, so two
// folds at once delete disjoint rows).
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
		if _, err := db.Exec(ctx, fold); err != nil {
			return nil, fmt.Errorf("fold: %w", err)
		}
	}
	return out, nil
}

// slack is how many changes a read waits for before it folds, however few the keys: a
// fold is a write. Waiting for as many changes as there are keys keeps a read at most
// three times the keys' rows, and a fold's cost at one row per change.
const slack = 256
