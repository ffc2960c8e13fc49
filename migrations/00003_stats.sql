-- +goose Up
-- Rollups written by the stats aggregator. Every rollup is additive: a tick only adds
-- the clicks it takes from click_logs, in the same transaction that advances
-- aggregator_state.watermark, so each click is counted exactly once. Clicks counts
-- humans only; bot clicks are kept apart in bot_clicks. Days and hours are UTC.

-- daily_stats: per link and UTC day. unique_visitors is exact per day (see daily_visitors).
-- The counters are included in the key so the stats API reads settled days with
-- index-only scans (at the price of non-HOT updates for the few days still changing).
CREATE TABLE daily_stats (
    link_id         bigint NOT NULL,
    day             date NOT NULL,
    clicks          bigint NOT NULL DEFAULT 0,
    unique_visitors bigint NOT NULL DEFAULT 0,
    bot_clicks      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, day) INCLUDE (clicks, unique_visitors, bot_clicks)
);
-- The /stats overview sums every link over a range of days.
CREATE INDEX daily_stats_day_idx ON daily_stats (day);

-- daily_visitors: the set of human visitor hashes seen per link and UTC day. A tick
-- inserts with ON CONFLICT DO NOTHING and adds only the rows it inserted to
-- daily_stats.unique_visitors. Old days are pruned by the aggregator (VisitorDays).
CREATE TABLE daily_visitors (
    link_id      bigint NOT NULL,
    day          date NOT NULL,
    visitor_hash bytea NOT NULL,
    PRIMARY KEY (link_id, day, visitor_hash)
);
CREATE INDEX daily_visitors_day_idx ON daily_visitors USING brin (day);

-- dimension_stats: human clicks per link, UTC day, dimension and value. clicks is
-- included in the key so the stats API reads old days with index-only scans.
CREATE TABLE dimension_stats (
    link_id   bigint NOT NULL,
    day       date NOT NULL,
    dimension text NOT NULL CHECK (dimension IN ('country', 'referer', 'browser', 'os', 'device')),
    value     text NOT NULL,
    clicks    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, day, dimension, value) INCLUDE (clicks)
);

-- hourly_stats: per link and UTC hour, for time-zone-correct daily series and the
-- last-48-hours view.
CREATE TABLE hourly_stats (
    link_id    bigint NOT NULL,
    hour       timestamptz NOT NULL,
    clicks     bigint NOT NULL DEFAULT 0,
    bot_clicks bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, hour)
);
-- Rows arrive in time order, so a BRIN index serves the overview's range over all links.
CREATE INDEX hourly_stats_hour_idx ON hourly_stats USING brin (hour);

-- aggregator_state: one row. Every click_logs row with xid < watermark has been
-- aggregated; rows at or above it have not.
CREATE TABLE aggregator_state (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    watermark   xid8 NOT NULL DEFAULT '0',
    last_run_at timestamptz,
    rows_total  bigint NOT NULL DEFAULT 0
);
INSERT INTO aggregator_state (id) VALUES (1);

-- links.stats_version is bumped by every tick that adds clicks of the link, so a stats
-- response computed at version v can be reused exactly as long as the version is v.
ALTER TABLE links ADD COLUMN stats_version bigint NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE links DROP COLUMN stats_version;
DROP TABLE aggregator_state;
DROP TABLE hourly_stats;
DROP TABLE dimension_stats;
DROP TABLE daily_visitors;
DROP TABLE daily_stats;
