package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/hopproc"
)

// pgBinDir is where Debian installs PostgreSQL 15's programs.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// pgCluster is a private PostgreSQL cluster (initdb'd by chaos, on a port of its own),
// which scenarios stop and start; the shared server on 5432 is never touched.
type pgCluster struct {
	ps      *procs
	bin     string
	dir     string // data directory
	port    int
	cred    *syscall.Credential // PostgreSQL refuses to run as root
	logPath string
	p       *hopproc.Proc
}

// newPGCluster runs initdb in root/pg and starts the server.
func newPGCluster(ctx context.Context, ps *procs, root string) (*pgCluster, error) {
	bin := pgBinDir
	if v := os.Getenv("CHAOS_PG_BIN"); v != "" {
		bin = v
	}
	c := &pgCluster{ps: ps, bin: bin, dir: filepath.Join(root, "pg"), logPath: filepath.Join(root, "postgres.log")}
	cred, uid, gid, err := pgAccount()
	if err != nil {
		return nil, err
	}
	c.cred = cred
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		// root's temporary directory must be traversable for the postgres user.
		if err := os.Chmod(root, 0o711); err != nil {
			return nil, err
		}
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return nil, err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", c.dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if c.port, err = hopproc.FreePort(); err != nil {
		return nil, err
	}
	return c, c.start()
}

// pgAccount is the user PostgreSQL runs as when chaos runs as root.
func pgAccount() (cred *syscall.Credential, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return nil, 0, 0, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, uid, gid, nil
	}
	return nil, 0, 0, fmt.Errorf("chaos runs as root and there is no postgres or nobody user to run PostgreSQL as")
}

// start runs the postmaster and waits until it accepts connections. fsync is off
// (the machine does not crash in these scenarios, the processes do), but commits are
// synchronous: a stop loses no committed transaction.
func (c *pgCluster) start() error {
	p, err := c.ps.start("postgres", filepath.Join(c.bin, "postgres"), []string{
		"-D", c.dir, "-p", strconv.Itoa(c.port), "-k", c.dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300",
		"-c", "shared_buffers=64MB", "-c", "log_min_messages=warning",
	}, os.Environ(), c.dir, c.logPath, c.cred)
	if err != nil {
		return err
	}
	c.p = p
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("private PostgreSQL on port %d did not start: %w\n%s", c.port, err, p.Tail(15))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopImmediate stops the server the way a crash would (SIGQUIT: no checkpoint,
// sessions cut); the next start runs crash recovery.
func (c *pgCluster) stopImmediate() {
	c.p.Stop(syscall.SIGQUIT, 30*time.Second)
}

func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// exec runs one statement in the maintenance database.
func (c *pgCluster) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// redisServer is a private redis-server without persistence: killing it loses
// everything it held, as a Redis restarted without AOF or RDB does.
type redisServer struct {
	ps      *procs
	dir     string
	port    int
	logPath string
	p       *hopproc.Proc
}

func newRedisServer(ps *procs, dir, name string) (*redisServer, error) {
	port, err := hopproc.FreePort()
	if err != nil {
		return nil, err
	}
	r := &redisServer{ps: ps, dir: dir, port: port, logPath: filepath.Join(dir, name+".log")}
	return r, r.start()
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }
func (r *redisServer) url() string  { return "redis://" + r.addr() + "/0" }

// start runs redis-server on r.port (again, after a kill: empty). It fails with
// hopproc.ErrPortTaken if another process's server took the port meanwhile.
func (r *redisServer) start() error {
	p, err := r.ps.start("redis-server", "redis-server", hopproc.RedisArgs(r.port, r.dir), os.Environ(), r.dir, r.logPath, nil)
	if err != nil {
		return fmt.Errorf("%w (is redis-server installed?)", err)
	}
	r.p = p
	return hopproc.WaitRedis(p, r.addr(), 30*time.Second)
}

// kill ends redis-server with SIGKILL: the stream and the consumer group are gone.
func (r *redisServer) kill() { r.p.Kill() }
