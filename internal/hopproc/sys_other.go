//go:build !linux

package hopproc

import "syscall"

// dieWithParent: only Linux has a parent-death signal; elsewhere a child outlives a
// killed parent and must be ended by hand.
func dieWithParent(*syscall.SysProcAttr) {}
