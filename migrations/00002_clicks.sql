-- +goose Up
-- click_logs: one row per click, written in batches by the ingest consumer.
-- event_id (UUIDv7 made at redirect time) is the idempotency key: a replayed batch
-- inserts nothing twice. The unique key includes clicked_at, which is fixed per event,
-- so the table can later be range-partitioned by month without changing semantics.
-- xid records the inserting transaction: the aggregator only takes rows whose
-- transaction is below every running snapshot, so late commits are never skipped.
CREATE TABLE click_logs (
    event_id     uuid NOT NULL,
    link_id      bigint NOT NULL,
    clicked_at   timestamptz NOT NULL,
    ip           text NOT NULL DEFAULT '',      -- anonymised: IPv4 /24, IPv6 /48
    country      text NOT NULL DEFAULT '',      -- ISO 3166-1 alpha-2, '' when unknown
    referer      text NOT NULL DEFAULT '',      -- full referer, bounded length
    referer_host text NOT NULL DEFAULT '(direct)',
    user_agent   text NOT NULL DEFAULT '',      -- bounded length
    browser      text NOT NULL DEFAULT '',
    os           text NOT NULL DEFAULT '',
    device       text NOT NULL DEFAULT '',      -- desktop | mobile | tablet | bot | other
    is_bot       boolean NOT NULL DEFAULT false,
    bot_reason   text NOT NULL DEFAULT '',
    visitor_hash bytea,                          -- keyed hash (daily salt, link, ip, ua)
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT click_logs_event_key UNIQUE (event_id, clicked_at)
);
CREATE INDEX click_logs_xid_idx ON click_logs (xid);
CREATE INDEX click_logs_link_time_idx ON click_logs (link_id, clicked_at);
CREATE INDEX click_logs_time_idx ON click_logs USING brin (clicked_at);

-- visitor_salts: one random salt per UTC day, shared by every instance. Salts older
-- than two days are deleted, so visitor hashes can never be reversed afterwards.
CREATE TABLE visitor_salts (
    day        date PRIMARY KEY,
    salt       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE visitor_salts;
DROP TABLE click_logs;
