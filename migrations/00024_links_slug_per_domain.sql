-- +goose NO TRANSACTION
-- +goose Up
-- A slug is unique per domain (issue 19). The new unique index is built CONCURRENTLY,
-- which cannot run inside a transaction (hence NO TRANSACTION): links stay readable and
-- writable while it is built. A build that failed half-way leaves an INVALID index,
-- dropped first so that running this again succeeds. The old one-domain constraint is
-- dropped only once the new index exists, so a slug is never unguarded; dropping it is a
-- catalog change held for milliseconds (lock_timeout: fail rather than queue behind a
-- long transaction; IF EXISTS: a run that failed after it can be run again). Lookups
-- by (domain_id, slug) use the new index.
SET lock_timeout = '5s';
DROP INDEX CONCURRENTLY IF EXISTS links_domain_slug_key;
CREATE UNIQUE INDEX CONCURRENTLY links_domain_slug_key ON links (domain_id, slug);
ALTER TABLE links DROP CONSTRAINT IF EXISTS links_slug_key;
-- Lists filtered by domain page newest first like the unfiltered list.
DROP INDEX CONCURRENTLY IF EXISTS links_live_domain_id_idx;
CREATE INDEX CONCURRENTLY links_live_domain_id_idx ON links (domain_id, id DESC) WHERE deleted_at IS NULL;
RESET lock_timeout;

-- +goose Down
SET lock_timeout = '5s';
DROP INDEX CONCURRENTLY IF EXISTS links_live_domain_id_idx;
-- Fails while a slug exists on two domains: such links must go first.
CREATE UNIQUE INDEX CONCURRENTLY links_slug_key ON links (slug);
ALTER TABLE links ADD CONSTRAINT links_slug_key UNIQUE USING INDEX links_slug_key;
DROP INDEX CONCURRENTLY links_domain_slug_key;
RESET lock_timeout;
