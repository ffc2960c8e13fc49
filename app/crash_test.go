package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hop-dev/hop/internal/testenv"
)

// childConfigEnv names the config file when this test binary runs as a hop process.
const childConfigEnv = "HOP_TEST_CHILD_CONFIG"

// TestMain lets the test binary stand in for the hop binary: with childConfigEnv set it
// runs `hop --config <file> serve` until SIGTERM, as main.go does, so a test can kill a
// real hop process with SIGKILL.
func TestMain(m *testing.M) {
	if path := os.Getenv(childConfigEnv); path != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := Run(ctx, []string{"--config", path, "serve"}, func(string) string { return "" }, io.Discard, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "hop:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(testenv.Main(m))
}

// startProcess runs hop with cfg as a child process and waits until it is healthy.
// Stop sends SIGTERM; kill sends SIGKILL.
func startProcess(t testing.TB, db *testenv.DB, rdb *testenv.Redis, cfg map[string]any) (h *instance, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childConfigEnv+"="+writeConfig(t, cfg))
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	h = &instance{
		Key: testAPIKey, DB: db, Redis: rdb, Config: cfg, logs: logs,
		stop: func() { _ = cmd.Process.Signal(syscall.SIGTERM) },
		done: done,
	}
	kill = func() {
		_ = cmd.Process.Kill()
		err := <-done
		done <- err
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil && !killed(err) {
			_ = cmd.Process.Kill() // never leave it running
			t.Errorf("hop process: %v\nlogs:\n%s", err, logs)
		}
	})
	awaitServing(t, h, 60*time.Second)
	return h, kill
}

// killed reports that the process ended by SIGKILL.
func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// kill -9 of a hop process in the middle of a batch: the clicks it had read but not
// acknowledged stay pending in Redis, and once hop runs again (the same consumer, or
// another one that claims the dead consumer's entries) every answered redirect is in
// the stats, none twice.
//
// Each wait is for a state, never for time: the bounds only decide when a failing
// test gives up, and a failure says what was expected and what was seen.
func TestKilledProcessLosesNoClicks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, next string }{
		{"restarted", "crash-a"},
		{"replaced by another consumer", "crash-b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, rdb := testenv.NewDB(t), testenv.NewRedis(t)
			cfg := testConfig(t, db, rdb)
			cfg["consumer_name"] = "crash-a"
			h, kill := startProcess(t, db, rdb, cfg)
			slug := h.createLink(t, map[string]any{"url": "https://example.com/kill"})["slug"].(string)

			const clients = 16
			stopLoad := h.loadRedirects(slug, clients)
			testenv.Eventually(t, time.Minute, "clicks stored before the consumer is held", func() bool {
				return count(t, db, "SELECT count(*) FROM click_logs") > 0
			})

			// Hold COPY into click_logs (it needs ROW EXCLUSIVE), so the consumer is
			// stuck mid-batch with entries read and not acknowledged when it is killed.
			// A COPY already running when LOCK is asked for finishes first, so at the
			// kill every COPY of hop's is waiting for the lock, before any row was sent.
			lock, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Rollback(ctx)
			if _, err := lock.Exec(ctx, "LOCK TABLE click_logs IN SHARE MODE"); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, time.Minute, "the consumer holding unacknowledged clicks", func() bool {
				return pending(t, rdb) > 0
			})
			// Redirects go on being answered while the consumer is stuck.
			atLock := h.scrape(t, redirected)
			testenv.Eventually(t, time.Minute, "redirects answered while the consumer is stuck", func() bool {
				return h.scrape(t, redirected) > atLock
			})
			// hop's backends, to see them end after the kill.
			var lockPID int32
			if err := lock.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&lockPID); err != nil {
				t.Fatal(err)
			}
			hopPIDs := backends(t, db, lockPID)
			// Clicks that took the publisher's fallback path (Redis slower than its
			// timeout, or its breaker open) are not in the stream: shown on failure.
			fallback := h.scrape(t, "hop_ingest_fallback_total")

			kill()
			killedAt := time.Now()
			n := stopLoad()
			if err := lock.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			held := pending(t, rdb)
			if n == 0 || held == 0 {
				t.Fatalf("answered %d, pending at the kill %d: nothing to prove", n, held)
			}
			// The killed process's backends end once they see its connections closed;
			// none may linger holding a lock or a transaction.
			var lingering []int32
			testenv.Eventually(t, time.Minute, "the killed process's PostgreSQL backends to end", func() bool {
				lingering = slices.DeleteFunc(backends(t, db, lockPID), func(pid int32) bool { return !slices.Contains(hopPIDs, pid) })
				return len(lingering) == 0
			})
			backendsGone := time.Since(killedAt)
			before := count(t, db, "SELECT count(*) FROM click_logs")

			cfg["consumer_name"] = tc.next
			h2, _ := startProcess(t, db, rdb, cfg)
			restarted := time.Since(killedAt)

			// Done: nothing pending or undelivered in the stream, every stored click
			// aggregated, and at least every answered click counted. Nothing is left
			// then that could add a click, or count one twice.
			var st crashState
			deadline := time.Now().Add(2 * time.Minute)
			for {
				st = readCrashState(t, h2, slug, rdb)
				if st.pending == 0 && st.undelivered == 0 && st.unaggregated == 0 && st.counted >= n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the kill and restart, not every answered click was counted within 2m: "+
						"want counted >= answered %d with nothing pending, undelivered or unaggregated; got %s; "+
						"hop_ingest_fallback_total of the killed process shortly before the kill: %v\n"+
						"killed process's logs:\n%s\nrestarted process's logs:\n%s",
						n, st, fallback, h.logs, h2.logs)
				}
				time.Sleep(50 * time.Millisecond)
			}
			took := time.Since(killedAt)
			// A request in flight at the kill may have reached the stream without its
			// answer reaching the client: at most one per client.
			if st.counted != st.stored || st.stored < n || st.stored > n+clients {
				t.Fatalf("answered %d (up to %d more in flight at the kill); want stored in [%d, %d] and counted = stored; got %s",
					n, clients, n, n+clients, st)
			}
			t.Logf("answered %d (%v through the fallback path), %d stream entries pending at the kill, %d rows stored before the restart; "+
				"killed process's backends gone %s after the kill, hop up again %s after it, all %d stored and counted %s after it",
				n, fallback, held, before, backendsGone.Round(time.Millisecond), restarted.Round(time.Millisecond), st.stored, took.Round(time.Millisecond))
		})
	}
}

