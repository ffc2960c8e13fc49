package app

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/testenv"
)

// A value that does not fit its setting, in the environment or in the config file,
// is refused with the setting's name, the variable and the value, like Validate's
// messages; never with a Go field name or a YAML type.
func TestConfigErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		env, file string
		want      string
	}{
		{env: "HOP_SLUG_MIN_LENGTH=abc", want: `invalid setting slug_min_length (HOP_SLUG_MIN_LENGTH): must be a whole number, got "abc"`},
		{env: "HOP_AGGREGATE_INTERVAL=5", want: `invalid setting aggregate_interval (HOP_AGGREGATE_INTERVAL): must be a duration like 500ms, 2s or 1m, got "5"`},
		{env: "HOP_ROBOTS_ALLOW=yes please", want: `invalid setting robots_allow (HOP_ROBOTS_ALLOW): must be true or false, got "yes please"`},
		{env: "HOP_SPOOL_MAX_BYTES=1GiB", want: `invalid setting spool_max_bytes (HOP_SPOOL_MAX_BYTES): must be a whole number, got "1GiB"`},
		{env: "HOP_ADDR=8080", want: `invalid setting addr (HOP_ADDR): must be HOST:PORT or :PORT`},
		{env: "HOP_ADDR=127.0.0.1:99999", want: `invalid setting addr (HOP_ADDR): "127.0.0.1:99999" has no valid port`},
		{file: "addr: \":8080\"\nshutdown_timeout: 30\n", want: `config file CONFIG line 2: invalid setting shutdown_timeout (HOP_SHUTDOWN_TIMEOUT): must be a duration like 500ms, 2s or 1m, got "30"`},
		{file: "trusted_proxies: 10.0.0.0/8\n", want: `config file CONFIG line 1: invalid setting trusted_proxies (HOP_TRUSTED_PROXIES): must be a list`},
		{file: "max_connections: [1, 2]\n", want: `config file CONFIG line 1: invalid setting max_connections (HOP_MAX_CONNECTIONS): must be a whole number, got a list or mapping`},
		{file: "addr: \":8080\"\nrate_limit: 10-S\n", want: `config file CONFIG line 2: unknown setting "rate_limit"`},
		{file: "- addr\n", want: "config file CONFIG: want one `setting: value` per line"},
	} {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(c.file), 0o600); err != nil {
			t.Fatal(err)
		}
		k, v, _ := strings.Cut(c.env, "=")
		_, err := loadConfig(path, true, func(name string) string {
			if name == k {
				return v
			}
			return ""
		})
		want := strings.ReplaceAll(c.want, "CONFIG", path)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("env %q, file %q: %v\nwant one line containing %s", c.env, c.file, err, want)
		}
	}
}

// hop health checks the address hop listens on: a host in HOP_ADDR, or loopback when
// it names none.
func TestHealthCommandUsesConfiguredHost(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ addr, want string }{
		{":8080", "127.0.0.1:8080"},
		{"0.0.0.0:8080", "127.0.0.1:8080"},
		{"[::]:8080", "[::1]:8080"},
		{"127.0.0.2:8080", "127.0.0.2:8080"},
		{"[::1]:8080", "[::1]:8080"},
		{"hop.internal:8080", "hop.internal:8080"},
	} {
		if got := localAddr(c.addr); got != c.want {
			t.Errorf("localAddr(%q) = %q, want %q", c.addr, got, c.want)
		}
	}

	// A server on another loopback address than 127.0.0.1, as one bound to a host's
	// own address is.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok","checks":{}}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	env := map[string]string{"HOP_ADDR": ln.Addr().String(), "HOP_DATA_DIR": t.TempDir()}
	var out, errOut bytes.Buffer
	if err := Run(t.Context(), []string{"health"}, func(k string) string { return env[k] }, &out, &errOut); err != nil || out.String() != "ok\n" {
		t.Fatalf("hop health with HOP_ADDR=%s: %v (%q)", ln.Addr(), err, out.String())
	}
	err = Run(t.Context(), []string{"health", "extra"}, func(k string) string { return env[k] }, &out, &errOut)
	if !errors.Is(err, errUsage) {
		t.Fatalf("hop health extra = %v, want a usage error", err)
	}
}

