package hopproc

import (
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// redisOn starts a private redis-server without persistence on port.
func redisOn(t *testing.T, port int) *Proc {
	t.Helper()
	dir := t.TempDir()
	p, err := Start(Spec{Name: "redis-server", Bin: "redis-server", Dir: dir, Log: filepath.Join(dir, "redis.log"),
		Args: RedisArgs(port, dir)})
	if err != nil {
		t.Fatalf("start redis-server (is it installed?): %v", err)
	}
	t.Cleanup(p.Kill)
	return p
}

// TestWaitRedisKnowsItsOwnServer: a server that lost the race for its port is never
// taken for the one that won it.
func TestWaitRedisKnowsItsOwnServer(t *testing.T) {
	t.Parallel()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	first := redisOn(t, port)
	if err := WaitRedis(first, addr, 30*time.Second); err != nil {
		t.Fatalf("WaitRedis for the server on a free port: %v", err)
	}
	if pid, err := RedisPID(addr, 5*time.Second); err != nil || pid != first.PID() {
		t.Fatalf("RedisPID = %d, %v; want %d", pid, err, first.PID())
	}

	// A second server on the same port cannot bind it and exits, while the first
	// still answers there.
	second := redisOn(t, port)
	if err := WaitRedis(second, addr, 30*time.Second); !errors.Is(err, ErrPortTaken) {
		t.Errorf("WaitRedis for a server that could not bind: %v, want ErrPortTaken", err)
	}

	// A process that is still running but is not the server answering.
	other := sh(t, "exec sleep 60")
	if err := WaitRedis(other, addr, 100*time.Millisecond); !errors.Is(err, ErrPortTaken) {
		t.Errorf("WaitRedis for a process that is not the answering server: %v, want ErrPortTaken", err)
	}

	// StartRedis on the taken port fails; StartRedisOnFreePort finds one of its own.
	if p, err := StartRedis(t.TempDir(), port); err == nil {
		p.Kill()
		t.Error("StartRedis on a port another server holds: no error")
	}
	own, ownPort, err := StartRedisOnFreePort(t.TempDir())
	if err != nil {
		t.Fatalf("StartRedisOnFreePort: %v", err)
	}
	t.Cleanup(own.Kill)
	if pid, err := RedisPID("127.0.0.1:"+strconv.Itoa(ownPort), 5*time.Second); err != nil || pid != own.PID() {
		t.Errorf("StartRedisOnFreePort's server: RedisPID = %d, %v; want %d", pid, err, own.PID())
	}

	free, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RedisPID("127.0.0.1:"+strconv.Itoa(free), time.Second); err == nil {
		t.Error("RedisPID on a closed port: no error")
	}
}
