package testenv

import (
	"strconv"
	"testing"

	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/hopproc"
)

// PrivateRedis is a redis-server of one test's own, on a port of its own and without
// persistence, so a fault test can kill, restart (empty) or pause it without touching
// the shared one. It is killed when the test ends.
type PrivateRedis struct {
	Addr string // 127.0.0.1:port
	URL  string // redis://Addr/0

	t    testing.TB
	dir  string // its working directory and log
	port int
	p    *hopproc.Proc
}

// StartPrivateRedis starts a private redis-server and returns once it answers.
func StartPrivateRedis(t testing.TB) *PrivateRedis {
	t.Helper()
	r := &PrivateRedis{t: t, dir: t.TempDir()}
	p, port, err := hopproc.StartRedisOnFreePort(r.dir)
	if err != nil {
		t.Fatalf("could not start a private redis-server: %v", err)
	}
	r.p, r.port = p, port
	r.Addr = "127.0.0.1:" + strconv.Itoa(port)
	r.URL = "redis://" + r.Addr + "/0"
	t.Cleanup(p.Kill)
	return r
}

// Client connects to the server; the client is closed when t ends.
func (r *PrivateRedis) Client(t testing.TB) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.Addr}, DisableCache: true})
	if err != nil {
		t.Fatalf("connect to the private redis-server: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Kill ends the server with SIGKILL and returns once it is reaped, so its port is
// closed by then.
func (r *PrivateRedis) Kill() { r.p.Kill() }

// Restart starts the server again on the same port, empty.
func (r *PrivateRedis) Restart() {
	r.t.Helper()
	p, err := hopproc.StartRedis(r.dir, r.port)
	if err != nil {
		r.t.Fatalf("private redis-server did not come back on %s: %v", r.Addr, err)
	}
	r.p = p
	r.t.Cleanup(p.Kill)
}
