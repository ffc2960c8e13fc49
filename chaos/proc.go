package main

import (
	"sync"
	"syscall"
	"time"

	"github.com/hop-dev/hop/internal/hopproc"
)

// procs remembers every process a run started, so that cleanup ends them all even
// when a scenario fails half-way.
type procs struct {
	mu   sync.Mutex
	list []*hopproc.Proc
}

// start runs bin with args and env, its output appended to logPath. The child gets its
// own process group (a terminal's Ctrl-C reaches chaos alone, which then stops it) and
// dies with chaos if chaos is killed.
func (ps *procs) start(name, bin string, args, env []string, dir, logPath string, cred *syscall.Credential) (*hopproc.Proc, error) {
	p, err := hopproc.Start(hopproc.Spec{
		Name: name, Bin: bin, Args: args, Env: env, Dir: dir, Log: logPath,
		OwnGroup: true, DieWithParent: true, Credential: cred,
	})
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// killAll ends every process still running: SIGTERM first, SIGKILL after grace.
func (ps *procs) killAll(grace time.Duration) {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range list {
		wg.Go(func() { p.Stop(syscall.SIGTERM, grace) })
	}
	wg.Wait()
}