// crashState is what the kill test waits for, and prints when it gives up.
type crashState struct {
	counted      int64 // total_clicks in the link's stats
	stored       int64 // rows in click_logs
	unaggregated int64 // stored rows the aggregator has not taken yet
	pending      int64 // stream entries read and not acknowledged
	undelivered  int64 // stream entries not yet read by the group
}

func (s crashState) String() string {
	return fmt.Sprintf("counted %d, stored %d (%d not aggregated yet), stream: %d pending, %d undelivered",
		s.counted, s.stored, s.unaggregated, s.pending, s.undelivered)
}

func readCrashState(t testing.TB, h *instance, slug string, rdb *testenv.Redis) crashState {
	t.Helper()
	r := h.api(t, http.MethodGet, "/links/"+slug+"/stats", nil)
	mustStatus(t, r, http.StatusOK)
	st := crashState{
		counted:      int64(r.JSON(t)["total_clicks"].(float64)),
		stored:       count(t, h.DB, "SELECT count(*) FROM click_logs"),
		unaggregated: count(t, h.DB, "SELECT count(*) FROM click_logs WHERE xid >= (SELECT watermark FROM aggregator_state)"),
		pending:      pending(t, rdb),
	}
	groups, err := rdb.Client.Do(context.Background(), rdb.Client.B().XinfoGroups().Key(rdb.Prefix+"clicks").Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		m, err := g.AsMap()
		if err != nil {
			t.Fatal(err)
		}
		name, lag := m["name"], m["lag"]
		if s, _ := name.ToString(); s == "hop-ingest" {
			if st.undelivered, err = lag.AsInt64(); err != nil {
				t.Fatalf("XINFO GROUPS lag: %v", err) // nil only when Redis cannot tell
			}
		}
	}
	return st
}

func count(t testing.TB, db *testenv.DB, query string) int64 {
	t.Helper()
	var n int64
	if err := db.Pool.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// backends lists the PostgreSQL backends connected to db, other than the test's own
// (the one querying and except).
func backends(t testing.TB, db *testenv.DB, except int32) []int32 {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(),
		"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1", except)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// redirected is the series of answered redirects in /metrics.
const redirected = `hop_http_requests_total{method="GET",route="/:slug",status="302"}`

// scrape reads one series from h's /metrics; 0 when it is absent.
func (h *instance) scrape(t testing.TB, series string) float64 {
	t.Helper()
	r := h.do(t, http.MethodGet, "/metrics", nil)
	mustStatus(t, r, http.StatusOK)
	v, err := strconv.ParseFloat(cmp.Or(metricValue(string(r.Body), series), "0"), 64)
	if err != nil {
		t.Fatalf("%s in /metrics: %v", series, err)
	}
	return v
}

// pending is how many stream entries hop's consumer group has read and not acknowledged.
func pending(t testing.TB, rdb *testenv.Redis) int64 {
	t.Helper()
	v, err := rdb.Client.Do(context.Background(), rdb.Client.B().Xpending().Key(rdb.Prefix+"clicks").Group("hop-ingest").Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	n, err := v[0].AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
