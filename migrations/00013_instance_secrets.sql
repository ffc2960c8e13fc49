-- +goose Up
-- Secrets every instance must share and that hop makes itself when none is configured,
-- such as the slug secret (HOP_SLUG_SECRET unset). Written once at first start.
CREATE TABLE instance_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE instance_secrets;
