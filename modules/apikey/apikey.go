// Package apikey guards hop's management API. Keys are random, shown once, and stored
// only as SHA-256 hashes with a short visible prefix. A key is checked in PostgreSQL,
// or in a cache that PostgreSQL empties on every change (see Watch), so revoking one
// takes effect at once on the revoking instance and within milliseconds on the others.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// Errors.
var (
	ErrNotFound     = errors.New("api key not found")
	ErrUnauthorized = problem.New(http.StatusUnauthorized, "unauthorized", "a valid API key is required: send Authorization: Bearer KEY or X-Api-Key: KEY")
)

const (
	keyPrefix     = "hop_"
	visiblePrefix = 12 // "hop_" + 8 characters, shown in listings
	touchEvery    = time.Minute
)

// Key describes a stored key; the key itself is never stored.
type Key struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

// Store keeps API keys in PostgreSQL.
type Store struct {
	pool    *pgxpool.Pool
	logger  *slog.Logger
	touched sync.Map // key id -> time of our last last_used_at write
	cache   verified // keys found live, while Watch runs
	lookups atomic.Int64
}

// NewStore returns a key store.
func NewStore(pool *pgxpool.Pool, logger *slog.Logger) *Store {
	return &Store{pool: pool, logger: logger.With("module", "apikey")}
}

func hashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// generate returns a new random key.
func generate() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return keyPrefix + base64.RawURLEncoding.EncodeToString(b)
}

func prefixOf(key string) string {
	if len(key) > visiblePrefix {
		return key[:visiblePrefix]
	}
	return key
}

const insertKey = `INSERT INTO api_keys (name, prefix, key_hash) VALUES ($1, $2, $3)
ON CONFLICT (key_hash) DO NOTHING
RETURNING id, name, prefix, created_at, last_used_at, revoked_at`

// Create stores a new key named name and returns it with the key, which is shown only now.
func (s *Store) Create(ctx context.Context, name string) (Key, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return Key{}, "", errors.New("a key needs a name of 1 to 100 characters")
	}
	key := generate()
	k, err := s.insert(ctx, name, key)
	return k, key, err
}

func (s *Store) insert(ctx context.Context, name, key string) (Key, error) {
	var k Key
	err := s.pool.QueryRow(ctx, insertKey, name, prefixOf(key), hashKey(key)).
		Scan(&k.ID, &k.Name, &k.Prefix, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("insert api key: %w", err)
	}
	return k, nil
}

const listKeys = `SELECT id, name, prefix, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id`

// List returns every key, revoked ones included.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	rows, err := s.pool.Query(ctx, listKeys)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Key])
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

const revokeKey = `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1`

// Revoke disables a key at once; ErrNotFound if there is no such key.
func (s *Store) Revoke(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, revokeKey, id)
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	s.cache.changed() // here at once; other instances when the trigger's notice arrives
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

const bootstrapLock = 7_011_001 // advisory lock id for first-start key generation

// Bootstrap makes sure the service can be managed: a configured key is stored (idempotent),
// and if no key exists at all a new one is generated and returned so the caller can show
// it once. Instances starting together agree through an advisory lock.
func (s *Store) Bootstrap(ctx context.Context, configured string) (generated string, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("bootstrap api key: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", bootstrapLock); err != nil {
		return "", fmt.Errorf("bootstrap api key: %w", err)
	}
	if configured != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO api_keys (name, prefix, key_hash) VALUES ('HOP_API_KEY', $1, $2) ON CONFLICT (key_hash) DO NOTHING`,
			prefixOf(configured), hashKey(configured)); err != nil {
			return "", fmt.Errorf("store HOP_API_KEY: %w", err)
		}
	} else {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM api_keys)").Scan(&exists); err != nil {
			return "", fmt.Errorf("bootstrap api key: %w", err)
		}
		if !exists {
			generated = generate()
			if _, err := tx.Exec(ctx, `INSERT INTO api_keys (name, prefix, key_hash) VALUES ('generated at first start', $1, $2)`,
				prefixOf(generated), hashKey(generated)); err != nil {
				return "", fmt.Errorf("store generated api key: %w", err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("bootstrap api key: %w", err)
	}
	return generated, nil
}

const verifyKey = `SELECT id, key_hash FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`

// Verify returns the id of the live key key; ErrUnauthorized otherwise. Keys verified
// while Watch runs are remembered until any key changes (see verified).
func (s *Store) Verify(ctx context.Context, key string) (int64, error) {
	if len(key) < 16 || len(key) > 256 {
		return 0, ErrUnauthorized // no key of ours looks like this: skip the lookup
	}
	want := hashKey(key)
	if id, ok := s.cache.get([32]byte(want)); ok {
		s.touch(ctx, id)
		return id, nil
	}
	gen := s.cache.generation()
	s.lookups.Add(1)
	var id int64
	var got []byte
	err := s.pool.QueryRow(ctx, verifyKey, want).Scan(&id, &got)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && subtle.ConstantTimeCompare(want, got) != 1) {
		return 0, ErrUnauthorized
	}
	if err != nil {
		return 0, fmt.Errorf("verify api key: %w", err)
	}
	s.cache.put([32]byte(want), id, gen)
	s.touch(ctx, id)
	return id, nil
}

// touch records last use at most once a minute per key, so checking a key does not
// turn every API request into a write.
func (s *Store) touch(ctx context.Context, id int64) {
	now := time.Now()
	if v, ok := s.touched.Load(id); ok && now.Sub(v.(time.Time)) < touchEvery {
		return
	}
	s.touched.Store(id, now)
	if _, err := s.pool.Exec(ctx, `UPDATE api_keys SET last_used_at = now() WHERE id = $1`, id); err != nil {
		s.logger.Warn("record api key use", "key_id", id, "err", err)
	}
}

// ContextKey is the echo.Context key under which Middleware stores the key id.
const ContextKey = "api_key_id"

// Middleware rejects requests without a valid key with 401 problem JSON.
func (s *Store) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			key := FromRequest(c.Request())
			if key == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="hop"`)
				return ErrUnauthorized
			}
			id, err := s.Verify(c.Request().Context(), key)
			if err != nil {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="hop", error="invalid_token"`)
				return err
			}
			c.Set(ContextKey, id)
			return next(c)
		}
	}
}

// FromRequest returns the key sent as "Authorization: Bearer KEY" or "X-Api-Key: KEY".
func FromRequest(r *http.Request) string {
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}
