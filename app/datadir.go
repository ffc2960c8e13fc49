package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hop-dev/hop/internal/datadir"
	"github.com/hop-dev/hop/internal/pgserver"
)

// dataDir is the data directory (HOP_DATA_DIR) for one run of the command line: its
// lock and the embedded PostgreSQL, both set up on first use and released by Close
// after the command has closed its connections.
type dataDir struct {
	dir, binaries string
	logger        *slog.Logger

	bin    *pgserver.Binaries
	lock   *datadir.Lock
	server *pgserver.Server
}

func newDataDir(cfg Config, logger *slog.Logger) *dataDir {
	return &dataDir{dir: cfg.DataDir, binaries: cfg.PGBinaries, logger: logger}
}

// hold locks the data directory for this process, or says which process has it.
func (d *dataDir) hold() error {
	if d.lock != nil {
		return nil
	}
	l, err := datadir.Acquire(d.dir)
	if err != nil {
		return err
	}
	d.lock = l
	return nil
}

// pgBinaries finds the PostgreSQL programs once.
func (d *dataDir) pgBinaries() (pgserver.Binaries, error) {
	if d.bin == nil {
		b, err := pgserver.FindBinaries(d.binaries)
		if err != nil {
			return b, err
		}
		d.bin = &b
	}
	return *d.bin, nil
}

// databaseURL is the URL of the embedded hop database. When no other hop holds the
// data directory, this process takes it and starts the server (serve holds it from the
// start, so it always does); otherwise a command such as `hop apikey` or `hop backup`
// uses the server the running hop supervises.
func (d *dataDir) databaseURL(ctx context.Context) (string, error) {
	if d.server != nil {
		return d.server.URL(), nil
	}
	if err := d.hold(); err != nil {
		if errors.Is(err, datadir.ErrLocked) {
			if !pgserver.Running(d.dir) {
				return "", fmt.Errorf("data directory %s is in use by a hop process that runs no embedded PostgreSQL there: give this command the DATABASE_URL that hop uses", d.dir)
			}
			return pgserver.URL(d.dir), nil
		}
		return "", err
	}
	bin, err := d.pgBinaries()
	if err != nil {
		return "", err
	}
	s, err := pgserver.Start(ctx, pgserver.Config{Dir: d.dir, Binaries: bin, Logger: d.logger})
	if err != nil && ctx.Err() != nil {
		// Stopped while starting (SIGTERM during initdb, say): what the killed tools
		// printed would only confuse. A first start begins again from nothing.
		return "", fmt.Errorf("embedded PostgreSQL: start interrupted: %w", ctx.Err())
	}
	if err != nil {
		return "", fmt.Errorf("embedded PostgreSQL: %w", err)
	}
	d.server = s
	return s.URL(), nil
}

// hasCluster reports whether the data directory holds an embedded database.
func (d *dataDir) hasCluster() bool {
	_, err := os.Stat(filepath.Join(d.dir, "pg", "PG_VERSION"))
	return err == nil
}

// Close stops the embedded server, if this process started it, and releases the lock.
func (d *dataDir) Close() error {
	var err error
	if d.server != nil {
		err = d.server.Stop()
		d.server = nil
	}
	if d.lock != nil {
		err = errors.Join(err, d.lock.Close())
		d.lock = nil
	}
	return err
}
