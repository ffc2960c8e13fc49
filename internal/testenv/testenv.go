// Package testenv gives tests real PostgreSQL and Redis, isolated per test: a fresh
// database cloned from a migrated template, and a private Redis key prefix. Both are
// removed when the test ends. When a service is unreachable the test fails with a
// message saying how to start it; it never skips.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/migrations"
)

const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"

	startPostgres = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start (or set TEST_DATABASE_URL)"
	startRedis    = `start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no (or set TEST_REDIS_URL)`
)

// AdminURL is the maintenance database URL tests connect to for creating databases.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultDatabaseURL
}

// RedisURL is the Redis server tests use.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return defaultRedisURL
}

// DB is an isolated, migrated database for one test.
type DB struct {
	Pool *pgxpool.Pool
	URL  string // connection URL of this database
	Name string
}

// NewDB creates a database cloned from the migrated template and drops it when t ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		t.Fatalf("PostgreSQL is unreachable at %s: %v; %s", redact(AdminURL()), err, startPostgres)
	}
	defer admin.Close(ctx)

	tpl, err := ensureTemplate(ctx, admin)
	if err != nil {
		t.Fatalf("template database: %v", err)
	}
	name := "hop_test_" + randomHex(6)
	// CREATE DATABASE fails while another session is connected to the template
	// (a parallel test binary may be creating it); retry briefly.
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{tpl}.Sanitize())
		if err == nil || attempt == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create test database: %v", err)
	}
	dbURL := WithDatabase(AdminURL(), name)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect test database: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			t.Errorf("drop test database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return &DB{Pool: pool, URL: dbURL, Name: name}
}

// template is this test binary's migrated template database. Each binary makes its
// own, under a unique name, and Main drops it when the binary's tests are done, so
// test runs never touch databases they did not create (a parallel run's included).
type template struct {
	mu   sync.Mutex
	name string
	used bool // Main was called; NewDB refuses to run without it
}

var tpl template // test-only process state: one template per test binary

// Main runs the package's tests and then drops the template they cloned. Every
// package that uses NewDB calls it from TestMain: os.Exit(testenv.Main(m)).
func Main(m *testing.M) int {
	tpl.mu.Lock()
	tpl.used = true
	tpl.mu.Unlock()
	code := m.Run()
	tpl.mu.Lock()
	defer tpl.mu.Unlock()
	if tpl.name != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, AdminURL()); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{tpl.name}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
	}
	return code
}

// ensureTemplate creates and migrates this binary's template once.
func ensureTemplate(ctx context.Context, admin *pgx.Conn) (string, error) {
	tpl.mu.Lock()
	defer tpl.mu.Unlock()
	if !tpl.used {
		return "", errors.New("testenv.NewDB needs TestMain to call testenv.Main(m), which removes the template afterwards")
	}
	if tpl.name != "" {
		return tpl.name, nil
	}
	name := "hop_tpl_" + migrations.Digest()[:12] + "_" + randomHex(4)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, WithDatabase(AdminURL(), name))
	if err != nil {
		return "", err
	}
	err = migrations.Up(ctx, pool, nil)
	pool.Close()
	if err != nil {
		_, _ = admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return "", err
	}
	tpl.name = name
	return name, nil
}

// WithDatabase returns rawURL with its database name replaced.
func WithDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.Path = "/" + name
	return u.String()
}

// Redis is a private key space on the shared Redis server for one test.
type Redis struct {
	Client rueidis.Client
	URL    string
	Prefix string // every key the test's code writes must start with it
}

// NewRedis connects to the test Redis and deletes every key under a fresh prefix when
// t ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	opt, err := rueidis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("TEST_REDIS_URL: %v", err)
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("Redis is unreachable at %s: %v; %s", redact(RedisURL()), err, startRedis)
	}
	prefix := "hoptest:" + randomHex(6) + ":"
	t.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, client, prefix); err != nil {
			t.Errorf("clean Redis prefix %s: %v", prefix, err)
		}
	})
	return &Redis{Client: client, URL: RedisURL(), Prefix: prefix}
}

// DeletePrefix removes every key starting with prefix.
func DeletePrefix(ctx context.Context, client rueidis.Client, prefix string) error {
	var cursor uint64
	for {
		e, err := client.Do(ctx, client.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		if len(e.Elements) > 0 {
			if err := client.Do(ctx, client.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				return err
			}
		}
		if e.Cursor == 0 {
			return nil
		}
		cursor = e.Cursor
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// Eventually polls cond until it holds and fails t if it does not within the given
// time, naming what was awaited. For effects that travel asynchronously (invalidations,
// notices, ingest): the bound only decides when a failing test gives up.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Conn holds one of pool's connections until the test ends, after running setup on it
// (if not empty): session state, such as a prepared statement or plan_cache_mode,
// lives on one connection.
func Conn(t testing.TB, pool *pgxpool.Pool, setup string) *pgxpool.Conn {
	t.Helper()
	conn, err := pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Release)
	if setup != "" {
		if _, err := conn.Exec(t.Context(), setup); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

// Plan is PostgreSQL's EXPLAIN of query (or of a prepared statement's EXECUTE when
// query is "EXECUTE …") as one text, for tests that check an access path.
func Plan(t testing.TB, q Querier, query string, args ...any) string {
	t.Helper()
	rows, err := q.Query(t.Context(), "EXPLAIN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
