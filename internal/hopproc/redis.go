package hopproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// ErrPortTaken is WaitRedis's error when another server answers on the port: a port
// found free a moment earlier (FreePort, or a kill) was taken before p bound it.
var ErrPortTaken = errors.New("another server took the port")

// RedisArgs are redis-server's arguments for a private server on the loopback at port,
// working in dir, without persistence: killed, it comes back empty.
func RedisArgs(port int, dir string) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no"}
}

// StartRedis starts a private redis-server (RedisArgs) on port, working and logging
// in dir, and returns once it answers there. It fails, with the server ended, when
// another process's server took the port meanwhile (ErrPortTaken, or an exit).
func StartRedis(dir string, port int) (*Proc, error) {
	p, err := Start(Spec{Name: "redis-server", Bin: "redis-server", Args: RedisArgs(port, dir), Dir: dir,
		Log: filepath.Join(dir, "redis-server.log")})
	if err != nil {
		return nil, fmt.Errorf("%w (is redis-server installed?)", err)
	}
	if err := WaitRedis(p, "127.0.0.1:"+strconv.Itoa(port), 30*time.Second); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// StartRedisOnFreePort is StartRedis on a free port, trying another one when the
// port picked is taken before the server binds it.
func StartRedisOnFreePort(dir string) (p *Proc, port int, err error) {
	for range 5 {
		if port, err = FreePort(); err != nil {
			return nil, 0, err
		}
		if p, err = StartRedis(dir, port); err == nil {
			return p, port, nil
		}
	}
	return nil, 0, err
}

// WaitRedis waits until the redis-server p answers on addr. The server answering must
// name p's PID in INFO, so that another process's server on the same port is never
// mistaken for p. Errors carry the end of p's log.
func WaitRedis(p *Proc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		pid, err := RedisPID(addr, 2*time.Second)
		switch {
		case err == nil && pid == p.PID():
			return nil
		case err == nil && p.Exited():
			return fmt.Errorf("%s exited (%v) and pid %d answers on %s: %w\n%s", p.name, p.err, pid, addr, ErrPortTaken, p.Tail(15))
		case p.Exited():
			return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.Tail(15))
		case time.Now().After(deadline):
			if err == nil {
				err = fmt.Errorf("pid %d answers there: %w", pid, ErrPortTaken)
			}
			return errors.Join(fmt.Errorf("%s does not answer on %s after %s:\n%s", p.name, addr, within, p.Tail(15)), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RedisPID asks the redis-server on addr for its process ID (INFO server).
func RedisPID(addr string, timeout time.Duration) (int, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, DisableCache: true, DisableRetry: true, Dialer: net.Dialer{Timeout: timeout},
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	info, err := c.Do(ctx, c.B().Info().Section("server").Build()).ToString()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server names no process_id")
}
