// Package idempotency makes creating requests safe to retry: a client sends an
// Idempotency-Key header, and the same key with the same request within the retention
// period gets the first answer again (status and body) while nothing is created twice.
// Keys are per API key and kept in PostgreSQL, so every instance honours them.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/tick"
)

// Header is the request header that carries the key; ReplayedHeader marks a replayed
// answer so a client can tell it created nothing this time.
const (
	Header         = "Idempotency-Key"
	ReplayedHeader = "Idempotent-Replayed"
)

// Errors answered instead of running the request; app's error table gives them
// statuses (422, 409 and 400).
var (
	ErrMismatch   = errors.New("idempotency key reused with another request")
	ErrInProgress = errors.New("idempotency key in progress")
	ErrBadKey     = problem.Invalid("Idempotency-Key must be 1 to %d printable ASCII characters", maxKeyLength)
)

const maxKeyLength = 255

// Config tunes a Store; zero values take the defaults.
type Config struct {
	TTL       time.Duration // how long an answer is replayed; default 24 h
	StaleLock time.Duration // after this an unanswered claim (its server died) may be taken over; default 2 min
	Purge     time.Duration // how often expired keys are deleted; default 1 h
}

// Store keeps idempotency keys in PostgreSQL.
type Store struct {
	pool   *pgxpool.Pool
	cfg    Config
	logger *slog.Logger
}

// New returns a store with cfg's defaults filled in.
func New(cfg Config, pool *pgxpool.Pool, logger *slog.Logger) *Store {
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.StaleLock <= 0 {
		// Longer than the server's write timeout: a request still running is never
		// taken over.
		cfg.StaleLock = 2 * time.Minute
	}
	if cfg.Purge <= 0 {
		cfg.Purge = time.Hour
	}
	return &Store{pool: pool, cfg: cfg, logger: logger.With("module", "idempotency")}
}

// claim inserts the key, or takes over an expired one or a claim whose server died.
// It returns true when this request owns the key and must be served.
const claim = `INSERT INTO idempotency_keys (api_key_id, key, request_hash, expires_at)
VALUES ($1, $2, $3, now() + $4::interval)
ON CONFLICT (api_key_id, key) DO UPDATE SET
	request_hash = EXCLUDED.request_hash, status = NULL, content_type = NULL, location = NULL, body = NULL,
	created_at = now(), expires_at = EXCLUDED.expires_at
WHERE idempotency_keys.expires_at <= now()
   OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < now() - $5::interval)
RETURNING true`

const selectKey = `SELECT request_hash, status, coalesce(content_type, ''), coalesce(location, ''), body
FROM idempotency_keys WHERE api_key_id = $1 AND key = $2`

const storeAnswer = `UPDATE idempotency_keys SET status = $3, content_type = $4, location = $5, body = $6
WHERE api_key_id = $1 AND key = $2`

// release forgets a claim whose request failed on the server's side, so a retry runs.
const release = `DELETE FROM idempotency_keys WHERE api_key_id = $1 AND key = $2 AND status IS NULL`

// answer is a stored response.
type answer struct {
	hash        []byte
	status      *int16
	contentType string
	location    string
	body        []byte
}

// Middleware honours Idempotency-Key on the requests for which applies reports true
// (hop: POST /links and /links/bulk). It runs after authentication: keyID reads the
// caller's API key id from the context. Requests without the header pass through.
func (s *Store) Middleware(applies func(echo.Context) bool, keyID func(echo.Context) (int64, bool)) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			key := c.Request().Header.Get(Header)
			if key == "" || !applies(c) {
				return next(c)
			}
			if !validKey(key) {
				return ErrBadKey
			}
			owner, ok := keyID(c)
			if !ok {
				return next(c) // not an API-key request; nothing to scope the key to
			}
			return s.serve(c, next, owner, key)
		}
	}
}

