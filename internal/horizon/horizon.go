// Package horizon holds the one rule for where clicks are final: the aggregator's
// exactly-once watermark, the live feed and the webhook deliveries all read
// click_logs only below this horizon, so none of them can skip a late commit.
package horizon

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

// TextSQL is SQL answering as text, for readers that parse the xid themselves.
const TextSQL = `SELECT (` + SQL + `)::text`
