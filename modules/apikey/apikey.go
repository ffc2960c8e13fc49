// Package apikey guards hop's management API. Keys are random, shown once, and stored
// only as SHA-256 hashes with a short visible prefix. A key is checked in PostgreSQL,
// or in a cache that PostgreSQL empties on every change (see Watch), so revoking one
// takes effect at once on the revoking instance and within milliseconds on the others.
// Failed attempts are limited per client address before PostgreSQL is asked, and
// wrong keys are remembered briefly, so guessing keys costs the database nothing.
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
)

// Errors.
var (
	ErrNotFound        = errors.New("api key not found")
	ErrUnauthorized    = errors.New("no valid API key")
	ErrTooManyFailures = errors.New("too many failed authentications")
)

// MinLength is the shortest key hop accepts, HOP_API_KEY included; generated keys are
// 36 characters.
const MinLength = 32

const (
	keyPrefix     = "hop_"
	maxLength     = 256
	visiblePrefix = 8 // characters of a key shown in listings: "hop_" and 4 more
	touchEvery    = time.Minute
)

// Throttle limits failed authentications per client address; ratelimit.Limiter
// implements it. Over is asked before a key is looked up, Hit after each failure.
type Throttle interface {
	Over(ctx context.Context, client string) (retry time.Duration, over bool)
	Hit(ctx context.Context, client string) (retry time.Duration, ok bool)
}

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

const (
	insertConfiguredKey = `INSERT INTO api_keys (name, prefix, key_hash, bootstrap) VALUES ('HOP_API_KEY', $1, $2, true)
ON CONFLICT (key_hash) DO UPDATE SET bootstrap = true
RETURNING revoked_at IS NOT NULL`
	revokeOtherBootstrapKeys = `UPDATE api_keys SET revoked_at = now()
WHERE bootstrap AND revoked_at IS NULL AND key_hash <> $1
RETURNING id, name, prefix`
	insertGeneratedKey = `INSERT INTO api_keys (name, prefix, key_hash, bootstrap) VALUES ('generated at first start', $1, $2, true)`
)

// Bootstrap makes sure the service can be managed. A configured key (HOP_API_KEY) is
// stored and becomes the only bootstrap key: the previous configured key, and the key
// generated at first start, are revoked, and each revocation is logged. Without a
// configured key, if no key exists at all a new one is generated and returned so the
// caller can show it once. Instances starting together agree through an advisory lock.
func (s *Store) Bootstrap(ctx context.Context, configured string) (generated string, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("bootstrap api key: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", bootstrapLock); err != nil {
		return "", fmt.Errorf("bootstrap api key: %w", err)
	}
	var revoked []Key
	if configured != "" {
		var isRevoked bool
		if err := tx.QueryRow(ctx, insertConfiguredKey, prefixOf(configured), hashKey(configured)).Scan(&isRevoked); err != nil {
			return "", fmt.Errorf("store HOP_API_KEY: %w", err)
		}
		if isRevoked {
			s.logger.Warn("HOP_API_KEY has been revoked and is refused; set a new value")
		}
		rows, err := tx.Query(ctx, revokeOtherBootstrapKeys, hashKey(configured))
		if err != nil {
			return "", fmt.Errorf("revoke previous bootstrap keys: %w", err)
		}
		revoked, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
			var k Key
			return k, r.Scan(&k.ID, &k.Name, &k.Prefix)
		})
		if err != nil {
			return "", fmt.Errorf("revoke previous bootstrap keys: %w", err)
		}
	} else {
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM api_keys)").Scan(&exists); err != nil {
			return "", fmt.Errorf("bootstrap api key: %w", err)
		}
		if !exists {
			generated = generate()
			if _, err := tx.Exec(ctx, insertGeneratedKey, prefixOf(generated), hashKey(generated)); err != nil {
				return "", fmt.Errorf("store generated api key: %w", err)
			}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("bootstrap api key: %w", err)
	}
	if len(revoked) > 0 {
		s.cache.changed()
	}
	for _, k := range revoked {
		s.logger.Warn("revoked the previous bootstrap API key: HOP_API_KEY is now the only one", "key_id", k.ID, "name", k.Name, "prefix", k.Prefix)
	}
	return generated, nil
}

const verifyKey = `SELECT id, key_hash FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`

