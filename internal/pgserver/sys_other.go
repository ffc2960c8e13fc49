//go:build !linux

package pgserver

import "syscall"

// syncfs is Linux's; elsewhere initdb syncs its own files.
const syncfs = false

func syncFS(string) error { return nil }

// serverProcAttr: see sys_linux.go. Without a parent-death signal, a postmaster left by
// a killed hop keeps running until the next start stops it (stopOrphan needs /proc;
// elsewhere PostgreSQL refuses to start and names the pid to stop).
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}

func toolProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
