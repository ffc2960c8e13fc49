-- +goose Up
-- One unique key on click_logs instead of two indexes: (link_id, clicked_at, event_id)
-- makes a replayed click a conflict as (event_id, clicked_at) did, since a click's link
-- and time travel with its id, and it is also the per-link time index the CSV export
-- reads. Every ingested row updated both before; COPY of 80,000 clicks took 470 ms
-- with both and 357 ms with the one key (1.4 µs of PostgreSQL CPU less per click).
-- It still includes clicked_at, so the table can be range-partitioned by month.
CREATE UNIQUE INDEX click_logs_link_event_key ON click_logs (link_id, clicked_at, event_id);
ALTER TABLE click_logs
    DROP CONSTRAINT click_logs_event_key,
    ADD CONSTRAINT click_logs_link_event_key UNIQUE USING INDEX click_logs_link_event_key;
DROP INDEX click_logs_link_time_idx;

-- +goose Down
CREATE INDEX click_logs_link_time_idx ON click_logs (link_id, clicked_at);
ALTER TABLE click_logs
    DROP CONSTRAINT click_logs_link_event_key,
    ADD CONSTRAINT click_logs_event_key UNIQUE (event_id, clicked_at);
