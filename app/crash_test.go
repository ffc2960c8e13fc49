package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

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
		URL: "http://" + cfg["addr"].(string), Key: testAPIKey, DB: db, Redis: rdb, Config: cfg, logs: logs,
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
	testenv.Eventually(t, 60*time.Second, "hop process healthy", func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("hop process exited during start-up: %v\nlogs:\n%s", err, logs)
		default:
		}
		resp, err := http.Get(h.URL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
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
// the stats within 30 s, none twice.
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
			time.Sleep(500 * time.Millisecond)

			// Hold COPY into click_logs (it needs ROW EXCLUSIVE), so the consumer is
			// stuck mid-batch with entries read and not acknowledged when it is killed.
			lock, err := db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Rollback(ctx)
			if _, err := lock.Exec(ctx, "LOCK TABLE click_logs IN SHARE MODE"); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, "the consumer holding unacknowledged clicks", func() bool {
				return pending(t, rdb) > 0
			})
			time.Sleep(300 * time.Millisecond) // redirects go on answering meanwhile
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

			// The killed process's COPY may still commit once the lock is gone (its
			// data was on the wire): then the next consumer replays committed clicks.
			var before int64
			if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM click_logs").Scan(&before); err != nil {
				t.Fatal(err)
			}

			cfg["consumer_name"] = tc.next
			cfg["addr"] = freeAddr(t)
			h2, _ := startProcess(t, db, rdb, cfg)
			restarted := time.Since(killedAt)
			h2.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"].(float64) >= float64(n) })
			took := time.Since(killedAt)
			if took > 30*time.Second {
				t.Fatalf("answered clicks took %s after the kill to reach the stats", took)
			}
			testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { return pending(t, rdb) == 0 })
			acked := time.Since(killedAt)
			time.Sleep(600 * time.Millisecond) // give a double count the chance to show
			var raw int64
			if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM click_logs").Scan(&raw); err != nil {
				t.Fatal(err)
			}
			s := h2.waitStats(t, slug, func(map[string]any) bool { return true })
			// A request in flight at the kill may have reached the stream without its
			// answer reaching the client: at most one per client.
			if s["total_clicks"] != float64(raw) || raw < n || raw > n+clients {
				t.Fatalf("answered %d, stored %d, counted %v", n, raw, s["total_clicks"])
			}
			t.Logf("answered %d, %d stream entries pending at the kill, %d rows stored before the restart; "+
				"hop up again %s after the kill, all %d stored and counted %s after it, nothing pending %s after it",
				n, held, before, restarted.Round(time.Millisecond), raw, took.Round(time.Millisecond), acked.Round(time.Millisecond))
		})
	}
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
