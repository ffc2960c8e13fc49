-- +goose Up
-- hourly_stats' counters join its primary key, so the last-48-hours part of every stats
-- request is an index-only scan, like the daily and dimension rollups. The aggregator
-- writes a link's hours over time, so they lie on as many heap pages as there are
-- hours; with the heap in that (time) order, reading 48 hours of a link took 0.166 ms of
-- PostgreSQL CPU through the heap and 0.064 ms from the index alone.
ALTER TABLE hourly_stats
    DROP CONSTRAINT hourly_stats_pkey,
    ADD CONSTRAINT hourly_stats_pkey PRIMARY KEY (link_id, hour) INCLUDE (clicks, bot_clicks);

-- +goose Down
ALTER TABLE hourly_stats
    DROP CONSTRAINT hourly_stats_pkey,
    ADD CONSTRAINT hourly_stats_pkey PRIMARY KEY (link_id, hour);
