package hopproc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sh starts sh -c script with its output in a fresh log under t's temporary directory.
func sh(t *testing.T, script string, opts ...func(*Spec)) *Proc {
	t.Helper()
	s := Spec{Name: "sh", Bin: "sh", Args: []string{"-c", script}, Dir: t.TempDir()}
	s.Log = filepath.Join(s.Dir, "sh.log")
	for _, o := range opts {
		o(&s)
	}
	p, err := Start(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

// waitLog polls p's log until its last line is want.
func waitLog(t *testing.T, p *Proc, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); p.Tail(1) != want; time.Sleep(10 * time.Millisecond) {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("log does not end in %q (exited %v, %v):\n%s", want, p.Exited(), p.Err(), p.Tail(5))
		}
	}
}

func TestTailAppends(t *testing.T) {
	t.Parallel()
	p := sh(t, "for i in 1 2 3 4 5; do echo line$i; done; pwd")
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Tail(3), "line4\nline5\n"+filepath.Dir(p.LogPath()); got != want {
		t.Errorf("Tail(3) = %q, want %q", got, want)
	}
	// A restart appends to the same log: chaos reads a hop's log across its kills.
	q, err := Start(Spec{Name: "again", Bin: "sh", Args: []string{"-c", "echo again; exit 3"}, Log: p.LogPath()})
	if err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := q.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("Wait = %v, want exit status 3", err)
	}
	if got := q.Tail(100); !strings.HasPrefix(got, "line1\n") || !strings.HasSuffix(got, "\nagain") {
		t.Errorf("log after the second start:\n%s", got)
	}
	if !q.Exited() || q.Err() == nil {
		t.Errorf("Exited %v, Err %v after Wait", q.Exited(), q.Err())
	}
}

func TestStopEndsOnSignal(t *testing.T) {
	t.Parallel()
	p := sh(t, "exec sleep 60")
	if p.Exited() || p.Err() != nil {
		t.Fatalf("fresh process: Exited %v, Err %v", p.Exited(), p.Err())
	}
	if !p.Stop(syscall.SIGTERM, time.Minute) {
		t.Error("Stop killed a process that ends on SIGTERM")
	}
	if !p.Exited() {
		t.Error("not Exited after Stop")
	}
	if !p.Stop(syscall.SIGTERM, time.Minute) {
		t.Error("Stop of an ended process reports a kill")
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	t.Parallel()
	// An ignored signal stays ignored across exec: sleep does not end on SIGTERM.
	p := sh(t, "trap '' TERM; echo ready; exec sleep 60")
	waitLog(t, p, "ready")
	if p.Stop(syscall.SIGTERM, 100*time.Millisecond) {
		t.Fatal("Stop reports an end on its own for a process that ignores SIGTERM")
	}
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Err = %v, want killed by SIGKILL", err)
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	p := sh(t, "exec sleep 60")
	p.Kill()
	if !p.Exited() {
		t.Fatal("not Exited after Kill")
	}
	p.Kill() // ended: no signal, no wait
	var nilProc *Proc
	nilProc.Kill()
	if !nilProc.Stop(syscall.SIGTERM, time.Second) {
		t.Error("Stop of a nil Proc reports a kill")
	}
}

func TestOwnGroup(t *testing.T) {
	t.Parallel()
	for _, own := range []bool{false, true} {
		p := sh(t, "exec sleep 60", func(s *Spec) { s.OwnGroup, s.DieWithParent = own, own })
		pgid, err := syscall.Getpgid(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		if got := pgid == p.PID(); got != own {
			t.Errorf("OwnGroup %v: leads its own group: %v", own, got)
		}
		p.Kill()
	}
}

func TestStartFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := Start(Spec{Name: "nothing", Bin: filepath.Join(dir, "no-such-binary"), Log: filepath.Join(dir, "x.log")})
	if err == nil || !strings.Contains(err.Error(), "start nothing") {
		t.Errorf("Start of a missing binary: %v", err)
	}
}

func TestWaitPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p := sh(t, "exec sleep 60")
	if err := WaitPort(p, ln.Addr().String(), 10*time.Second); err != nil {
		t.Errorf("WaitPort on a listener: %v", err)
	}

	port, err := FreePort()
	if err != nil || port <= 0 {
		t.Fatalf("FreePort = %d, %v", port, err)
	}
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := WaitPort(p, closed, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "does not accept connections") {
		t.Errorf("WaitPort on a closed port: %v", err)
	}

	q := sh(t, "echo gave up; exit 1")
	if err := WaitPort(q, closed, time.Minute); err == nil || !strings.Contains(err.Error(), "sh exited") || !strings.Contains(err.Error(), "gave up") {
		t.Errorf("WaitPort for a process that exits: %v", err)
	}
}

func TestDrained(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ih   IngestHealth
		want bool
	}{
		{IngestHealth{Mode: "log"}, true},
		{IngestHealth{Mode: "log", LogEntries: 1}, false},
		{IngestHealth{Mode: "log", Lag: 5, Pending: 5}, true}, // no stream without Redis
		{IngestHealth{Mode: "stream"}, true},
		{IngestHealth{Mode: "stream", Lag: -1}, false}, // Redis cannot tell
		{IngestHealth{Mode: "stream", Pending: 1}, false},
		{IngestHealth{Mode: "stream", LogEntries: 1}, false}, // the fallback holds clicks
	} {
		if got := tc.ih.Drained(); got != tc.want {
			t.Errorf("%+v.Drained() = %v, want %v", tc.ih, got, tc.want)
		}
	}
}

func TestReadIngestHealth(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		switch r.Header.Get("Authorization") {
		case "Bearer k":
			w.WriteHeader(http.StatusServiceUnavailable) // down hops still report ingest
			_, _ = w.Write([]byte(`{"status":"down","checks":{"ingest":{"status":"degraded","error":"redis","details":{"mode":"stream","stream_length":7,"pending":2,"lag":3,"log_entries":1,"dropped":0}}}}`))
		case "":
			_, _ = w.Write([]byte(`{"status":"ok","checks":{"ingest":{"status":"ok"}}}`))
		default:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`not json`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	ih, err := ReadIngestHealth(ctx, srv.URL, "k")
	if want := (IngestHealth{Mode: "stream", StreamLength: 7, Pending: 2, Lag: 3, LogEntries: 1}); err != nil || ih != want {
		t.Errorf("with a key: %+v, %v; want %+v", ih, err, want)
	}
	ih, err = ReadIngestHealth(ctx, srv.URL, "")
	if err == nil || err.Error() != `health 200 has no ingest details (status "ok", error "")` || ih.Drained() {
		t.Errorf("without a key: %+v, %v", ih, err)
	}
	if ih, err = ReadIngestHealth(ctx, srv.URL, "wrong"); err == nil || !strings.HasPrefix(err.Error(), "health 401: ") || ih.Lag != -1 {
		t.Errorf("with a wrong key: %+v, %v", ih, err)
	}
}
