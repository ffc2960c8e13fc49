-- +goose Up
-- Every instance keeps the API keys it has verified in memory while it LISTENs on
-- hop_api_keys, and forgets them all on each notice. This trigger sends the notice for
-- any change that could end a key — revocation through hop, an operator's UPDATE or
-- DELETE in psql, a TRUNCATE — when the changing transaction commits.
-- +goose StatementBegin
CREATE FUNCTION hop_api_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hop_api_keys', '');
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER api_keys_changed AFTER UPDATE OF key_hash, revoked_at OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION hop_api_keys_changed();
CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION hop_api_keys_changed();

-- +goose Down
DROP TRIGGER api_keys_truncated ON api_keys;
DROP TRIGGER api_keys_changed ON api_keys;
DROP FUNCTION hop_api_keys_changed();
