-- +goose Up
-- webhooks: click subscriptions. The secret is sealed (AES-256-GCM) with the
-- "webhook_key" instance secret, so a copy of this table alone cannot sign requests.
-- (cursor_xid, cursor_event) is the last click_logs position delivered: every click
-- at or before it (ordered by xid, then event_id) has been answered 2xx, or given up
-- on as a failed delivery. It moves only in the transaction that records that answer.
CREATE TABLE webhooks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url           text NOT NULL,
    secret        text NOT NULL,
    link_ids      bigint[],          -- NULL: every link
    link_slugs    text[],
    tags          text[],            -- NULL: any tag
    domain        text,              -- stored now; applied once links have domains
    include_bots  boolean NOT NULL DEFAULT false,
    cursor_xid    xid8 NOT NULL,
    cursor_event  uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    failing_since timestamptz,       -- first failure since the last 2xx
    disabled_at   timestamptz,       -- set after failing for the disable period
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- webhook_deliveries: one row per batch sent (or a ping). body is the exact JSON sent,
-- so a retry sends the same events. At most one pending events batch per webhook: it
-- is the head of the webhook's queue until answered 2xx or given up on.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('events', 'ping')),
    status          text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    body            bytea NOT NULL,
    events          int NOT NULL,
    to_xid          xid8,
    to_event        uuid,
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    http_status     int,
    latency_ms      double precision,
    error           text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_recent_idx ON webhook_deliveries (webhook_id, id DESC);
CREATE UNIQUE INDEX webhook_deliveries_head_key ON webhook_deliveries (webhook_id)
    WHERE status = 'pending' AND kind = 'events';

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
