package pgserver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// account is the unprivileged user PostgreSQL runs as when hop runs as root, which
// PostgreSQL refuses. When hop is not root, PostgreSQL runs as hop's own user.
type account struct {
	name     string
	uid, gid uint32
}

// serverAccount picks the account for a root hop: the owner of an existing data
// directory, else the postgres user that distribution packages create, else nobody.
func serverAccount(pgdir string) (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if fi, err := os.Stat(pgdir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			name := strconv.Itoa(int(st.Uid))
			if u, err := user.LookupId(name); err == nil {
				name = u.Username
			}
			return &account{name: name, uid: st.Uid, gid: st.Gid}, nil
		}
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &account{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, errors.New("hop runs as root, which PostgreSQL refuses, and there is no postgres or nobody user to run it as: " +
		"create a postgres user, run hop as an ordinary user, or set DATABASE_URL")
}

// credential is the SysProcAttr credential that runs a child as a (nil: as hop).
func (a *account) credential() *syscall.Credential {
	if a == nil {
		return nil
	}
	// No supplementary groups: the child keeps none of root's.
	return &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: []uint32{}}
}

// grant gives a the data directory (dir itself, not what hop keeps there) and the
// PostgreSQL data inside it, after checking that a can reach dir at all.
func (a *account) grant(dir, pgdir string) error {
	if a == nil {
		return nil
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		if !a.canEnter(fi) {
			return fmt.Errorf("PostgreSQL runs as user %s (hop runs as root, which PostgreSQL refuses) and cannot enter %s on the way to %s: "+
				"make it traversable (chmod o+x %s) or choose a HOP_DATA_DIR elsewhere", a.name, p, dir, p)
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	if err := os.Chown(dir, int(a.uid), int(a.gid)); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	fi, err := os.Stat(pgdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("postgres data: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == a.uid {
		return nil
	}
	// Data left by root (an older copy, say) is handed over whole: PostgreSQL refuses
	// files it does not own.
	return filepath.WalkDir(pgdir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(a.uid), int(a.gid))
	})
}

func (a *account) canEnter(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	m := fi.Mode().Perm()
	switch {
	case st.Uid == a.uid:
		return m&0o100 != 0
	case st.Gid == a.gid:
		return m&0o010 != 0
	}
	return m&0o001 != 0
}
