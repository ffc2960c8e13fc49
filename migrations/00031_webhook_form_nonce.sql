-- +goose Up
-- The dashboard's new-webhook form carries a one-time nonce, recorded with the
-- webhook it made. The form sent again (the page that shows the secret reloaded, say)
-- finds that webhook instead of making a second one, which would deliver every click
-- twice; after the webhook is deleted the nonce stays used, so the form cannot bring
-- it back. Nonces older than 30 days are deleted as new ones are recorded.
CREATE TABLE webhook_form_nonces (
    nonce      uuid PRIMARY KEY,
    webhook_id bigint REFERENCES webhooks (id) ON DELETE SET NULL,
    used_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE webhook_form_nonces;
