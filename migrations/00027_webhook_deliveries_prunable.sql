-- +goose NO TRANSACTION
-- +goose Up
-- The deliveries pruning may delete (pruneSQL in modules/webhooks): delivered ones and
-- failed pings, by webhook, oldest first. Before it a prune read and skipped every
-- failed batch the webhook keeps for re-sending, or walked the whole table by its
-- primary key, once a minute. The predicate is written with equalities, as the prune
-- is, so that without statistics PostgreSQL estimates few rows through this index
-- rather than as many as through webhook_deliveries_recent_idx. It holds neither failed
-- batches nor pending deliveries, so between prunes it is about as large as what the
-- next prune deletes. Marking a batch delivered was never a HOT update (status is in
-- webhook_deliveries_head_key's predicate); it now adds one entry here.
-- Built CONCURRENTLY (hence NO TRANSACTION) so deliveries keep being written while a
-- large table is indexed; a build that failed half-way leaves an INVALID index, dropped
-- first so that running this again succeeds.
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_prunable_idx;
CREATE INDEX CONCURRENTLY webhook_deliveries_prunable_idx ON webhook_deliveries (webhook_id, id)
    WHERE status = 'delivered' OR (status = 'failed' AND kind = 'ping');

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS webhook_deliveries_prunable_idx;
