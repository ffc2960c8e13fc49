-- +goose Up
-- The dashboard's new-webhook form carries a one-time nonce. The form sent again (the
-- page that shows the secret reloaded, say) finds the webhook it made instead of
-- making a second one, which would deliver every click twice. Adding a column with no
-- default is a catalogue change; the table holds a row per webhook.
SET LOCAL lock_timeout = '5s';
ALTER TABLE webhooks ADD COLUMN form_nonce uuid;
CREATE UNIQUE INDEX webhooks_form_nonce_key ON webhooks (form_nonce);

-- +goose Down
SET LOCAL lock_timeout = '5s';
DROP INDEX webhooks_form_nonce_key;
ALTER TABLE webhooks DROP COLUMN form_nonce;
