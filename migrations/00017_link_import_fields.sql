-- +goose Up
-- Fields links bring from other shorteners (issue 22). title is a label only.
-- imported_clicks is the click total the source had counted before the link came to
-- hop; it is shown beside hop's own counts and never added to them.
ALTER TABLE links
    ADD COLUMN title           text,
    ADD COLUMN imported_clicks bigint NOT NULL DEFAULT 0 CHECK (imported_clicks >= 0);

-- +goose Down
ALTER TABLE links
    DROP COLUMN imported_clicks,
    DROP COLUMN title;
