package main

import (
	"context"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/hopproc"
	"github.com/hop-dev/hop/internal/pgserver"
)

// env is one scenario's hop: a fresh database, its own Redis prefix, the running
// process and a small pool for the scenario's own queries.
type env struct {
	c      *config
	db     string
	prefix string
	h      *hop // the running hop; a scenario that restarts hop updates it
	pool   *pgxpool.Pool
	// dataDir is hop's HOP_DATA_DIR in embedded mode (BENCH_EMBEDDED=1), where hop
	// runs its own PostgreSQL; "" otherwise.
	dataDir string
}

// startEnv recreates database db and starts hop on it under a fresh Redis prefix. In
// embedded mode hop gets an empty data directory instead, creates its own PostgreSQL
// there, and the bench reads the counts through that server's Unix socket.
func startEnv(ctx context.Context, c *config, name, db string) (*env, error) {
	e := &env{c: c, db: db, prefix: "hopbench:" + randHex(4) + ":"}
	var dbURL string
	if c.embedded {
		// In the system's temporary directory, not the bench's private one: when hop
		// runs as root, PostgreSQL runs as another user, who must reach the directory,
		// and the socket path must stay short.
		dir, err := os.MkdirTemp("", "hopemb")
		if err != nil {
			return nil, err
		}
		e.dataDir, dbURL = dir, pgserver.URL(dir)
	} else {
		dbURL = dbURLFor(c.pgURL, db)
		if err := resetDatabase(ctx, c, db); err != nil {
			return nil, err
		}
	}
	port, err := hopproc.FreePort()
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
		stopProc(e.h.Proc, 30*time.Second)
	}
	cleanRedis(e.c, e.prefix)
	switch {
	case e.dataDir == "":
		dropDatabase(e.c, e.db)
	case e.c.keep:
		logf("BENCH_KEEP=1: keeping embedded data directory %s", e.dataDir)
	default:
		if err := os.RemoveAll(e.dataDir); err != nil { // hop has stopped its PostgreSQL
			logf("removing embedded data directory: %v", err)
		}
	}
}
