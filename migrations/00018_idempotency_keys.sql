-- +goose Up
-- Idempotency-Key records of POST /links and /links/bulk (issue 22): per API key, the
-- hash of the request and, once answered, the answer to replay. status is NULL while the
-- first request is still being served, so a concurrent duplicate waits instead of
-- creating twice. Rows past expires_at are reused or deleted by housekeeping.
CREATE TABLE idempotency_keys (
    api_key_id   bigint NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    status       smallint,
    content_type text,
    location     text,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

-- +goose Down
DROP TABLE idempotency_keys;
