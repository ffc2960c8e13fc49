package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/pgserver"
	"github.com/hop-dev/hop/internal/testenv"
)

// These tests run hop on its embedded PostgreSQL: DATABASE_URL empty, the data in a
// temporary HOP_DATA_DIR. Each checks that no PostgreSQL process outlives it.

const browserUA = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"

// embeddedDir is an empty data directory; as root, PostgreSQL runs as another user,
// which must be able to enter the 0700 directory Go makes for each test.
func embeddedDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if os.Geteuid() == 0 {
		if err := os.Chmod(filepath.Dir(d), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if pids := postgresIn(t, filepath.Join(d, "pg")); len(pids) > 0 {
			t.Errorf("PostgreSQL processes left running on %s: %v", d, pids)
		}
	})
	return d
}

// embeddedConfig is testConfig on the embedded PostgreSQL in dir (with Redis if rdb).
func embeddedConfig(t *testing.T, dir string, rdb *testenv.Redis) map[string]any {
	cfg := testConfig(t, &testenv.DB{}, rdb)
	cfg["database_url"] = ""
	cfg["data_dir"] = dir
	return cfg
}

// startEmbedded runs hop in-process like startWith, with a give-up bound that allows for
// initdb on a loaded machine.
func startEmbedded(t *testing.T, cfg map[string]any) *instance {
	t.Helper()
	path := writeConfig(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	h := &instance{Key: testAPIKey, Config: cfg, logs: &syncBuffer{}, stop: cancel, done: make(chan error, 1)}
	go func() {
		h.done <- Run(ctx, []string{"--config", path, "serve"}, func(string) string { return "" }, io.Discard, h.logs)
	}()
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("hop stopped with error: %v\nlogs:\n%s", err, h.logs)
		}
	})
	awaitServing(t, h, 3*time.Minute) // allows for initdb on a loaded machine
	return h
}

