// Package pgserver runs hop's embedded PostgreSQL: with no DATABASE_URL, hop keeps its
// data in HOP_DATA_DIR/pg and runs a postmaster of its own as a child process, reachable
// only through a Unix socket in HOP_DATA_DIR. Start creates the cluster on first use,
// stops an orphan left by a killed hop, starts and supervises the server; Stop ends it
// with a fast shutdown once hop has drained. Callers hold the data directory lock
// (internal/datadir) while a server runs.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// User and Database are the role and database hop uses in its embedded cluster.
	User     = "hop"
	Database = "hop"

	port      = 5432 // names the socket file; there is no TCP listener
	maxSocket = 107  // sun_path bytes PostgreSQL accepts, without the NUL

	readyTimeout    = 5 * time.Minute // crash recovery after a kill can replay a lot of WAL
	fastStopTimeout = 60 * time.Second
	quitStopTimeout = 15 * time.Second
	maxBackoff      = 30 * time.Second
)

// ErrDataVersion means the data directory was made by another PostgreSQL major version.
var ErrDataVersion = errors.New("data directory belongs to another PostgreSQL major version")

// Config says where the embedded server keeps its data and finds its programs.
type Config struct {
	Dir      string       // HOP_DATA_DIR: the data goes to Dir/pg, the socket into Dir
	Binaries Binaries     // from FindBinaries
	Logger   *slog.Logger // PostgreSQL's own log lines arrive here too

	noSync bool // tests: initdb without fsync
}

// Server is a running embedded PostgreSQL.
type Server struct {
	dir, pgdir string
	bin        Binaries
	acct       *account
	logger     *slog.Logger
	log        *logWriter

	stop     chan struct{} // closed by Stop
	done     chan struct{} // closed when the supervisor has ended
	ready    chan struct{} // closed once Start has seen the server answer
	stopOnce sync.Once
	stopErr  error
	pid      atomic.Int64 // of the current postmaster
}

// Start brings the embedded server up and returns once the hop database accepts
// connections. ctx bounds only the start; the server runs until Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if n := len(socketPath(dir)); n > maxSocket {
		return nil, fmt.Errorf("HOP_DATA_DIR %s is too long for PostgreSQL's Unix socket (%d bytes, at most %d with %q): choose a shorter path",
			dir, n, maxSocket, filepath.Base(socketPath(dir)))
	}
	if strings.ContainsAny(dir, "\"\n") {
		return nil, fmt.Errorf("HOP_DATA_DIR %q: PostgreSQL cannot use a path with a double quote or newline", dir)
	}
	logger := cfg.Logger.With("module", "postgres")
	s := &Server{
		dir: dir, pgdir: filepath.Join(dir, "pg"), bin: cfg.Binaries, logger: logger,
		log:  newLogWriter(logger),
		stop: make(chan struct{}), done: make(chan struct{}), ready: make(chan struct{}),
	}
	if s.acct, err = serverAccount(s.pgdir); err != nil {
		return nil, err
	}
	if err := s.acct.grant(dir, s.pgdir); err != nil {
		return nil, err
	}
	if s.acct != nil {
		logger.Info("hop runs as root, which PostgreSQL refuses: running PostgreSQL as another user", "user", s.acct.name)
	}
	if err := stopOrphan(ctx, s.pgdir, logger); err != nil {
		return nil, err
	}
	if err := s.initdb(ctx, cfg.noSync); err != nil {
		return nil, err
	}

	started := make(chan error, 1)
	go s.supervise(started)
	if err := <-started; err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	close(s.ready)
	if err := s.ensureDatabase(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	logger.Info("embedded PostgreSQL ready", "data", s.pgdir, "version", s.bin.Version)
	return s, nil
}

// URL is the connection URL of the hop database.
func (s *Server) URL() string { return URL(s.dir) }

// URL is the connection URL of the embedded hop database whose data directory is dir,
// whichever process runs it (for commands that reach a running hop's server).
func URL(dir string) string { return dbURL(dir, Database) }

