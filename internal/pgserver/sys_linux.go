package pgserver

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// syncfs: initdb runs with --no-sync and hop flushes its files with one syncfs, as
// --sync-method=syncfs does in PostgreSQL 17, instead of an fsync per file, which is
// most of initdb's time on a busy disk.
const syncfs = true

// syncFS flushes the filesystem holding dir to disk.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// serverProcAttr runs the postmaster in its own process group, so a terminal's Ctrl-C
// reaches hop alone and hop stops PostgreSQL only after draining; and if hop dies
// without stopping it (kill -9), the kernel asks it for a fast shutdown (stopOrphan
// covers the rest).
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGINT}
}

// toolProcAttr runs initdb: killed with hop, so that a hop killed during its first
// start leaves no initdb writing into the scratch directory the next start removes.
func toolProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
