package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const tokenBytes = 32

// errNoSession means the cookie names no live session: unknown, expired, or its key
// was revoked.
var errNoSession = errors.New("no live dashboard session")

// session is a signed-in browser.
type session struct {
	token   []byte // the raw token from the cookie; only its hash is stored
	keyID   int64
	expires time.Time
}

// csrf is the session's anti-forgery token: an HMAC keyed by the session token, so it
// needs no storage, agrees across instances, and cannot be computed without the
// HttpOnly cookie.
func (s session) csrf() string {
	m := hmac.New(sha256.New, s.token)
	m.Write([]byte("hop dashboard csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validCSRF reports whether got is this session's CSRF token, in constant time.
func (s session) validCSRF(got string) bool {
	return hmac.Equal([]byte(got), []byte(s.csrf()))
}

func (s session) cookieValue() string { return base64.RawURLEncoding.EncodeToString(s.token) }

// parseToken decodes a cookie value; anything but a well-formed token is rejected
// before it reaches the database.
func parseToken(v string) ([]byte, bool) {
	if len(v) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) != tokenBytes {
		return nil, false
	}
	return b, true
}

func hashToken(token []byte) []byte {
	h := sha256.Sum256(token)
	return h[:]
}

// sessionStore keeps sessions in PostgreSQL.
type sessionStore struct {
	pool *pgxpool.Pool
}

// deleteStaleSessions removes expired sessions and those of revoked keys; it runs at
// sign-in, so the table stays small without a loop of its own.
const deleteStaleSessions = `DELETE FROM dashboard_sessions s
WHERE s.expires_at <= $1
   OR EXISTS (SELECT 1 FROM api_keys k WHERE k.id = s.api_key_id AND k.revoked_at IS NOT NULL)`

const insertSession = `INSERT INTO dashboard_sessions (token_hash, api_key_id, created_at, expires_at)
VALUES ($1, $2, $3, $4)`

// create starts a session for key keyID that lasts ttl from now, after deleting stale
// sessions, in one transaction.
func (s *sessionStore) create(ctx context.Context, keyID int64, now time.Time, ttl time.Duration) (session, error) {
	token := make([]byte, tokenBytes)
	if _, err := rand.Read(token); err != nil {
		return session{}, fmt.Errorf("session token: %w", err)
	}
	sess := session{token: token, keyID: keyID, expires: now.Add(ttl)}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return session{}, fmt.Errorf("create session: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, deleteStaleSessions, now); err != nil {
		return session{}, fmt.Errorf("delete stale sessions: %w", err)
	}
	if _, err := tx.Exec(ctx, insertSession, hashToken(token), keyID, now, sess.expires); err != nil {
		return session{}, fmt.Errorf("insert session: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return session{}, fmt.Errorf("create session: %w", err)
	}
	return sess, nil
}

// selectSession finds a live session: not expired, and its key not revoked.
const selectSession = `SELECT s.api_key_id, s.expires_at
FROM dashboard_sessions s JOIN api_keys k ON k.id = s.api_key_id
WHERE s.token_hash = $1 AND s.expires_at > $2 AND k.revoked_at IS NULL`

// lookup returns the live session for token; errNoSession if there is none.
func (s *sessionStore) lookup(ctx context.Context, token []byte, now time.Time) (session, error) {
	sess := session{token: token}
	err := s.pool.QueryRow(ctx, selectSession, hashToken(token), now).Scan(&sess.keyID, &sess.expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return session{}, errNoSession
	}
	if err != nil {
		return session{}, fmt.Errorf("select session: %w", err)
	}
	return sess, nil
}

const deleteSession = `DELETE FROM dashboard_sessions WHERE token_hash = $1`

// delete ends the session for token; ending one that does not exist is not an error.
func (s *sessionStore) delete(ctx context.Context, token []byte) error {
	if _, err := s.pool.Exec(ctx, deleteSession, hashToken(token)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