// A mistyped server command is a usage error (exit status 2) found before anything is
// opened: no data directory, no embedded cluster, no database.
func TestServerCommandTypoChangesNothing(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	name := "hop_typo_never_created_" + randomName(t)
	for _, mode := range []map[string]string{
		{"HOP_DATA_DIR": dir},
		{"HOP_DATA_DIR": dir, "DATABASE_URL": testenv.WithDatabase(testenv.AdminURL(), name)},
	} {
		for _, args := range [][]string{
			{"migrate"}, {"migrate", "sideways"}, {"migrate", "up", "now"},
			{"apikey"}, {"apikey", "frob"}, {"apikey", "create"}, {"apikey", "create", "--name", "ci", "extra"},
			{"apikey", "revoke"}, {"apikey", "revoke", "abc"}, {"apikey", "list", "all"},
			{"domain"}, {"domain", "frob"}, {"domain", "add"}, {"domain", "remove"}, {"domain", "list", "x"},
			{"backup"}, {"restore"},
			{"serve", "extra"}, {"serve", "--config", "x.yaml"}, // flags go before the command
		} {
			var out, errOut bytes.Buffer
			err := Run(t.Context(), args, func(k string) string { return mode[k] }, &out, &errOut)
			if ExitCode(err) != 2 || !strings.Contains(err.Error(), "usage") && !errors.Is(err, errUsage) {
				t.Errorf("hop %s = %v (exit %d), want a usage error (exit 2)", strings.Join(args, " "), err, ExitCode(err))
			}
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a usage error made the data directory: %v", err)
	}
	if databaseExists(t, name) {
		t.Error("a usage error created the database")
	}
}

// databaseExists reports whether the shared server has a database name, dropping it
// when it does so that a failing test leaves nothing behind.
func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	admin, err := pgx.Connect(context.Background(), testenv.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var exists bool
	if err := admin.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	return exists
}

// hop backup writes a file only its owner can read (it holds the webhook and slug
// secrets); hop restore of a file that is no backup, or a truncated one, says so and
// changes nothing: no database created for it, no cluster made in the data directory.
func TestBackupRestoreFileChecks(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	file := filepath.Join(t.TempDir(), "hop.dump")
	if out, err := runCLI(t, testConfig(t, db, nil), "backup", file); err != nil || !strings.Contains(out, "backed up") {
		t.Fatalf("backup = %q, %v", out, err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("backup file mode %v, want readable by its owner only", fi.Mode().Perm())
	}

	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{"foreign": []byte("links,clicks\nabc,1\n"), "empty": nil, "truncated": b[:len(b)/3],
		"cut short by a byte": b[:len(b)-1]} // its table of contents is whole
	for what, content := range bad {
		f := filepath.Join(t.TempDir(), what+".dump")
		if err := os.WriteFile(f, content, 0o600); err != nil {
			t.Fatal(err)
		}
		name := "hop_restore_never_created_" + randomName(t)
		ext := testConfig(t, &testenv.DB{URL: testenv.WithDatabase(testenv.AdminURL(), name)}, nil)
		_, err := runCLI(t, ext, "restore", f)
		if err == nil || !strings.Contains(err.Error(), "is not a backup this PostgreSQL") || strings.Contains(err.Error(), "restore: restore:") {
			t.Errorf("restore of a %s file into DATABASE_URL = %v", what, err)
		}
		if databaseExists(t, name) {
			t.Errorf("restore of a %s file created the database", what)
		}

		dir := embeddedDir(t)
		_, err = runCLI(t, embeddedConfig(t, dir, nil), "restore", f)
		if err == nil || !strings.Contains(err.Error(), "is not a backup this PostgreSQL") {
			t.Errorf("restore of a %s file into a data directory = %v", what, err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 || entries[0].Name() != "hop.lock" {
			t.Errorf("restore of a %s file left %v in the data directory", what, entries)
		}
		if st, err := os.Stat(dir); err != nil || ownerOf(st) != os.Geteuid() {
			t.Errorf("restore of a %s file gave the data directory away (%v)", what, err)
		}
	}
}

// hop migrate down with nothing applied says so.
func TestMigrateDownWithNothingApplied(t *testing.T) {
	t.Parallel()
	name := "hop_migrate_empty_" + randomName(t)
	t.Cleanup(func() { databaseExists(t, name) })
	cfg := testConfig(t, &testenv.DB{URL: testenv.WithDatabase(testenv.AdminURL(), name)}, nil)
	_, err := runCLI(t, cfg, "migrate", "down")
	if err == nil || !strings.Contains(err.Error(), "no migration is applied, so there is nothing to roll back") {
		t.Fatalf("migrate down on an empty database = %v", err)
	}
}

// hop stopped while its embedded PostgreSQL starts ends as a stop does (exit 0),
// saying it was interrupted rather than what the tools it killed printed, and a later
// start begins from nothing.
func TestEmbeddedStartInterrupted(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // SIGTERM before the first start has made the cluster
	var out, errOut bytes.Buffer
	err := Run(ctx, []string{"--config", writeConfig(t, embeddedConfig(t, dir, nil)), "serve"}, func(string) string { return "" }, &out, &errOut)
	if err != nil {
		t.Fatalf("serve stopped during start-up = %v, want a clean stop", err)
	}
	logs := out.String() + errOut.String()
	if !strings.Contains(logs, "stopped before hop was ready") || !strings.Contains(logs, "embedded PostgreSQL: start interrupted: context canceled") {
		t.Fatalf("the log does not say the start was interrupted:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(dir, "pg")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an interrupted first start left a cluster directory: %v", err)
	}
}

func ownerOf(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }
