package hopproc

import "syscall"

// dieWithParent: the kernel kills the child when the thread that started it ends,
// which for a Go program that does not lock threads is when the program ends.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
