// Package horizon holds the one rule for where clicks are final: the aggregator's
// exactly-once watermark, the live feed and the webhook deliveries all read
// click_logs only below this horizon, so none of them can skip a late commit.
package horizon

import (
	"context"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SQL returns (as xid8) the lowest xid that may still commit rows into click_logs: the
// lowest xid still running in this database (or prepared in it), else the first xid
// not yet assigned when the statement's snapshot was taken. Every row below it is
// final. Transactions of other databases in the cluster cannot write hop's tables and
// are left out, so they never hold readers back (pg_snapshot_xmin would count them).
//
// The snapshot is taken when the statement starts and pg_stat_activity is read after,
// so a transaction running at the snapshot that is not listed had ended by then. A
// transaction that gets its xid later gets one at or above the snapshot's xmax.
// backend_xid and datname are shown to every role. A transaction must not read
// pg_stat_activity before this, or it would see its cached copy, older than the
// snapshot.
const SQL = `
WITH open AS (
    SELECT backend_xid AS xid FROM pg_stat_activity
    WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()
    UNION ALL
    SELECT transaction FROM pg_prepared_xacts WHERE database = current_database()
)
SELECT COALESCE((SELECT min(x) FROM pg_snapshot_xip(s) x WHERE x::xid IN (SELECT xid FROM open)),
                pg_snapshot_xmax(s))
FROM pg_current_snapshot() s`

// Querier runs SQL: a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Read returns the horizon (see SQL).
func Read(ctx context.Context, q Querier) (uint64, error) {
	var h uint64
	if err := q.QueryRow(ctx, SQL).Scan(&h); err != nil {
		return 0, fmt.Errorf("read horizon: %w", err)
	}
	return h, nil
}

// Position orders clicks: by the inserting transaction, then by event id. A position
// whose XID is below the horizon is final: no click can appear before it later. The
// live feed and the webhook cursors both move along positions.
type Position struct {
	XID   uint64
	Event uuid.UUID
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	if p.XID != q.XID {
		return p.XID < q.XID
	}
	return string(p.Event[:]) < string(q.Event[:])
}

// Reached reports whether nothing below the horizon h can follow p: p is at the start
// of a transaction the horizon has not passed.
func (p Position) Reached(h uint64) bool { return h <= p.XID && p.Event == uuid.Nil }

// FormatXID and ParseXID carry an xid as text, the form the readers' queries take
// and give it in ($1::text::xid8, xid::text).
func FormatXID(x uint64) string { return strconv.FormatUint(x, 10) }

// ParseXID reads an xid written by FormatXID or PostgreSQL's xid8 output.
func ParseXID(s string) (uint64, error) {
	x, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse xid %q: %w", s, err)
	}
	return x, nil
}