// runCLI runs one hop command with cfg in-process.
func runCLI(t *testing.T, cfg map[string]any, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := Run(ctx, append([]string{"--config", writeConfig(t, cfg)}, args...), func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Logf("hop %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

// postgresIn lists live processes working in pgdir: a postmaster and every process it
// forks change into the data directory.
func postgresIn(t testing.TB, pgdir string) map[int]int {
	t.Helper()
	want, err := filepath.EvalSymlinks(pgdir)
	if err != nil {
		return nil // never created
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("these tests need /proc: %v", err)
	}
	pids := map[int]int{} // pid -> parent pid
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err != nil || cwd != want {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ..."
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pids[pid] = ppid
	}
	return pids
}

// postmasters are the processes in pgdir whose parent is not: one per running server.
func postmasters(t testing.TB, pgdir string) []int {
	procs := postgresIn(t, pgdir)
	var roots []int
	for pid, ppid := range procs {
		if _, ok := procs[ppid]; !ok {
			roots = append(roots, pid)
		}
	}
	return roots
}

// click sends one browser redirect and checks the 302.
func (h *instance) click(t testing.TB, slug string) {
	t.Helper()
	mustStatus(t, h.do(t, http.MethodGet, "/"+slug, nil, "User-Agent", browserUA), http.StatusFound)
}

// From nothing to a counted click on the embedded default; a restart keeps links and
// counts; SIGTERM stops PostgreSQL after hop, leaving no process.
func TestEmbeddedFirstStartAndRestart(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	cfg := embeddedConfig(t, dir, nil)
	cfg["log_level"] = "info"
	began := time.Now()
	h := startEmbedded(t, cfg)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/embedded"})["slug"].(string)
	h.click(t, slug)
	t.Logf("start to first 302 on an empty data directory: %s", time.Since(began).Round(time.Millisecond))
	for range 29 {
		h.click(t, slug)
	}
	h.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"] == float64(30) })
	if !strings.Contains(h.logs.String(), "creating the embedded PostgreSQL cluster") {
		t.Fatalf("first start did not create the cluster:\n%s", h.logs)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := postgresIn(t, filepath.Join(dir, "pg")); len(pids) > 0 {
		t.Fatalf("PostgreSQL still running after hop stopped: %v", pids)
	}

	h2 := startEmbedded(t, cfg)
	if strings.Contains(h2.logs.String(), "creating the embedded PostgreSQL cluster") {
		t.Fatal("restart created the cluster again")
	}
	h2.click(t, slug)
	h2.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"] == float64(31) })
	if n := len(postmasters(t, filepath.Join(dir, "pg"))); n != 1 {
		t.Fatalf("%d postmasters on the data directory, want 1", n)
	}
}

// kill -9 of a hop process on the embedded PostgreSQL, under load: the restarted hop
// runs exactly one postmaster on the data directory, everything PostgreSQL had
// committed is there (links, counted clicks), nothing is counted twice, and SIGTERM
// then leaves nothing running.
func TestEmbeddedKilledProcess(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	pgdir := filepath.Join(dir, "pg")
	rdb := testenv.NewRedis(t)
	cfg := embeddedConfig(t, dir, rdb)
	cfg["consumer_name"] = "embedded-kill"
	h, kill := startProcess(t, nil, rdb, cfg)
	var slugs []string
	for i := range 20 {
		slugs = append(slugs, h.createLink(t, map[string]any{"url": fmt.Sprintf("https://example.com/kill/%d", i)})["slug"].(string))
	}
	slug := slugs[0]
	const clients = 8
	stopLoad := h.loadRedirects(slug, clients)
	counted := h.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"].(float64) >= 50 })["total_clicks"].(float64)
	kill()
	n := stopLoad()
	first := postmasters(t, pgdir)

	h2, _ := startProcess(t, nil, rdb, cfg)
	if pms := postmasters(t, pgdir); len(pms) != 1 {
		t.Fatalf("postmasters on the data directory after restart: %v, want exactly one", pms)
	}
	for _, s := range slugs {
		mustStatus(t, h2.api(t, http.MethodGet, "/links/"+s, nil), http.StatusOK)
	}
	testenv.Eventually(t, time.Minute, "nothing pending", func() bool { return pending(t, rdb) == 0 })
	conn, err := pgx.Connect(t.Context(), pgserver.URL(dir)) // the restarted hop's server
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var raw, distinct int64
	if err := conn.QueryRow(t.Context(), "SELECT count(*), count(DISTINCT event_id) FROM click_logs").Scan(&raw, &distinct); err != nil {
		t.Fatal(err)
	}
	s := h2.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"] == float64(raw) })
	if raw != distinct || float64(raw) < counted {
		t.Fatalf("%d clicks stored (%d distinct), %v counted before the kill", raw, distinct, counted)
	}
	// Whether every answered click survives is the click path's promise (Redis, or the
	// local click log), proved by its own tests; here it is reported.
	t.Logf("postmaster at the kill %v; answered %d redirects, %v counted before kill -9, %v stored and counted after the restart",
		first, n, counted, s["total_clicks"])
	conn.Close(context.Background())
	if err := h2.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := postgresIn(t, pgdir); len(pids) > 0 {
		t.Fatalf("processes left after SIGTERM: %v", pids)
	}
}

// A second hop on a data directory in use refuses to start, saying which process has
// it; commands such as `hop apikey list` use the running hop's server instead, and a
// restore, which needs the directory to itself, is refused.
func TestEmbeddedSecondInstanceRefused(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	cfg := embeddedConfig(t, dir, nil)
	startEmbedded(t, cfg)

	second := maps.Clone(cfg)
	_, err := runCLI(t, second, "serve")
	want := "data directory " + dir + " is in use by another hop process (pid " + strconv.Itoa(os.Getpid()) + ")"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second serve = %v, want %q", err, want)
	}
	out, err := runCLI(t, second, "apikey", "list")
	if err != nil || !strings.Contains(out, "PREFIX") {
		t.Fatalf("apikey list beside a running hop = %q, %v", out, err)
	}
	dump := filepath.Join(t.TempDir(), "x.dump")
	if err := os.WriteFile(dump, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, second, "restore", dump)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("restore into a data directory in use = %v", err)
	}
	if pms := postmasters(t, filepath.Join(dir, "pg")); len(pms) != 1 {
		t.Fatalf("postmasters: %v, want one", pms)
	}
}

// hop backup of a running embedded hop, hop restore into an empty data directory and,
// moving to a server, into DATABASE_URL: links and rollups come back identical.
func TestEmbeddedBackupRestore(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	cfg := embeddedConfig(t, dir, nil)
	h := startEmbedded(t, cfg)
	a := h.createLink(t, map[string]any{"url": "https://example.com/a", "tags": []string{"x"}})["slug"].(string)
	b := h.createLink(t, map[string]any{"url": "https://example.com/b"})["slug"].(string)
	for range 25 {
		h.click(t, a)
	}
	for range 5 {
		h.click(t, b)
	}
	want := map[string]map[string]any{
		a: h.waitStats(t, a, func(s map[string]any) bool { return s["total_clicks"] == float64(25) }),
		b: h.waitStats(t, b, func(s map[string]any) bool { return s["total_clicks"] == float64(5) }),
	}
	wantLinks := h.api(t, http.MethodGet, "/links", nil).JSON(t)["items"]

	file := filepath.Join(t.TempDir(), "hop.dump")
	out, err := runCLI(t, cfg, "backup", file) // beside the running hop
	if err != nil || !strings.Contains(out, "backed up") {
		t.Fatalf("backup = %q, %v", out, err)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}

	// The restored tables have the planner's statistics at once: hop restore analyzes
	// them (autovacuum's ANALYZE would set last_autoanalyze instead).
	analyzed := func(t *testing.T, dbURL string) {
		t.Helper()
		conn, err := pgx.Connect(t.Context(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(t.Context(), `SELECT relname FROM pg_stat_user_tables
WHERE relname IN ('links', 'click_logs', 'daily_stats', 'daily_visitors') AND last_analyze IS NULL ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		if missing, err := pgx.CollectRows(rows, pgx.RowTo[string]); err != nil || len(missing) > 0 {
			t.Errorf("tables not analyzed after restore: %v, %v", missing, err)
		}
	}

	check := func(t *testing.T, h *instance) {
		t.Helper()
		for slug, w := range want {
			// The stats handler may still be loading rollups right after start.
			h.waitStats(t, slug, func(got map[string]any) bool {
				for k := range maps.Keys(w) {
					if !reflect.DeepEqual(got[k], w[k]) {
						t.Logf("stats of %s after restore: %s is %v, want %v", slug, k, got[k], w[k])
						return false
					}
				}
				return true
			})
		}
		if got := h.api(t, http.MethodGet, "/links", nil).JSON(t)["items"]; !reflect.DeepEqual(got, wantLinks) {
			t.Errorf("links after restore:\n got %v\nwant %v", got, wantLinks)
		}
		slug := h.createLink(t, map[string]any{"url": "https://example.com/after"})["slug"].(string)
		if slug == a || slug == b {
			t.Errorf("a new link reused slug %s", slug)
		}
	}

	t.Run("into the used data directory", func(t *testing.T) {
		_, err := runCLI(t, cfg, "restore", file)
		if err == nil || !strings.Contains(err.Error(), "is not empty") {
			t.Fatalf("restore into a used data directory = %v", err)
		}
	})

	t.Run("into an empty data directory", func(t *testing.T) {
		dir2 := embeddedDir(t)
		cfg2 := embeddedConfig(t, dir2, nil)
		if out, err := runCLI(t, cfg2, "restore", file); err != nil || !strings.Contains(out, "restored") {
			t.Fatalf("restore = %q, %v", out, err)
		}
		h2 := startEmbedded(t, cfg2)
		analyzed(t, pgserver.URL(dir2))
		check(t, h2)
		// Clicks after the restore are counted too (the new cluster's transaction ids
		// were moved past the backup's, which the aggregator's watermark compares).
		h2.click(t, a)
		h2.waitStats(t, a, func(s map[string]any) bool { return s["total_clicks"] == float64(26) })
		if err := h2.Stop(); err != nil {
			t.Fatal(err)
		}
		// A backup of a stopped hop starts the server for the dump only.
		file2 := filepath.Join(t.TempDir(), "again.dump")
		if _, err := runCLI(t, cfg2, "backup", file2); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(file2); err != nil || fi.Size() == 0 {
			t.Fatalf("second backup: %v", err)
		}
	})

	t.Run("into DATABASE_URL", func(t *testing.T) {
		name := "hop_test_restore_" + randomName(t)
		dbURL := testenv.WithDatabase(testenv.AdminURL(), name)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, testenv.AdminURL())
			if err != nil {
				t.Errorf("drop %s: %v", name, err)
				return
			}
			defer conn.Close(ctx)
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
				t.Errorf("drop %s: %v", name, err)
			}
		})
		ext := testConfig(t, &testenv.DB{URL: dbURL}, nil)
		// The database does not exist yet: restore creates it (create_database).
		if out, err := runCLI(t, ext, "restore", file); err != nil || !strings.Contains(out, "restored") {
			t.Fatalf("restore into DATABASE_URL = %q, %v", out, err)
		}
		analyzed(t, dbURL)
		_, err := runCLI(t, ext, "restore", file)
		if err == nil || !strings.Contains(err.Error(), "not empty") {
			t.Fatalf("second restore into the same database = %v", err)
		}
		check(t, startEmbedded(t, ext))
	})
}

func randomName(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// With nothing configured hop runs on its own: embedded PostgreSQL, no Redis.
func TestDefaultsNeedNoServers(t *testing.T) {
	t.Parallel()
	c := defaultConfig()
	if c.DatabaseURL != "" || c.RedisURL != "" || c.DataDir != "./hop-data" {
		t.Fatalf("defaults: database_url %q, redis_url %q, data_dir %q", c.DatabaseURL, c.RedisURL, c.DataDir)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.DataDir = " "
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "invalid setting data_dir (HOP_DATA_DIR)") {
		t.Fatalf("empty data_dir: %v", err)
	}
}

// Without PostgreSQL's binaries, hop says what to install or to set DATABASE_URL, and
// creates nothing.
func TestEmbeddedWithoutBinaries(t *testing.T) {
	t.Parallel()
	dir := embeddedDir(t)
	cfg := embeddedConfig(t, dir, nil)
	cfg["pg_binaries"] = t.TempDir()
	_, err := runCLI(t, cfg, "serve")
	for _, want := range []string{"no PostgreSQL server binaries found", "apt-get install postgresql", "DATABASE_URL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("serve without binaries = %v, want it to mention %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pg")); !os.IsNotExist(err) {
		t.Fatalf("a cluster directory was created: %v", err)
	}
}

// A command without DATABASE_URL beside a hop that uses an external database says to
// give it that URL, instead of failing to reach a socket that is not there.
func TestCommandBesideExternalHop(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	cfg := maps.Clone(h.Config)
	cfg["database_url"] = ""
	_, err := runCLI(t, cfg, "apikey", "list")
	if err == nil || !strings.Contains(err.Error(), "runs no embedded PostgreSQL there: give this command the DATABASE_URL") {
		t.Fatalf("apikey list = %v", err)
	}
}
