package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
)

// openDB connects to PostgreSQL: DATABASE_URL, creating its database first when it does
// not exist and create_database is on, or, when DATABASE_URL is empty, hop's embedded
// PostgreSQL in the data directory (see dataDir.databaseURL).
func openDB(ctx context.Context, cfg Config, logger *slog.Logger) (*pgxpool.Pool, error) {
	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		if cfg.data == nil {
			return nil, errors.New("embedded PostgreSQL: no data directory set up (run through app.Run)")
		}
		var err error
		if dbURL, err = cfg.data.databaseURL(ctx); err != nil {
			return nil, err
		}
	}
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database_url: %w", err)
	}
	pcfg.MaxConns = max(pcfg.MaxConns, 16)
	pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	err = pool.Ping(ctx)
	if err != nil && isMissingDatabase(err) && cfg.CreateDatabase {
		pool.Close()
		if err := createDatabase(ctx, pcfg.ConnConfig, logger); err != nil {
			return nil, err
		}
		if pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		err = pool.Ping(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres at %s is unreachable: %w", redactURL(dbURL), err)
	}
	return pool, nil
}

func isMissingDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}

func createDatabase(ctx context.Context, cc *pgx.ConnConfig, logger *slog.Logger) error {
	admin := cc.Copy()
	name := admin.Database
	admin.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created by a concurrent start
		err = nil
	}
	if err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	logger.Info("created database", "database", name)
	return nil
}

// openRedis connects to Redis; nil without error when Redis is not configured.
// onInvalidate receives client-side caching invalidations (see redirect.Invalidated).
func openRedis(cfg Config, onInvalidate func([]rueidis.RedisMessage)) (rueidis.Client, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	opt, err := rueidis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis_url: %w", err)
	}
	opt.Dialer.Timeout = 3 * time.Second
	opt.ConnWriteTimeout = 3 * time.Second
	opt.OnInvalidations = onInvalidate
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("redis at %s is unreachable: %w (set REDIS_URL= to run without Redis)", redactURL(cfg.RedisURL), err)
	}
	return client, nil
}
