-- +goose Up
-- dashboard_sessions: sign-ins to the web dashboard. Only the SHA-256 of the session
-- token is stored (the token itself lives in the browser's HttpOnly cookie). A session
-- is valid while it has not expired and its API key is not revoked; the dashboard
-- checks both on every request, so revoking a key signs its sessions out at once.
CREATE TABLE dashboard_sessions (
    token_hash bytea PRIMARY KEY,
    api_key_id bigint NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
-- Expired sessions are deleted lazily (at sign-in) by expiry.
CREATE INDEX dashboard_sessions_expires_at_idx ON dashboard_sessions (expires_at);
CREATE INDEX dashboard_sessions_api_key_id_idx ON dashboard_sessions (api_key_id);

-- +goose Down
DROP TABLE dashboard_sessions;