// Verify returns the id of the live key key; ErrUnauthorized otherwise. Keys verified
// while Watch runs are remembered until any key changes, and wrong keys for a minute
// or until any key changes (see verified).
func (s *Store) Verify(ctx context.Context, key string) (int64, error) {
	if id, ok := s.known(key); ok {
		s.touch(ctx, id)
		return id, nil
	}
	return s.lookup(ctx, key)
}

// known returns the id of a key verified earlier and still live, without a lookup.
func (s *Store) known(key string) (int64, bool) {
	if len(key) < MinLength || len(key) > maxLength {
		return 0, false
	}
	return s.cache.get([32]byte(hashKey(key)))
}

// lookup checks a key not known to be live: refused at once when it cannot be a key
// or was refused a moment ago, else looked up in PostgreSQL.
func (s *Store) lookup(ctx context.Context, key string) (int64, error) {
	if len(key) < MinLength || len(key) > maxLength {
		return 0, ErrUnauthorized // no key of ours looks like this
	}
	want := [32]byte(hashKey(key))
	if s.cache.refused(want, time.Now()) {
		return 0, ErrUnauthorized
	}
	gen := s.cache.generation()
	s.lookups.Add(1)
	var id int64
	var got []byte
	err := s.pool.QueryRow(ctx, verifyKey, want[:]).Scan(&id, &got)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && subtle.ConstantTimeCompare(want[:], got) != 1) {
		s.cache.refuse(want, time.Now(), gen)
		s.cache.saw(want, false)
		return 0, ErrUnauthorized
	}
	if err != nil {
		return 0, fmt.Errorf("verify api key: %w", err)
	}
	s.cache.put(want, id, gen)
	s.cache.saw(want, true)
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
	if _, err := s.pool.Exec(ctx, `UPDATE api_keys SET last_used_at = now() WHERE id = $1`, id); err != nil && ctx.Err() == nil {
		s.logger.Warn("record api key use", "key_id", id, "err", err)
	}
}

// ContextKey is the echo.Context key under which Middleware stores the key id.
const ContextKey = "api_key_id"

// Middleware rejects requests without a valid key with 401 problem JSON, and clients
// with too many failures with 429 (see Authenticate). fails may be nil: no limit.
func (s *Store) Middleware(fails Throttle) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id, err := s.Authenticate(c, fails)
			if err != nil {
				return err
			}
			c.Set(ContextKey, id)
			return next(c)
		}
	}
}

// Authenticate returns the id of the request's key. A request without a key is
// ErrUnauthorized. A key this instance knows to be live passes at once. A key it has
// never found live is refused with ErrTooManyFailures (and Retry-After) while the
// client address (c.RealIP) is over its failure limit, before anything is looked up,
// so a client sharing an address with a guesser keeps working; each refusal counts
// against that limit. fails may be nil: no limit.
func (s *Store) Authenticate(c echo.Context, fails Throttle) (int64, error) {
	hdr := c.Response().Header()
	key := FromRequest(c.Request())
	if key == "" {
		hdr.Set("WWW-Authenticate", `Bearer realm="hop"`)
		return 0, ErrUnauthorized
	}
	ctx := c.Request().Context()
	if id, ok := s.known(key); ok {
		s.touch(ctx, id)
		return id, nil
	}
	client := c.RealIP()
	if fails != nil && !s.cache.seen([32]byte(hashKey(key))) {
		if retry, over := fails.Over(ctx, client); over {
			hdr.Set("Retry-After", strconv.Itoa(int(retry/time.Second)))
			return 0, ErrTooManyFailures
		}
	}
	id, err := s.lookup(ctx, key)
	if errors.Is(err, ErrUnauthorized) {
		hdr.Set("WWW-Authenticate", `Bearer realm="hop", error="invalid_token"`)
		if fails != nil {
			fails.Hit(ctx, client)
		}
	}
	return id, err
}

// Accepts reports whether r's key is still a live key; an error when that could not
// be found out (PostgreSQL away). A request held open for long (a live stream) asks
// again at each of Changes.
func (s *Store) Accepts(ctx context.Context, r *http.Request) (bool, error) {
	_, err := s.Verify(ctx, FromRequest(r))
	if errors.Is(err, ErrUnauthorized) {
		return false, nil
	}
	return err == nil, err
}

// FromRequest returns the key sent as "Authorization: Bearer KEY" or "X-Api-Key: KEY".
func FromRequest(r *http.Request) string {
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}
