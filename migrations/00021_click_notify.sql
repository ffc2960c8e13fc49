-- +goose Up
-- The live feed and the webhook dispatcher tail click_logs. Every statement that
-- inserts clicks (the ingest COPY, its ON CONFLICT fallback) notifies hop_clicks once;
-- PostgreSQL delivers it only after the transaction commits, to every instance that
-- listens, so a click ingested by one instance wakes the readers of all of them.
-- A statement trigger costs one call per batch, not per row, and covers every writer.
-- The payload is the committing transaction's xid: a reader whose horizon is still
-- below it (an older transaction, such as an aggregator tick, is still open) knows to
-- look again shortly rather than wait for the next notification.
-- +goose StatementBegin
CREATE FUNCTION hop_clicks_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hop_clicks', pg_current_xact_id()::text);
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER click_logs_notify AFTER INSERT ON click_logs
    FOR EACH STATEMENT EXECUTE FUNCTION hop_clicks_notify();

-- +goose Down
DROP TRIGGER click_logs_notify ON click_logs;
DROP FUNCTION hop_clicks_notify();