func dbURL(dir, db string) string {
	abs, _ := filepath.Abs(dir)
	q := url.Values{"host": {abs}, "port": {strconv.Itoa(port)}, "sslmode": {"disable"}}
	return (&url.URL{Scheme: "postgres", User: url.User(User), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// Running reports whether an embedded server has its socket in dir.
func Running(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	fi, err := os.Stat(socketPath(abs))
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

func socketPath(dir string) string { return filepath.Join(dir, ".s.PGSQL."+strconv.Itoa(port)) }

// Stop shuts the server down: a fast shutdown (sessions end, a checkpoint is written),
// then an immediate one if that hangs. Close hop's connections first. Safe to call twice.
func (s *Server) Stop() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	return s.stopErr
}

// initialised reports whether pgdir holds a cluster, checking it matches the binaries.
func (s *Server) initialised() (bool, error) {
	b, err := os.ReadFile(filepath.Join(s.pgdir, "PG_VERSION"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("postgres data: %w", err)
	}
	if v := strings.TrimSpace(string(b)); v != strconv.Itoa(s.bin.Version) {
		return false, fmt.Errorf("%s was made by PostgreSQL %s but the binaries in %s are PostgreSQL %d: %w; "+
			"point HOP_PG_BINARIES at PostgreSQL %s, or back up with those binaries (hop backup) and restore into an empty HOP_DATA_DIR",
			s.pgdir, v, s.bin.Dir, s.bin.Version, ErrDataVersion, v)
	}
	return true, nil
}

// initdb creates the cluster on first start. It is built aside and renamed into place,
// so a hop killed during initdb leaves nothing that looks like a cluster.
func (s *Server) initdb(ctx context.Context, noSync bool) error {
	ok, err := s.initialised()
	if ok || err != nil {
		return err
	}
	if entries, err := os.ReadDir(s.pgdir); err == nil {
		if len(entries) > 0 {
			return fmt.Errorf("%s exists but holds no PostgreSQL cluster (no PG_VERSION): move it away and start again", s.pgdir)
		}
		if err := os.Remove(s.pgdir); err != nil {
			return fmt.Errorf("postgres data: %w", err)
		}
	}
	tmp := s.pgdir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil { // left by an interrupted first start
		return fmt.Errorf("postgres data: %w", err)
	}
	defer os.RemoveAll(tmp)
	s.logger.Info("creating the embedded PostgreSQL cluster (first start)", "data", s.pgdir)
	initdb, err := s.bin.tool("initdb")
	if err != nil {
		return err
	}
	args := []string{"-D", tmp, "-U", User, "-E", "UTF8", "--no-locale", "--data-checksums",
		"--auth-local=trust", "--auth-host=reject"}
	if noSync || syncfs {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, initdb, args...)
	cmd.Dir = s.dir // the child's user may not be able to enter hop's working directory
	cmd.Env = serverEnv()
	cmd.SysProcAttr = toolProcAttr(s.acct.credential())
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.TrimSpace(out.String()))
	}
	f, err := os.OpenFile(filepath.Join(tmp, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	_, err = f.WriteString(tuning)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if syncfs && !noSync {
		if err := syncFS(tmp); err != nil {
			return fmt.Errorf("initdb: %w", err)
		}
	}
	if err := os.Rename(tmp, s.pgdir); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if syncfs && !noSync {
		return syncFS(s.dir) // the rename
	}
	return nil
}

// tuning is appended to postgresql.conf once, at initdb: modest sizes for a small
// node that also runs hop. Operators may edit it there; hop never rewrites it.
const tuning = `
# --- hop: settings for a small single node (written once by hop at initdb; edit freely) ---
max_connections = 50
shared_buffers = 64MB
effective_cache_size = 256MB
work_mem = 4MB
maintenance_work_mem = 32MB
max_wal_size = 256MB
min_wal_size = 64MB
random_page_cost = 1.1
max_worker_processes = 4
max_parallel_workers = 2
max_parallel_workers_per_gather = 1
jit = off
log_checkpoints = off
`

// serverArgs are forced on the command line, above postgresql.conf: no TCP listener,
// the socket in the data directory readable by its owner only, and a log hop parses.
func (s *Server) serverArgs() []string {
	return []string{
		"-D", s.pgdir,
		"-c", "listen_addresses=",
		"-c", "port=" + strconv.Itoa(port),
		"-c", `unix_socket_directories="` + s.dir + `"`,
		"-c", "unix_socket_permissions=0700",
		"-c", "cluster_name=hop",
		"-c", "logging_collector=off",
		"-c", "log_destination=stderr",
		"-c", "log_line_prefix=",
	}
}

// serverEnv is hop's environment without libpq/server variables (PGDATA, PGPORT,
// PGOPTIONS...) that would change what the server or the tools do.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

// spawn starts one postmaster. It runs on the supervisor's locked OS thread: the
// kernel sends the parent-death signal when the thread that forked the child ends,
// so the thread must live as long as the child does.
func (s *Server) spawn() (*exec.Cmd, <-chan error, error) {
	postgres, err := s.bin.tool("postgres")
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(postgres, s.serverArgs()...)
	cmd.Dir = s.pgdir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = serverProcAttr(s.acct.credential())
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start postgres: %w", err)
	}
	s.pid.Store(int64(cmd.Process.Pid))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, exited, nil
}

// supervise owns the postmaster: it starts it, restarts it with backoff if it dies
// after a successful start, and shuts it down on Stop.
func (s *Server) supervise(started chan<- error) {
	runtime.LockOSThread() // see spawn; never unlocked, so the thread ends with this goroutine
	defer close(s.done)
	cmd, exited, err := s.spawn()
	started <- err
	if err != nil {
		return
	}
	backoff := time.Second
	since := time.Now()
	for {
		select {
		case <-s.stop:
			s.log.stopping.Store(true)
			s.stopErr = s.shutdown(cmd, exited)
			return
		case err := <-exited:
			select {
			case <-s.ready:
			default:
				s.stopErr = fmt.Errorf("postgres exited during start-up (%v): %s", err, s.log.Tail())
				return
			}
			if time.Since(since) > time.Minute {
				backoff = time.Second
			}
			s.logger.Error("embedded PostgreSQL exited unexpectedly; restarting it", "err", err, "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
			since = time.Now()
			next, nextExited, err := s.spawn()
			if err != nil {
				s.logger.Error("restart embedded PostgreSQL", "err", err)
				failed := make(chan error, 1)
				failed <- err
				nextExited = failed
			}
			cmd, exited = next, nextExited
		}
	}
}

// shutdown asks for a fast shutdown, then an immediate one, then kills.
func (s *Server) shutdown(cmd *exec.Cmd, exited <-chan error) error {
	if cmd == nil {
		return nil
	}
	if signalUntilExit(cmd, syscall.SIGINT, exited, fastStopTimeout) {
		s.logger.Info("embedded PostgreSQL stopped")
		return nil
	}
	s.logger.Warn("embedded PostgreSQL did not finish a fast shutdown; shutting down immediately (it recovers at next start)")
	if signalUntilExit(cmd, syscall.SIGQUIT, exited, quitStopTimeout) {
		return nil
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("embedded PostgreSQL ignored fast and immediate shutdown and was killed")
}

// resignalEvery is how often a shutdown signal is sent again while the postmaster runs.
const resignalEvery = time.Second

// signalUntilExit sends sig, again every resignalEvery, until the process exits (true)
// or d has passed (false). One signal is not enough when hop is stopped just as the
// postmaster starts: before PostgreSQL sets its handlers, a signal that hop's own
// parent ignored (SIGINT, for a job a script started with &) is still ignored, as the
// postmaster inherited that, and is lost; PostgreSQL takes a repeated one as one.
func signalUntilExit(cmd *exec.Cmd, sig syscall.Signal, exited <-chan error, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	again := time.NewTicker(resignalEvery)
	defer again.Stop()
	for {
		_ = cmd.Process.Signal(sig)
		select {
		case <-exited:
			return true
		case <-deadline.C:
			return false
		case <-again.C:
		}
	}
}

// waitReady waits, as pg_ctl does, until postmaster.pid names this postmaster as
// ready, then checks that it takes a connection. It fails as soon as the postmaster
// exits, with the end of its log.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var err error
	for {
		if s.pmReady() {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			var conn *pgconn.PgConn
			conn, err = pgconn.Connect(cctx, dbURL(s.dir, "postgres"))
			ccancel()
			if err == nil {
				return conn.Close(ctx)
			}
		}
		select {
		case <-s.done:
			return s.stopErr
		case <-ctx.Done():
			return fmt.Errorf("embedded PostgreSQL did not accept connections: %w (last error: %v): %s", ctx.Err(), err, s.log.Tail())
		case <-t.C:
		}
	}
}

// pmReady reads the postmaster's status line (the 8th) in postmaster.pid.
func (s *Server) pmReady() bool {
	b, err := os.ReadFile(filepath.Join(s.pgdir, "postmaster.pid"))
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	return len(lines) >= 8 && strings.TrimSpace(lines[0]) == strconv.FormatInt(s.pid.Load(), 10) &&
		strings.TrimSpace(lines[7]) == "ready"
}

// ensureDatabase creates the hop database on first start.
func (s *Server) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, dbURL(s.dir, "postgres"))
	if err != nil {
		return fmt.Errorf("embedded PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	const q = `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`
	var exists bool
	if err := conn.QueryRow(ctx, q, Database).Scan(&exists); err != nil {
		return fmt.Errorf("embedded PostgreSQL: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{Database}.Sanitize()); err != nil {
		return fmt.Errorf("embedded PostgreSQL: create database: %w", err)
	}
	return nil
}
