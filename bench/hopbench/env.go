package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// env is one scenario's hop: a fresh database, its own Redis prefix, the running
// process and a small pool for the scenario's own queries.
type env struct {
	c      *config
	db     string
	prefix string
	h      *hop // the running hop; a scenario that restarts hop updates it
	pool   *pgxpool.Pool
}

// startEnv recreates database db and starts hop on it under a fresh Redis prefix.
func startEnv(ctx context.Context, c *config, name, db string) (*env, error) {
	e := &env{c: c, db: db, prefix: "hopbench:" + randHex(4) + ":"}
	dbURL := dbURLFor(c.pgURL, db)
	if err := resetDatabase(ctx, c, db); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err == nil {
		e.h, err = startHop(ctx, c, name, dbURL, e.prefix, port)
	}
	if err == nil {
		e.pool, err = openPool(ctx, dbURL, 4)
	}
	if err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// close stops hop and removes what the scenario left in PostgreSQL and Redis.
func (e *env) close() {
	if e.pool != nil {
		e.pool.Close()
	}
	if e.h != nil {
		e.h.stop(30 * time.Second)
	}
	cleanRedis(e.c, e.prefix)
	dropDatabase(e.c, e.db)
}
