package pgserver

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDir is an empty data directory PostgreSQL can reach: as root, the server runs
// as another user, and Go makes each test's temporary root 0700.
func testDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if os.Geteuid() == 0 {
		if err := os.Chmod(filepath.Dir(d), 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func testBinaries(t *testing.T) Binaries {
	t.Helper()
	b, err := FindBinaries(os.Getenv("HOP_PG_BINARIES"))
	if err != nil {
		t.Fatalf("the embedded PostgreSQL tests need PostgreSQL's server binaries: %v", err)
	}
	return b
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// start runs a server in dir and fails the test when no process is left after it.
func start(t *testing.T, dir string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Dir: dir, Binaries: testBinaries(t), Logger: testLogger(t), noSync: true})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		if pids := processesIn(t, filepath.Join(dir, "pg")); len(pids) > 0 {
			t.Errorf("PostgreSQL processes left behind after Stop: %v", pids)
		}
	})
	return s
}

// processesIn lists the live processes working in pgdir: a postmaster and its
// children all change into the data directory.
func processesIn(t *testing.T, pgdir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("these tests need /proc: %v", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && runsIn(pid, pgdir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec1(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, conn *pgx.Conn, sql string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// First start creates the cluster and the hop database, listens on the socket only,
// and a restart finds the data again.
func TestFirstStartAndRestart(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	s := start(t, dir)
	conn := connect(t, s.URL())
	var listen, db, user string
	if err := conn.QueryRow(context.Background(), "SELECT current_setting('listen_addresses'), current_database(), current_user").Scan(&listen, &db, &user); err != nil {
		t.Fatal(err)
	}
	if listen != "" || db != "hop" || user != "hop" {
		t.Fatalf("listen_addresses=%q database=%q user=%q, want '', hop, hop", listen, db, user)
	}
	fi, err := os.Stat(socketPath(dir))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o700 {
		t.Fatalf("socket %s: %v %v, want a socket with mode 0700", socketPath(dir), fi.Mode(), err)
	}
	exec1(t, conn, "CREATE TABLE kept (n int); INSERT INTO kept SELECT generate_series(1, 42)")
	conn.Close(context.Background())
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := processesIn(t, filepath.Join(dir, "pg")); len(pids) > 0 {
		t.Fatalf("processes left after Stop: %v", pids)
	}
	if _, err := os.Stat(socketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket still there after Stop: %v", err)
	}

	s2 := start(t, dir)
	if n := count(t, connect(t, s2.URL()), "SELECT count(*) FROM kept"); n != 42 {
		t.Fatalf("after restart: %d rows, want 42", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "pg.initdb")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("initdb's scratch directory left behind: %v", err)
	}
}

// A postmaster left running on the data directory (its hop killed before the kernel's
// parent-death signal could stop it, or started by hand) is stopped, and hop's own
// server takes over with every committed row.
func TestOrphanIsStopped(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	s := start(t, dir)
	conn := connect(t, s.URL())
	exec1(t, conn, "CREATE TABLE kept (n int); INSERT INTO kept SELECT generate_series(1, 7)")
	conn.Close(context.Background())
	args := s.serverArgs()
	bin := testBinaries(t)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	// The orphan: a postmaster whose parent (sh) has already exited.
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	sh := exec.Command("/bin/sh", "-c", "'"+filepath.Join(bin.Dir, "postgres")+"' "+strings.Join(quoted, " ")+" >/dev/null 2>&1 &")
	sh.Dir = filepath.Join(dir, "pg")
	acct, err := serverAccount(filepath.Join(dir, "pg"))
	if err != nil {
		t.Fatal(err)
	}
	sh.SysProcAttr = &syscall.SysProcAttr{Credential: acct.credential(), Setsid: true}
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("start orphan: %v: %s", err, out)
	}
	var orphan int
	deadline := time.Now().Add(time.Minute)
	for {
		if pid, ok := postmasterPID(filepath.Join(dir, "pg")); ok && runsIn(pid, filepath.Join(dir, "pg")) {
			b, _ := os.ReadFile(filepath.Join(dir, "pg", "postmaster.pid"))
			if strings.Contains(string(b), "ready") {
				orphan = pid
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the orphan postmaster did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { // never leave it running, whatever happens above
		if runsIn(orphan, filepath.Join(dir, "pg")) {
			_ = syscall.Kill(orphan, syscall.SIGQUIT)
		}
	})

	s2 := start(t, dir)
	if runsIn(orphan, filepath.Join(dir, "pg")) {
		t.Fatalf("orphan postmaster %d still runs", orphan)
	}
	if pid := int(s2.pid.Load()); pid == orphan {
		t.Fatal("the orphan was adopted, not replaced")
	}
	if n := count(t, connect(t, s2.URL()), "SELECT count(*) FROM kept"); n != 7 {
		t.Fatalf("after replacing the orphan: %d rows, want 7", n)
	}
}

// A postmaster that dies under hop is restarted by the supervisor with its data.
func TestSupervisorRestartsPostgres(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	s := start(t, dir)
	conn := connect(t, s.URL())
	exec1(t, conn, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
	conn.Close(context.Background())
	first := int(s.pid.Load())
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for int(s.pid.Load()) == first || !s.pmReady() {
		if time.Now().After(deadline) {
			t.Fatal("PostgreSQL was not restarted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := count(t, connect(t, s.URL()), "SELECT count(*) FROM kept"); n != 1 {
		t.Fatalf("after restart: %d rows, want 1", n)
	}
}

// Start refuses, with a message saying what to do, data it must not touch.
func TestStartRefusesForeignData(t *testing.T) {
	t.Parallel()
	bin := testBinaries(t)
	for _, tc := range []struct {
		name  string
		setup func(pg string)
		want  string
	}{
		{"other major version", func(pg string) {
			os.WriteFile(filepath.Join(pg, "PG_VERSION"), []byte("9\n"), 0o600)
		}, "was made by PostgreSQL 9 but the binaries"},
		{"not a cluster", func(pg string) {
			os.WriteFile(filepath.Join(pg, "notes.txt"), []byte("mine"), 0o600)
		}, "holds no PostgreSQL cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			pg := filepath.Join(dir, "pg")
			if err := os.Mkdir(pg, 0o700); err != nil {
				t.Fatal(err)
			}
			tc.setup(pg)
			_, err := Start(context.Background(), Config{Dir: dir, Binaries: bin, Logger: testLogger(t)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want an error containing %q", err, tc.want)
			}
			entries, _ := os.ReadDir(pg)
			if len(entries) != 1 {
				t.Fatalf("Start changed the directory: %d entries", len(entries))
			}
		})
	}
	t.Run("socket path too long", func(t *testing.T) {
		dir := filepath.Join(testDir(t), strings.Repeat("d", 100))
		_, err := Start(context.Background(), Config{Dir: dir, Binaries: bin, Logger: testLogger(t)})
		if err == nil || !strings.Contains(err.Error(), "too long for PostgreSQL's Unix socket") {
			t.Fatalf("Start = %v", err)
		}
	})
}

func TestFindBinaries(t *testing.T) {
	t.Parallel()
	_, err := FindBinaries(t.TempDir())
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("FindBinaries(empty dir) = %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{"HOP_PG_BINARIES=", "initdb missing", "apt-get install postgresql", "DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	found := testBinaries(t)
	again, err := FindBinaries(found.Dir)
	if err != nil || again != found {
		t.Fatalf("FindBinaries(%s) = %+v, %v; want %+v", found.Dir, again, err, found)
	}
}

// Restore loads a dump into an empty database and refuses one that has tables or a
// file that is not a dump, without touching the database.
func TestDumpRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bin := testBinaries(t)
	a := start(t, testDir(t))
	conn := connect(t, a.URL())
	exec1(t, conn, "CREATE TABLE links (id bigserial PRIMARY KEY, slug text UNIQUE); INSERT INTO links (slug) SELECT 's' || g FROM generate_series(1, 100) g")
	file := filepath.Join(t.TempDir(), "hop.dump")
	if err := Dump(ctx, bin, a.URL(), file); err != nil {
		t.Fatal(err)
	}

	// Into another server's fresh database: a second database in the same cluster.
	exec1(t, conn, "CREATE DATABASE target")
	target := dbURL(a.dir, "target")
	if err := Restore(ctx, bin, target, file); err != nil {
		t.Fatal(err)
	}
	tc := connect(t, target)
	if n := count(t, tc, "SELECT count(*) FROM links WHERE slug LIKE 's%'"); n != 100 {
		t.Fatalf("restored %d links, want 100", n)
	}
	if next := count(t, tc, "SELECT nextval('links_id_seq')"); next != 101 {
		t.Fatalf("restored sequence gives %d, want 101", next)
	}

	if err := Restore(ctx, bin, target, file); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Restore into a database with tables = %v, want ErrNotEmpty", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.dump")
	os.WriteFile(junk, []byte("not a dump"), 0o600)
	exec1(t, conn, "CREATE DATABASE target2")
	if err := Restore(ctx, bin, dbURL(a.dir, "target2"), junk); err == nil || !strings.Contains(err.Error(), "is not a backup") {
		t.Fatalf("Restore(junk) = %v", err)
	}
	if err := Dump(ctx, bin, dbURL(a.dir, "missing"), filepath.Join(t.TempDir(), "x.dump")); err == nil {
		t.Fatal("Dump of a missing database succeeded")
	}
}

// A postmaster.pid left by a server that is gone, whose pid now belongs to another
// process of the server's user (pids are reused after a reboot or a container
// restart), does not stop hop from starting; it is kept while any process still
// works in the data directory, where it guards the old server's shared memory.
func TestStalePostmasterPID(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	pgdir := filepath.Join(dir, "pg")
	s := start(t, dir)
	conn := connect(t, s.URL())
	exec1(t, conn, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
	conn.Close(context.Background())
	pidFile, err := os.ReadFile(filepath.Join(pgdir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	acct, err := serverAccount(pgdir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(pgdir)
	if err != nil {
		t.Fatal(err)
	}
	owner := fi.Sys().(*syscall.Stat_t)
	// sleeper runs a process as the server's user, working in wd.
	sleeper := func(wd string) int {
		cmd := exec.Command("sleep", "600")
		cmd.Dir = wd
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: acct.credential()}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd.Process.Pid
	}
	// stale writes the old server's postmaster.pid, naming pid instead.
	stale := func(pid int) {
		_, rest, _ := strings.Cut(string(pidFile), "\n")
		f := filepath.Join(pgdir, "postmaster.pid")
		if err := os.WriteFile(f, []byte(strconv.Itoa(pid)+"\n"+rest), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(f, int(owner.Uid), int(owner.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	other := sleeper(dir) // alive, the server's user, not working in pg/

	stale(other)
	backend := sleeper(pgdir) // stands for a backend of the old server
	_, err = Start(context.Background(), Config{Dir: dir, Binaries: testBinaries(t), Logger: testLogger(t), noSync: true})
	if err == nil || !strings.Contains(err.Error(), "postmaster.pid") {
		t.Fatalf("Start beside a process working in the data directory = %v, want PostgreSQL's refusal", err)
	}
	if pid, _ := postmasterPID(pgdir); pid != other {
		t.Fatalf("postmaster.pid names %d, want it kept (%d)", pid, other)
	}
	if err := syscall.Kill(backend, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for runsIn(backend, pgdir) { // until the kill has landed; the cleanup reaps it
		time.Sleep(10 * time.Millisecond)
	}

	stale(other)
	s2 := start(t, dir)
	if n := count(t, connect(t, s2.URL()), "SELECT count(*) FROM kept"); n != 1 {
		t.Fatalf("after a stale postmaster.pid: %d rows, want 1", n)
	}
	if syscall.Kill(other, 0) != nil {
		t.Fatal("the process the stale postmaster.pid named was signalled")
	}
}

// A program missing from the binaries directory is named with that directory, the
// distribution package that ships it (pg_resetwal comes with the server, pg_dump with
// the client programs) and HOP_PG_BINARIES, before anything is run.
func TestMissingToolNamesPackage(t *testing.T) {
	t.Parallel()
	real := testBinaries(t)
	for _, c := range []struct {
		missing string
		run     func(Binaries) error
		want    []string
		notWant string
	}{
		{"pg_resetwal", func(b Binaries) error {
			return SetEpoch(context.Background(), Config{Dir: testDir(t), Binaries: b}, 1)
		}, []string{"postgresql-" + strconv.Itoa(real.Version), "/usr/lib/postgresql/" + strconv.Itoa(real.Version) + "/bin", "apk add postgresql" + strconv.Itoa(real.Version)}, "client"},
		{"pg_dump", func(b Binaries) error {
			return Dump(context.Background(), b, "postgres:///nowhere", filepath.Join(t.TempDir(), "x.dump"))
		}, []string{"postgresql-client-" + strconv.Itoa(real.Version), "apk add postgresql" + strconv.Itoa(real.Version) + "-client"}, ""},
	} {
		// A binaries directory with everything but one program.
		dir := t.TempDir()
		entries, err := os.ReadDir(real.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != c.missing {
				if err := os.Symlink(filepath.Join(real.Dir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
		b, err := FindBinaries(dir)
		if err != nil {
			t.Fatal(err)
		}
		err = c.run(b)
		if err == nil {
			t.Fatalf("without %s: no error", c.missing)
		}
		for _, want := range append(c.want, c.missing+" is missing from "+b.Dir, "HOP_PG_BINARIES") {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("without %s: %q does not mention %q", c.missing, err, want)
			}
		}
		if c.notWant != "" && strings.Contains(err.Error(), c.notWant) {
			t.Errorf("without %s: %q mentions %q", c.missing, err, c.notWant)
		}
	}
}

// A shutdown signal the postmaster misses is sent again. Here the process exits only on
// its second SIGINT, as a postmaster does that had SIGINT ignored until it set its
// handler: one signal would leave hop waiting out the whole fast-shutdown timeout.
func TestShutdownSignalIsSentAgain(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("/bin/sh", "-c", `n=0; trap 'n=$((n+1)); [ $n -ge 2 ] && exit 0' INT; echo ready; while :; do sleep 0.05; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("the stand-in postmaster did not start: %q %v", line, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if !signalUntilExit(cmd, syscall.SIGINT, exited, time.Minute) {
		t.Fatal("the process never exited: SIGINT was sent once")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit status %d, want 0 (the second SIGINT's handler)", code)
	}
}
