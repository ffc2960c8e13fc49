package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/hop-dev/hop/internal/datadir"
	"github.com/hop-dev/hop/internal/pgserver"
)

// backupCmd runs `hop backup FILE`: pg_dump's custom format of the embedded database
// (the running hop's, or started for the dump) or of DATABASE_URL.
func backupCmd(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	file, err := fileArg("backup", args)
	if err != nil {
		return err
	}
	bin, err := cfg.data.pgBinaries()
	if err != nil {
		return err
	}
	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		if !cfg.data.hasCluster() {
			return fmt.Errorf("backup: %s holds no embedded database yet (is HOP_DATA_DIR right?)", cfg.DataDir)
		}
		if dbURL, err = cfg.data.databaseURL(ctx); err != nil {
			return err
		}
	}
	if err := pgserver.Dump(ctx, bin, dbURL, file); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	size := int64(0)
	if fi, err := os.Stat(file); err == nil {
		size = fi.Size()
	}
	fmt.Fprintf(stdout, "backed up %s to %s (%d bytes)\n", redactURL(dbURL), file, size)
	return nil
}

// restoreCmd runs `hop restore FILE`: into DATABASE_URL when set (moving to a server;
// the database is created if missing and must have no tables), else into a new
// embedded database in an empty data directory. Either way, all or nothing.
func restoreCmd(ctx context.Context, cfg Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	file, err := fileArg("restore", args)
	if err != nil {
		return err
	}
	bin, err := cfg.data.pgBinaries()
	if err != nil {
		return err
	}
	// The file is checked before anything is created: a file that is no backup
	// changes nothing, neither a database created for it nor a cluster made in the
	// data directory.
	if cfg.DatabaseURL != "" {
		if err := pgserver.CheckDump(ctx, bin, file); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		pool, err := openDB(ctx, cfg, logger) // creates the database when it is missing
		if err != nil {
			return err
		}
		pool.Close()
		if err := pgserver.Restore(ctx, bin, cfg.DatabaseURL, file); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		fmt.Fprintf(stdout, "restored %s into %s\n", file, redactURL(cfg.DatabaseURL))
		epoch, err := pgserver.NeededEpoch(ctx, cfg.DatabaseURL)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if epoch > 0 {
			return fmt.Errorf("restore: restored, but this server's transaction ids are behind those stored in the backup "+
				"(a younger server than the one backed up): clicks would not be counted until it reaches epoch %d; "+
				"restore into a server that has run more transactions, or see docs/operations.md", epoch)
		}
		return nil
	}

	if err := cfg.data.hold(); err != nil {
		if errors.Is(err, datadir.ErrLocked) {
			return fmt.Errorf("restore: %w (a restore needs the data directory to itself)", err)
		}
		return err
	}
	if err := checkEmptyDir(cfg.DataDir); err != nil {
		return err
	}
	if err := pgserver.CheckDump(ctx, bin, file); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	dbURL, err := cfg.data.databaseURL(ctx)
	if err == nil {
		err = pgserver.Restore(ctx, bin, dbURL, file)
	}
	var epoch uint32
	if err == nil {
		epoch, err = pgserver.NeededEpoch(ctx, dbURL)
	}
	if err == nil && epoch > 0 {
		// The new cluster's transaction ids start low; move them past the backup's so
		// the aggregator's watermark keeps meaning what it meant.
		if err = cfg.data.Close(); err == nil {
			err = pgserver.SetEpoch(ctx, pgserver.Config{Dir: cfg.DataDir, Binaries: bin}, epoch)
		}
	}
	if err != nil {
		// Leave the directory empty again, as it was, so the restore can be retried.
		cerr := cfg.data.Close()
		if rerr := os.RemoveAll(filepath.Join(cfg.DataDir, "pg")); rerr != nil {
			cerr = errors.Join(cerr, rerr)
		}
		return errors.Join(fmt.Errorf("restore: %w", err), cerr)
	}
	fmt.Fprintf(stdout, "restored %s into the embedded database in %s\n", file, cfg.DataDir)
	return nil
}

// fileArg is the one FILE argument of hop backup or hop restore. Neither takes flags,
// so an argument that looks like one (-x, a mistyped --output=x) is a usage error
// rather than the name of a file to write, or one pg_restore would take for an option.
func fileArg(cmd string, args []string) (string, error) {
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			return "", usagef("usage: hop %s FILE (it takes no flags, and %q looks like one; for a file of that name write ./%s)", cmd, a, a)
		}
	}
	if len(args) != 1 || args[0] == "" {
		return "", usagef("usage: hop %s FILE", cmd)
	}
	return args[0], nil
}

// checkEmptyDir refuses a data directory with anything in it but its lock file.
func checkEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != datadir.LockFile {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil
	}
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return fmt.Errorf("restore: data directory %s is not empty (%s): a restore only loads into an empty one; "+
		"move its contents away or set HOP_DATA_DIR to a new directory", dir, strings.Join(names, ", "))
}
