-- +goose Up
-- Keys that came from HOP_API_KEY or were generated at first start are bootstrap keys:
-- at start hop revokes every bootstrap key except the configured one, so changing
-- HOP_API_KEY ends the old key.
ALTER TABLE api_keys ADD COLUMN bootstrap boolean NOT NULL DEFAULT false;
UPDATE api_keys SET bootstrap = true WHERE name IN ('HOP_API_KEY', 'generated at first start');
-- A listing shows at most 8 characters of a key.
UPDATE api_keys SET prefix = left(prefix, 8) WHERE length(prefix) > 8;
-- Instances also forget the wrong keys they remember when a key is added, so a key
-- tried before another instance stored it is accepted as soon as it is stored.
CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION hop_api_keys_changed();

-- +goose Down
DROP TRIGGER api_keys_inserted ON api_keys;
ALTER TABLE api_keys DROP COLUMN bootstrap;
