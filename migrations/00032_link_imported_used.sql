-- +goose Up
-- imported_used is what an imported link's source had used of max_clicks. It stays
-- apart from clicks_used, which the redirect counts, so a limit removed and set again
-- starts from it plus hop's own clicks instead of forgetting it. A constant default
-- and a NOT VALID check change only the catalogue: no rewrite, no scan of links.
SET LOCAL lock_timeout = '5s';
ALTER TABLE links
    ADD COLUMN imported_used bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT links_imported_used_check CHECK (imported_used >= 0) NOT VALID;

-- +goose Down
SET LOCAL lock_timeout = '5s';
ALTER TABLE links DROP COLUMN imported_used;
