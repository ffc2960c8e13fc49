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
	dsn, env := libpq(dbURL)
	if err := run(ctx, env, pgDump, "--format=custom", "--file="+tmp, "--dbname="+dsn); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pg_dump: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	return syncDir(filepath.Dir(file))
}

// Restore loads file, written by Dump, into the database at dbURL in one transaction,
// so a failure leaves it as empty as it was. It refuses a database that has tables.
// Objects end up owned by the connecting role, whatever role owned them before.
func Restore(ctx context.Context, bin Binaries, dbURL, file string) error {
	pgRestore, err := bin.tool("pg_restore")
	if err != nil {
		return err
	}
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	dsn, env := libpq(dbURL)
	// Reading the table of contents checks the file is a dump this pg_restore reads
	// before anything touches the database.
	if err := run(ctx, env, pgRestore, "--list", "--file="+os.DevNull, file); err != nil {
		return fmt.Errorf("restore: %s is not a backup this PostgreSQL %d can read: %w", file, bin.Version, err)
	}
	if err := checkEmpty(ctx, dbURL); err != nil {
		return err
	}
	if err := run(ctx, env, pgRestore, "--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges",
		"--dbname="+dsn, file); err != nil {
		return fmt.Errorf("pg_restore: %w", err)
	}
	return nil
}

// checkEmpty fails with ErrNotEmpty when the database has any table, view or sequence
// outside the system schemas.
func checkEmpty(ctx context.Context, dbURL string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer conn.Close(ctx)
	const q = `
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'`
	var n int
	if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
		return fmt.Errorf("restore: %w", err)
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
		return fmt.Errorf("backup: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}
