// Package migrations holds hop's PostgreSQL schema as goose SQL files, embedded in the
// binary and applied at start-up under goose's session advisory lock, so several
// instances starting at once migrate exactly once.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"hash/fnv"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var files embed.FS

// Provider returns a goose provider over the embedded migrations for the pool's
// database, locked with a PostgreSQL session advisory lock. The caller closes it.
func Provider(pool *pgxpool.Pool, logger *slog.Logger) (*goose.Provider, error) {
	db := stdlib.OpenDBFromPool(pool)
	return newProvider(db, logger)
}

func newProvider(db *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration locker: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)}
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Up applies every pending migration.
func Up(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	p, err := Provider(pool, logger)
	if err != nil {
		return err
	}
	defer p.Close()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// Digest identifies the embedded schema; tests name their template database after it so
// a changed migration gets a fresh template.
func Digest() string {
	entries, _ := files.ReadDir(".")
	h := fnv.New64a()
	for _, e := range entries {
		b, _ := files.ReadFile(e.Name())
		h.Write([]byte(e.Name()))
		h.Write(b)
	}
	return fmt.Sprintf("%016x", h.Sum64())
}
