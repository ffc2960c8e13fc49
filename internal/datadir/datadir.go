// Package datadir guards hop's local state directory (HOP_DATA_DIR: the embedded
// PostgreSQL and the local click log) so that only one hop process uses it at a time.
// The guard is an flock on DIR/hop.lock: the kernel drops it when the process ends,
// however it ends, so a kill -9 never leaves a stale lock behind.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockFile is the name of the lock file inside the data directory.
const LockFile = "hop.lock"

// ErrLocked means another process holds the data directory.
var ErrLocked = errors.New("data directory is in use by another hop process")

// Lock is a held data directory. Release it with Close; the process's end releases it too.
type Lock struct {
	f   *os.File
	dir string
}

// Acquire creates dir if needed (mode 0700) and locks it for this process without
// waiting. When another process holds it, the error wraps ErrLocked and names that
// process's pid.
func Acquire(dir string) (*Lock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, mkdirError(abs, err)
		}
		return nil, fmt.Errorf("data directory: %w", err)
	}
	// os.OpenFile sets O_CLOEXEC, so child processes (PostgreSQL) never inherit the lock
	// and an orphaned child cannot keep the directory locked after hop is gone.
	f, err := os.OpenFile(filepath.Join(abs, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrPermission) {
		return nil, permissionError(abs, err)
	}
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	for wait := 0; ; wait++ {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		// A child forked by this process between fork and exec still shares the lock
		// of a descriptor this process has just closed; when the holder is this very
		// process, give such a child a moment to exec.
		if errors.Is(err, syscall.EWOULDBLOCK) && holder(abs) == ownPID() && wait < 200 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &lockedError{dir: abs, holder: holder(abs)}
		}
		return nil, fmt.Errorf("data directory lock %s: %w", abs, err)
	}
	// The pid is only for the message a second process prints.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f, dir: abs}, nil
}

// lockedError says which directory and process; it matches ErrLocked.
type lockedError struct{ dir, holder string }

func (e *lockedError) Error() string {
	return "data directory " + e.dir + " is in use by another hop process" + e.holder +
		"; stop it first, or give this one another HOP_DATA_DIR"
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// accessError is a lock file hop may not open, or a data directory it may not create
// one in; it matches fs.ErrPermission.
type accessError struct {
	msg string
	err error
}

func (e *accessError) Error() string { return e.msg }
func (e *accessError) Unwrap() error { return e.err }

// permissionError says which file or directory refused hop, whose it is and what to
// do: most often a hop run as root left hop.lock owned by root (a root hop gives
// PostgreSQL's user the directory, not what hop keeps in it), and a bare "permission
// denied" says none of that.
func permissionError(dir string, err error) error {
	lock := filepath.Join(dir, LockFile)
	path, msg := lock, "data directory lock "+lock+": permission denied"
	fi, serr := os.Stat(lock)
	if serr != nil { // not made yet, or dir may not be entered: dir is the one at fault
		path, msg = dir, "data directory "+dir+": permission denied creating "+LockFile+" in it"
		fi, serr = os.Stat(dir)
	}
	self := os.Geteuid()
	var st *syscall.Stat_t
	if serr == nil {
		st, _ = fi.Sys().(*syscall.Stat_t)
	}
	// What the owner needs: to read and write the lock file, or to enter the
	// directory and create it there.
	need, grant := os.FileMode(0o600), "u+rw"
	if path == dir {
		need, grant = 0o300, "u+rwx"
	}
	switch {
	case st != nil && int(st.Uid) != self:
		owner := int(st.Uid)
		msg += fmt.Sprintf(": it belongs to %s, and hop runs as %s", who(owner), who(self))
		if owner == 0 {
			msg += " (left by a hop run as root?)"
		}
		msg += fmt.Sprintf("; run hop as %s, or stop every hop using it and give the data directory to %s (as root: chown -R %s %s)",
			name(owner), name(self), name(self), dir)
	case st != nil && fi.Mode().Perm()&need != need:
		msg += fmt.Sprintf(": its mode %s keeps out even its owner, %s, who runs hop; chmod %s %s",
			fi.Mode(), who(self), grant, path)
	default:
		msg += fmt.Sprintf("; hop runs as %s: make %s and its %s readable and writable by that user", who(self), dir, LockFile)
	}
	return &accessError{msg: msg, err: err}
}

// mkdirError says why dir could not be made: which directory above it refused hop,
// whose it is, and how to make it for hop, not a bare "mkdir: permission denied".
func mkdirError(dir string, err error) error {
	self := os.Geteuid()
	msg := "data directory " + dir + ": hop may not create it"
	parent := filepath.Dir(dir)
	for parent != filepath.Dir(parent) {
		if _, serr := os.Stat(parent); serr == nil {
			break
		}
		parent = filepath.Dir(parent)
	}
	if fi, serr := os.Stat(parent); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != self {
			msg += fmt.Sprintf(": %s belongs to %s, and hop runs as %s", parent, who(int(st.Uid)), who(self))
		} else {
			msg += fmt.Sprintf(": %s does not let %s, who runs hop, create directories in it", parent, who(self))
		}
	}
	msg += fmt.Sprintf("; make it for hop (as root: mkdir -p %s && chown %s %s), or set HOP_DATA_DIR to a directory %s may write",
		dir, name(self), dir, name(self))
	return &accessError{msg: msg, err: err}
}

// name is a user's name for chown and the like, or the uid when it has none.
func name(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// who is "user NAME (uid N)", or "uid N" for a uid with no name.
func who(uid int) string {
	id := strconv.Itoa(uid)
	if n := name(uid); n != id {
		return "user " + n + " (uid " + id + ")"
	}
	return "uid " + id
}

func ownPID() string { return " (pid " + strconv.Itoa(os.Getpid()) + ")" }

func holder(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil {
		return ""
	}
	if pid := strings.TrimSpace(string(b)); pid != "" {
		return " (pid " + pid + ")"
	}
	return ""
}

// Dir is the absolute path of the locked directory.
func (l *Lock) Dir() string { return l.dir }

// Close releases the lock.
func (l *Lock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the only descriptor releases the flock
	l.f = nil
	return err
}
