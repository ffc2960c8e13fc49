package pgserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// An orphan is a postmaster left running on this data directory by a hop that died
// without stopping it (kill -9 before the kernel's parent-death signal, a hop that
// was not its parent, or one started by hand). hop holds the data directory lock, so
// no live hop is using it: it is stopped, with the same fast shutdown hop uses, and a
// fresh postmaster that hop supervises takes over. Adopting it instead would leave hop
// unable to wait for it or read its log.

const (
	orphanFastWait      = 60 * time.Second
	orphanImmediateWait = 15 * time.Second
)

// postmasterPID reads the pid on the first line of pgdir/postmaster.pid.
func postmasterPID(pgdir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(pgdir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	return pid, err == nil && pid > 0
}

// runsIn reports whether pid is a live (not zombie) process whose working directory
// is pgdir: a postmaster changes into its data directory, so a recycled pid that
// now belongs to another program never matches. It needs Linux's /proc; elsewhere it
// says no, and PostgreSQL's own postmaster.pid check then refuses to start, naming
// the pid to stop.
func runsIn(pid int, pgdir string) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := strings.LastIndexByte(string(stat), ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(pgdir)
	if err != nil {
		return false
	}
	return cwd == want
}

// stopOrphan stops a postmaster still running on pgdir, waiting until it has gone.
func stopOrphan(ctx context.Context, pgdir string, logger *slog.Logger) error {
	pid, ok := postmasterPID(pgdir)
	if !ok {
		return nil
	}
	if !runsIn(pid, pgdir) {
		return removeStalePID(pgdir, pid, logger)
	}
	logger.Warn("stopping an orphaned PostgreSQL left running on the data directory by an earlier hop", "pid", pid)
	steps := []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, orphanFastWait}, {syscall.SIGQUIT, orphanImmediateWait}} // fast, then immediate shutdown
	for _, step := range steps {
		if err := syscall.Kill(pid, step.sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop orphaned PostgreSQL (pid %d): %w", pid, err)
		}
		if waitGone(ctx, pid, pgdir, step.wait) {
			logger.Info("orphaned PostgreSQL stopped", "pid", pid)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("an orphaned PostgreSQL (pid %d) keeps running on %s; stop it (kill -QUIT %d) and start hop again", pid, pgdir, pid)
}

// waitGone polls until pid no longer runs in pgdir; false after d or when ctx ends.
// The orphan is not hop's child, so there is nothing to wait(2) for.
func waitGone(ctx context.Context, pid int, pgdir string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for runsIn(pid, pgdir) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// removeStalePID removes a postmaster.pid whose pid now belongs to another live
// process. Pids are reused after a reboot or a container restart, and PostgreSQL
// refuses to start while the pid in the file is alive and its own user's ("Is another
// postmaster running?"), which in a container, where everything runs as one user, is
// any process. PostgreSQL keeps the file to find backends of a dead postmaster still
// attached to its shared memory, so it is removed only when no process at all works
// in pgdir: no postmaster and no backend of any server is left. A pid that is gone,
// or anything on a system without /proc, is left to PostgreSQL's own check.
func removeStalePID(pgdir string, pid int, logger *slog.Logger) error {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return nil
	}
	if busy, err := anyIn(pgdir); err != nil || busy {
		return nil
	}
	logger.Warn("removing a stale postmaster.pid: its pid now belongs to another program, and nothing runs on the data directory", "pid", pid)
	if err := os.Remove(filepath.Join(pgdir, "postmaster.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stale postmaster.pid: %w", err)
	}
	return nil
}

// anyIn reports whether any live process works in pgdir (see runsIn).
func anyIn(pgdir string) (bool, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return false, err
	}
	found := false
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			found = true
			if runsIn(pid, pgdir) {
				return true, nil
			}
		}
	}
	if !found { // not Linux's /proc
		return false, errors.New("no process list in /proc")
	}
	return false, nil
}
