package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

// hop backup and hop restore take no flags: a FILE that starts with "-" (hop backup
// -x, a mistyped --output=x or --ouput x) is a usage error (exit status 2) telling how
// to name such a file, found before anything is opened, created or written: no file in
// the working directory, no data directory, no database. ./-x is taken as the file it
// names. Not parallel: it changes the working directory.
func TestBackupRestoreRefuseFlagLikeFile(t *testing.T) {
	work := t.TempDir()
	t.Chdir(work) // a file named like the flag would land here
	dataDir := filepath.Join(t.TempDir(), "data")
	name := "hop_flag_file_never_created_" + randomName(t)
	t.Cleanup(func() { databaseExists(t, name) })
	db := testenv.NewDB(t)
	modes := map[string]map[string]any{
		"embedded":                   embeddedConfig(t, dataDir, nil),
		"DATABASE_URL (missing)":     testConfig(t, &testenv.DB{URL: testenv.WithDatabase(testenv.AdminURL(), name)}, nil),
		"DATABASE_URL (with tables)": testConfig(t, db, nil), // where pg_dump would write the file
	}
	for mode, cfg := range modes {
		for _, args := range [][]string{
			{"backup", "-x"}, {"backup", "--output=hop.dump"}, {"backup", "-"}, {"backup", "--ouput", "hop.dump"},
			{"restore", "-x"}, {"restore", "--from=hop.dump"}, {"restore", "-"},
		} {
			_, err := runCLI(t, cfg, args...)
			if ExitCode(err) != 2 {
				t.Errorf("%s: hop %s = %v (exit %d), want a usage error (exit 2)", mode, strings.Join(args, " "), err, ExitCode(err))
				continue
			}
			for _, want := range []string{"usage: hop " + args[0] + " FILE", "./" + args[1]} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: hop %s = %q, want it to mention %q", mode, strings.Join(args, " "), err, want)
				}
			}
		}
	}
	if entries, _ := os.ReadDir(work); len(entries) != 0 {
		t.Errorf("a FILE like a flag created %v in the working directory", entries)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a FILE like a flag made the data directory: %v", err)
	}
	if databaseExists(t, name) {
		t.Error("a FILE like a flag created the database")
	}

	// The way out the message gives works: ./-x is a file of that name.
	if out, err := runCLI(t, testConfig(t, db, nil), "backup", "./-x"); err != nil || !strings.Contains(out, "backed up") {
		t.Fatalf("hop backup ./-x = %q, %v", out, err)
	}
	if fi, err := os.Stat(filepath.Join(work, "-x")); err != nil || fi.Size() == 0 {
		t.Fatalf("hop backup ./-x wrote no file -x: %v", err)
	}
}

// A hop run as root leaves hop.lock owned by root (it gives PostgreSQL's user the data
// directory, not what hop keeps in it). hop run next as that user is refused with the
// lock file, its owner, the user hop runs as and what to do, not a bare "permission
// denied"; and what the message says to do (chown -R) is enough for it to start.
func TestLockLeftByRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a hop run as root must leave the lock file, and another user's hop find it")
	}
	t.Parallel()
	dir := embeddedDir(t) // also makes the test's temporary root enterable by others
	cfg := embeddedConfig(t, dir, nil)
	if _, err := runCLI(t, cfg, "migrate", "up"); err != nil { // as root: initdb, PostgreSQL as another user
		t.Fatal(err)
	}
	lock := filepath.Join(dir, "hop.lock")
	fi, err := os.Stat(lock)
	if err != nil || ownerOf(fi) != 0 {
		t.Fatalf("hop run as root left %s: %v", lock, err)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := ownerOf(di), int(di.Sys().(*syscall.Stat_t).Gid)
	if uid == 0 {
		t.Fatalf("hop run as root kept %s for root; want it given to PostgreSQL's user", dir)
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		t.Fatal(err)
	}

	// That user runs a copy of this test binary as hop (TestMain, childConfigEnv): Go
	// keeps the binary and the config files where only root may read them.
	share := t.TempDir()
	bin := filepath.Join(share, "hop")
	copyFile(t, os.Args[0], bin, 0o755)
	cfgPath := filepath.Join(share, "config.yaml")
	copyFile(t, writeConfig(t, cfg), cfgPath, 0o644)
	runAs := func(ctx context.Context, logs io.Writer) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin)
		cmd.Dir = share
		cmd.Env = append(os.Environ(), childConfigEnv+"="+cfgPath)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
		cmd.Stdout, cmd.Stderr = logs, logs
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		return cmd
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runAs(ctx, &out).Run(); ExitCode(err) != 1 {
		t.Fatalf("hop as %s on a lock file of root = %v, want it refused\n%s", u.Username, err, &out)
	}
	for _, want := range []string{
		"data directory lock " + lock + ": permission denied",
		"belongs to user root (uid 0), and hop runs as user " + u.Username + " (uid " + u.Uid + ")",
		"run hop as root", "chown -R " + u.Username + " " + dir,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("hop as %s says:\n%s\nwant it to mention %q", u.Username, &out, want)
		}
	}
	if fi, err := os.Stat(lock); err != nil || ownerOf(fi) != 0 {
		t.Errorf("the refused hop changed %s: %v", lock, err)
	}

	// As the message says: give the data directory to the user, and hop starts.
	if err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		t.Fatal(err)
	}
	h := &instance{Key: testAPIKey, Config: cfg, logs: &syncBuffer{}, done: make(chan error, 1)}
	cmd := runAs(context.WithoutCancel(ctx), h.logs) // stopped by h.Stop, after this returns
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- cmd.Wait() }()
	h.stop = func() { _ = cmd.Process.Signal(syscall.SIGTERM) }
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			_ = cmd.Process.Kill()
			t.Errorf("hop as %s: %v\nlogs:\n%s", u.Username, err, h.logs)
		}
	})
	awaitServing(t, h, 2*time.Minute)
}

// copyFile copies src to a new file dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
