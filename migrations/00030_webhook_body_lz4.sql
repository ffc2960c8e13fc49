-- +goose Up
-- Delivery bodies (about 30 kB of JSON per batch of 100 clicks) are compressed with lz4
-- instead of pglz: 80-110 µs an insert against 200-260 µs, for about the same size.
-- The change applies to rows written from now on, and takes a lock of milliseconds. A
-- PostgreSQL built without lz4 keeps pglz.
SET LOCAL lock_timeout = '5s';
-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE webhook_deliveries ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: webhook bodies stay compressed with pglz';
END $$;
-- +goose StatementEnd

-- +goose Down
SET LOCAL lock_timeout = '5s';
ALTER TABLE webhook_deliveries ALTER COLUMN body SET COMPRESSION default;
