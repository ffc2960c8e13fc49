package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrNotEmpty means a restore target already holds tables.
var ErrNotEmpty = errors.New("the target database is not empty")

// Dump writes the database at dbURL to file in pg_dump's custom format: one snapshot,
// so links and their rollups agree. It writes beside file and renames, so a failed
// dump never replaces a good one.
func Dump(ctx context.Context, bin Binaries, dbURL, file string) error {
	pgDump, err := bin.tool("pg_dump")
	if err != nil {
		return err
	}
	tmp := file + ".partial"
	// Created here, readable by its owner only: a dump holds the webhook and slug
	// secrets, which pg_dump would write with the umask's mode (often world-readable).
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil { // a .partial left by a failed run keeps its mode
		f.Close()
		os.Remove(tmp)
		return err
	}
	f.Close()
	dsn, env := libpq(dbURL)
	if err := run(ctx, env, pgDump, "--format=custom", "--file="+tmp, "--dbname="+dsn); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pg_dump: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(file))
}

// CheckDump fails unless file is a whole dump this PostgreSQL's pg_restore reads. It
// reads the file through once, into nothing, before anything is created or changed:
// its table of contents alone does not show that a copy was cut short.
func CheckDump(ctx context.Context, bin Binaries, file string) error {
	pgRestore, err := bin.tool("pg_restore")
	if err != nil {
		return err
	}
	if _, err := os.Stat(file); err != nil {
		return err
	}
	if err := run(ctx, os.Environ(), pgRestore, "--file="+os.DevNull, file); err != nil {
		return fmt.Errorf("%s is not a backup this PostgreSQL %d can read (a whole file written by hop backup): %w", file, bin.Version, err)
	}
	return nil
}

// Restore loads file, written by Dump, into the database at dbURL in one transaction,
// so a failure leaves it as empty as it was. It refuses a database that has tables.
// Objects end up owned by the connecting role, whatever role owned them before. It then
// runs ANALYZE: a dump carries no planner statistics, and until autovacuum's ANALYZE
// reaches each table the planner guesses: it never chooses a BRIN index (that needs the
// column's correlation), and prepared statements may keep generic plans made on those
// guesses.
func Restore(ctx context.Context, bin Binaries, dbURL, file string) error {
	pgRestore, err := bin.tool("pg_restore")
	if err != nil {
		return err
	}
	if err := CheckDump(ctx, bin, file); err != nil {
		return err
	}
	dsn, env := libpq(dbURL)
	if err := checkEmpty(ctx, dbURL); err != nil {
		return err
	}
	if err := run(ctx, env, pgRestore, "--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges",
		"--dbname="+dsn, file); err != nil {
		return fmt.Errorf("pg_restore: %w", err)
	}
	if err := analyze(ctx, dbURL); err != nil {
		return fmt.Errorf("restored, but the planner has no statistics until ANALYZE runs (autovacuum's, or yours): %w", err)
	}
	return nil
}

func analyze(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

// checkEmpty fails with ErrNotEmpty when the database has any table, view or sequence
// outside the system schemas.
func checkEmpty(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	const q = `
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'`
	var n int
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		return fmt.Errorf("count tables: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("%w: database %s has %d tables, views or sequences; restore only into an empty database",
			ErrNotEmpty, conn.Config().Database, n)
	}
	return nil
}

// libpq splits a password out of a URL into PGPASSWORD, so it never shows in the
// process list. Other forms pass through unchanged.
func libpq(dbURL string) (dsn string, env []string) {
	env = os.Environ()
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.User == nil {
		return dbURL, env
	}
	if pw, ok := u.User.Password(); ok {
		env = append(env, "PGPASSWORD="+pw)
		u.User = url.User(u.User.Username())
	}
	return u.String(), env
}

// run runs a client program, returning its stderr in the error.
func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return fmt.Errorf("%s: %w", msg, err)
		}
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// NeededEpoch reports the transaction id epoch the cluster behind dbURL must reach so
// that every new transaction id is above every xid8 value stored in its tables; 0 when
// it is already there. hop's aggregator keeps a watermark of transaction ids: restored
// into a younger cluster, new clicks would get ids below it and never be counted.
func NeededEpoch(ctx context.Context, dbURL string) (uint32, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, fmt.Errorf("transaction ids: %w", err)
	}
	defer conn.Close(ctx)
	const columnsSQL = `
SELECT format('SELECT coalesce(max(%I)::text, ''0'') FROM %I.%I', a.attname, n.nspname, c.relname)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.atttypid = 'xid8'::regtype AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')`
	rows, err := conn.Query(ctx, columnsSQL)
	if err != nil {
		return 0, fmt.Errorf("transaction ids: %w", err)
	}
	queries, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("transaction ids: %w", err)
	}
	var stored uint64
	for _, q := range queries {
		var s string
		if err := conn.QueryRow(ctx, q).Scan(&s); err != nil {
			return 0, fmt.Errorf("transaction ids: %w", err)
		}
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("transaction ids: %q: %w", s, err)
		}
		stored = max(stored, v)
	}
	var cur string
	if err := conn.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&cur); err != nil {
		return 0, fmt.Errorf("transaction ids: %w", err)
	}
	current, err := strconv.ParseUint(cur, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("transaction ids: %q: %w", cur, err)
	}
	if current > stored {
		return 0, nil
	}
	return uint32(stored>>32) + 1, nil
}

// SetEpoch moves the stopped embedded cluster in cfg.Dir to transaction id epoch
// epoch with pg_resetwal, which is safe on a cleanly shut down cluster: only the upper
// half of 64-bit transaction ids changes, never visibility.
func SetEpoch(ctx context.Context, cfg Config, epoch uint32) error {
	resetwal, err := cfg.Binaries.tool("pg_resetwal")
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return err
	}
	pgdir := filepath.Join(dir, "pg")
	acct, err := serverAccount(pgdir)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, resetwal, "-e", strconv.FormatUint(uint64(epoch), 10), "-D", pgdir)
	cmd.Dir = dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = toolProcAttr(acct.credential())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_resetwal: %s: %w", strings.TrimSpace(string(out)), err)
	}
	return nil
}
