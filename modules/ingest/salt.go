package ingest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// saltRetentionDays is how many days before today a salt survives; older salts are
// deleted so visitor hashes of those days can never be recomputed.
const saltRetentionDays = 2

// Salts hands out the visitor salt of a UTC day. Salts live in visitor_salts so every
// instance hashes a visitor alike; each instance caches them in memory. Build one per
// process and share it.
type Salts struct {
	pool *pgxpool.Pool
	mu   sync.Mutex
	salt map[time.Time][]byte // keyed by UTC midnight
}

// NewSalts returns the salt store on pool.
func NewSalts(pool *pgxpool.Pool) *Salts {
	return &Salts{pool: pool, salt: make(map[time.Time][]byte)}
}

func utcDay(t time.Time) time.Time {
	return t.UTC().Truncate(24 * time.Hour)
}

const (
	selectSalt = `SELECT salt FROM visitor_salts WHERE day = $1`
	insertSalt = `INSERT INTO visitor_salts (day, salt) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING`
)

// forDay returns the salt of t's UTC day, creating it when no instance has yet.
func (s *Salts) forDay(ctx context.Context, t time.Time) ([]byte, error) {
	day := utcDay(t)
	s.mu.Lock()
	b, ok := s.salt[day]
	s.mu.Unlock()
	if ok {
		return b, nil
	}
	b, err := s.load(ctx, day)
	if err != nil {
		return nil, fmt.Errorf("visitor salt for %s: %w", day.Format(time.DateOnly), err)
	}
	s.mu.Lock()
	s.salt[day] = b
	s.mu.Unlock()
	return b, nil
}

// load reads the day's salt, inserting a fresh one first if there is none. The
// insert ignores conflicts and the second SELECT runs with a new snapshot, so
// instances racing on the first click of a day all end up with the winner's salt.
func (s *Salts) load(ctx context.Context, day time.Time) ([]byte, error) {
	var b []byte
	err := s.pool.QueryRow(ctx, selectSalt, day).Scan(&b)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := s.pool.Exec(ctx, insertSalt, day, fresh); err != nil {
		return nil, err
	}
	if err := s.pool.QueryRow(ctx, selectSalt, day).Scan(&b); err != nil {
		return nil, err
	}
	return b, nil
}

const deleteOldSalts = `DELETE FROM visitor_salts WHERE day < $1`

// purge deletes salts older than the retention, in the database and in memory.
func (s *Salts) purge(ctx context.Context, now time.Time) (int64, error) {
	cutoff := utcDay(now).AddDate(0, 0, -saltRetentionDays)
	tag, err := s.pool.Exec(ctx, deleteOldSalts, cutoff)
	if err != nil {
		return 0, fmt.Errorf("purge visitor salts: %w", err)
	}
	s.mu.Lock()
	for d := range s.salt {
		if d.Before(cutoff) {
			delete(s.salt, d)
		}
	}
	s.mu.Unlock()
	return tag.RowsAffected(), nil
}
