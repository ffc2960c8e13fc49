package datadir

import (
	"bufio"
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
)

// holdEnv makes this test binary a process that holds a lock until it is killed.
const holdEnv = "DATADIR_TEST_HOLD"

// acquireEnv makes this test binary a process that tries to lock a directory once and
// prints the outcome: the other user of TestLockOwnedByAnotherUser.
const acquireEnv = "DATADIR_TEST_ACQUIRE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(acquireEnv); dir != "" {
		l, err := Acquire(dir)
		if err != nil {
			os.Stdout.WriteString(err.Error())
			os.Exit(1)
		}
		l.Close()
		os.Stdout.WriteString("locked")
		os.Exit(0)
	}
	if dir := os.Getenv(holdEnv); dir != "" {
		if _, err := Acquire(dir); err != nil {
			os.Stdout.WriteString("error: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("locked\n")
		select {} // until killed
	}
	os.Exit(m.Run())
}

func TestSecondAcquireRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "(pid "+strconv.Itoa(os.Getpid())+")") {
		t.Fatalf("second Acquire = %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Close: %v", err)
	}
	l2.Close()
}

// A process killed with SIGKILL leaves no lock behind.
func TestKilledHolderReleases(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("holder: %q %v", line, err)
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "(pid "+strconv.Itoa(cmd.Process.Pid)+")") {
		t.Fatalf("Acquire while another process holds it = %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	l.Close()
}

// A lock file hop may not open (left by a run as root, or with a mode that keeps even
// its owner out), or a data directory hop may not create it in, is refused with the
// path, whose it is and what to do: not a bare "permission denied". As root (as CI
// runs), the attempt is made by a copy of this test binary running as nobody; as
// another user, only the cases that need no second user run.
func TestLockOwnedByAnotherUser(t *testing.T) {
	t.Parallel()
	root := os.Geteuid() == 0
	var other *user.User
	if root {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatalf("as root this test acts as nobody: %v", err)
		}
		other = u
	}
	uid := func(u *user.User) int { n, _ := strconv.Atoi(u.Uid); return n }
	gid := func(u *user.User) int { n, _ := strconv.Atoi(u.Gid); return n }

	// acquire runs Acquire(dir) as nobody when root, else in this process, and returns
	// its error message ("" when it locked).
	var bin string
	acquire := func(t *testing.T, dir string) string {
		if !root {
			l, err := Acquire(dir)
			if err != nil {
				if !errors.Is(err, fs.ErrPermission) {
					t.Errorf("Acquire = %v, want an error matching fs.ErrPermission", err)
				}
				return err.Error()
			}
			l.Close()
			return ""
		}
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Dir = filepath.Dir(bin)
		cmd.Env = append(os.Environ(), acquireEnv+"="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: uint32(uid(other)), Gid: uint32(gid(other)), Groups: []uint32{}}}
		out, err := cmd.Output()
		if err == nil && string(out) == "locked" {
			return ""
		}
		if len(out) == 0 {
			t.Fatalf("Acquire as %s printed nothing: %v", other.Username, err)
		}
		return string(out)
	}
	if root {
		// Go keeps the test binary in a directory only root may enter: nobody runs a
		// copy in a directory it can reach.
		dir := t.TempDir()
		if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(dir, "datadir.test")
		src, err := os.Open(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// newDir is a data directory the acting user may enter: owned by nobody when root.
	newDir := func(t *testing.T) string {
		d := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if root {
			if err := os.Chmod(filepath.Dir(d), 0o711); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(filepath.Dir(filepath.Dir(d)), 0o711); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, uid(other), gid(other)); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	check := func(t *testing.T, msg string, want ...string) {
		t.Helper()
		if msg == "" {
			t.Fatal("Acquire locked the directory; want it refused")
		}
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("Acquire = %q\nwant it to mention %q", msg, w)
			}
		}
	}

	t.Run("lock file of root", func(t *testing.T) {
		if !root {
			t.Skip("needs root: only root can make a lock file another user owns")
		}
		dir := newDir(t)
		lock := filepath.Join(dir, LockFile)
		if err := os.WriteFile(lock, []byte("1\n"), 0o600); err != nil { // as a hop run as root left it
			t.Fatal(err)
		}
		check(t, acquire(t, dir), lock, "permission denied", "belongs to user root (uid 0)",
			"nobody (uid "+other.Uid+")", "run hop as root", "chown -R nobody "+dir)
	})
	t.Run("data directory of root", func(t *testing.T) {
		if !root {
			t.Skip("needs root: only root can make a data directory another user owns")
		}
		dir := filepath.Join(newDir(t), "sub") // nobody may enter it, not write in it
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		check(t, acquire(t, dir), dir, "permission denied", "belongs to user root (uid 0)",
			"run hop as root", "chown -R nobody "+dir)
	})
	t.Run("parent of root", func(t *testing.T) {
		if !root {
			t.Skip("needs root: only root can make a directory another user may not write in")
		}
		parent := filepath.Join(newDir(t), "root-owned") // nobody may enter it, not write in it
		if err := os.Mkdir(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(parent, "hop", "data")
		check(t, acquire(t, dir), "data directory "+dir+": hop may not create it", parent+" belongs to user root (uid 0)",
			"hop runs as user nobody (uid "+other.Uid+")", "mkdir -p "+dir+" && chown nobody "+dir, "HOP_DATA_DIR")
	})
	t.Run("lock file mode 000", func(t *testing.T) {
		dir := newDir(t)
		lock := filepath.Join(dir, LockFile)
		if err := os.WriteFile(lock, nil, 0o000); err != nil {
			t.Fatal(err)
		}
		if root {
			if err := os.Chown(lock, uid(other), gid(other)); err != nil {
				t.Fatal(err)
			}
		}
		check(t, acquire(t, dir), lock, "permission denied", "mode ----------", "chmod u+rw "+lock)
	})
}