func validKey(k string) bool {
	if len(k) > maxKeyLength || !utf8.ValidString(k) {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

func (s *Store) serve(c echo.Context, next echo.HandlerFunc, owner int64, key string) error {
	req := c.Request()
	ctx := req.Context()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return err // the body limit or a timeout; the error handler words it
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	hash := requestHash(req, body)

	var owned bool
	err = s.pool.QueryRow(ctx, claim, owner, key, hash, s.cfg.TTL, s.cfg.StaleLock).Scan(&owned)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return s.replay(c, owner, key, hash)
	case err != nil:
		return fmt.Errorf("claim idempotency key: %w", err)
	}

	rec := &recorder{ResponseWriter: c.Response().Writer}
	c.Response().Writer = rec
	if err := next(c); err != nil {
		c.Error(err) // render now, so the answer can be recorded
	}
	status := c.Response().Status
	// Answers of a server-side failure are not kept: the client should retry, and the
	// retry should run. Nor is a request that ended without an answer (its client left
	// before anything was done). An answer is kept even when its client has left since:
	// what it created stays created, and the retry must be told so, not create again.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if status >= 500 || !c.Response().Committed {
		if _, err := s.pool.Exec(sctx, release, owner, key); err != nil {
			s.logger.Error("release idempotency key", "err", err)
		}
		return nil
	}
	hdr := c.Response().Header()
	if _, err := s.pool.Exec(sctx, storeAnswer, owner, key, int16(status), hdr.Get(echo.HeaderContentType), hdr.Get(echo.HeaderLocation), rec.body.Bytes()); err != nil {
		// The request is done; only a retry of it would run again.
		s.logger.Error("store idempotent answer", "err", err)
	}
	return nil
}

func (s *Store) replay(c echo.Context, owner int64, key string, hash []byte) error {
	ctx := c.Request().Context()
	var a answer
	err := s.pool.QueryRow(ctx, selectKey, owner, key).Scan(&a.hash, &a.status, &a.contentType, &a.location, &a.body)
	if errors.Is(err, pgx.ErrNoRows) {
		// Released between our claim and this read: the first request failed.
		return ErrInProgress
	}
	if err != nil {
		return fmt.Errorf("read idempotency key: %w", err)
	}
	if !bytes.Equal(a.hash, hash) {
		return ErrMismatch
	}
	if a.status == nil {
		c.Response().Header().Set("Retry-After", "1")
		return ErrInProgress
	}
	hdr := c.Response().Header()
	hdr.Set(ReplayedHeader, "true")
	if a.location != "" {
		hdr.Set(echo.HeaderLocation, a.location)
	}
	return c.Blob(int(*a.status), a.contentType, a.body)
}

// requestHash identifies a request by method, path, query and body. The key alone does
// not: a client that reuses a key for another request must be told, not answered with
// the first request's result.
func requestHash(r *http.Request, body []byte) []byte {
	h := sha256.New()
	io.WriteString(h, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery+"\n")
	h.Write(body)
	return h.Sum(nil)
}

// recorder keeps a copy of the response body.
type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.body.Write(p)
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

const purge = `DELETE FROM idempotency_keys WHERE expires_at <= now()`

// Run deletes expired keys every Purge interval until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	return tick.Every(ctx, s.cfg.Purge, func(ctx context.Context) {
		if err := s.runOnce(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("purge idempotency keys", "err", err)
		}
	})
}

func (s *Store) runOnce(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, purge); err != nil {
		return fmt.Errorf("purge idempotency keys: %w", err)
	}
	return nil
}

// PostPaths returns an applies function for Middleware: POST requests to one of the
// route paths (Echo route templates, such as "/links").
func PostPaths(paths ...string) func(echo.Context) bool {
	return func(c echo.Context) bool {
		if c.Request().Method != http.MethodPost {
			return false
		}
		p := c.Path()
		for _, want := range paths {
			if strings.EqualFold(p, want) {
				return true
			}
		}
		return false
	}
}
