// Package hopproc runs hop and the servers it needs (PostgreSQL, redis-server, a bare
// redirect server) as child processes, for the chaos and bench tools. A process is
// only ever ended through its own PID, never by name, so that other hops and the
// shared servers running beside a tool are never touched.
package hopproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Spec says what to run and how.
type Spec struct {
	Name string // names the process in errors
	Bin  string
	Args []string
	Env  []string // nil: this process's environment, as for exec.Cmd
	Dir  string
	Log  string // stdout and stderr are appended here, so a restart keeps the earlier lines

	// OwnGroup starts the child in a process group of its own: a terminal's Ctrl-C
	// then reaches the parent alone, which stops its children in the order it wants.
	OwnGroup bool
	// DieWithParent has the kernel send SIGKILL to the child when the parent dies, so
	// a killed tool leaves no servers behind. Linux only; elsewhere it does nothing.
	DieWithParent bool
	// Credential runs the child as another user (PostgreSQL refuses to run as root);
	// nil runs it as this process's user.
	Credential *syscall.Credential
}

// Proc is a running (or finished) child process.
type Proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped and err is set
	err  error
}

// Start runs s.Bin and returns once the process has started.
func Start(s Spec) (*Proc, error) {
	lf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.Bin, s.Args...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = s.Env, s.Dir, lf, lf
	if s.OwnGroup || s.DieWithParent || s.Credential != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: s.OwnGroup, Credential: s.Credential}
		if s.DieWithParent {
			dieWithParent(cmd.SysProcAttr)
		}
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &Proc{name: s.Name, log: s.Log, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

// Name is the Spec's name.
func (p *Proc) Name() string { return p.name }

// PID is the process's id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// LogPath is the file the process's output is appended to.
func (p *Proc) LogPath() string { return p.log }

// Exited reports whether the process has ended and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end and returns how it ended, as exec.Cmd.Wait does.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Err is how the process ended (exec.Cmd.Wait's error); nil while it runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Kill sends SIGKILL and waits for the process to be reaped; a nil or ended Proc is
// left alone, so cleanup may call it on whatever it holds.
func (p *Proc) Kill() {
	if p == nil || p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends sig and waits; after timeout it sends SIGKILL. It reports whether the
// process ended on its own (true too for a nil or ended Proc).
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) bool {
	if p == nil || p.Exited() {
		return true
	}
	_ = p.cmd.Process.Signal(sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return false
	}
}

// Tail returns the last n lines of the process's log, for error messages.
func (p *Proc) Tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// FreePort finds a free TCP port on the loopback by binding :0. Another process may
// take it before the child binds it; the tools accept that small race because the
// servers they start take a port number, not a listener.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitPort waits until something accepts connections on addr, or p exits, or within
// has passed; the errors carry the end of p's log.
func WaitPort(p *Proc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.Tail(15))
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("%s does not accept connections on %s after %s:\n%s", p.name, addr, within, p.Tail(15)), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
