package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hop-dev/hop/internal/testenv"
)

// openTestLog opens a click log in dir; it is closed when t ends.
func openTestLog(t testing.TB, dir string, maxBytes int64) *clickLog {
	t.Helper()
	l, err := openClickLog(logConfig{Dir: dir, MaxBytes: maxBytes, ReopenInterval: -1}, newLogMetrics(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.close() })
	return l
}

// readAll returns every event in the log, in order.
func readAll(t testing.TB, l *clickLog) []Event {
	t.Helper()
	first, last, ok := l.bounds()
	if !ok {
		t.Fatalf("log broken: %v", l.broken())
	}
	evs, next, bad, err := l.read(first, 1<<30, nil)
	if err != nil || bad != 0 || next != last+1 {
		t.Fatalf("read: next %d (last %d), %d bad, %v", next, last, bad, err)
	}
	return evs
}

func sameIDs(t testing.TB, got, want []Event) {
	t.Helper()
	ids := make(map[uuid.UUID]int, len(got))
	for _, ev := range got {
		ids[ev.ID]++
	}
	for _, ev := range want {
		if ids[ev.ID] != 1 {
			t.Fatalf("event %s is in the log %d times, want once", ev.ID, ids[ev.ID])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("log holds %d events, want %d", len(got), len(want))
	}
}

// Clicks appended while the writer runs share fsyncs, and all of them are in the log
// when it is opened again.
func TestLogSurvivesReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openTestLog(t, dir, 1<<30)
	stop := run(t, l)
	evs := newEvents(2000, 4)
	var wg sync.WaitGroup
	errs := make([]error, len(evs))
	for i := range evs {
		wg.Go(func() { errs[i] = l.append(&evs[i]) })
	}
	wg.Wait()
	stop()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	commits := value(t, l.m.fsyncs)
	if commits >= float64(len(evs)) || commits == 0 {
		t.Fatalf("%d concurrent clicks took %v fsyncs: no group commit", len(evs), commits)
	}
	t.Logf("%d concurrent clicks in %v group commits (%.1f clicks per fsync)", len(evs), commits, float64(len(evs))/commits)
	if err := l.close(); err != nil {
		t.Fatal(err)
	}

	again := openTestLog(t, dir, 1<<30)
	sameIDs(t, readAll(t, again), evs)
}

// A crash in the middle of a write leaves an incomplete last entry: it is cut when
// the log is opened, and every complete entry stays.
func TestLogCutsTornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l := openTestLog(t, dir, 1<<30)
	evs := newEvents(10, 5)
	for i := range evs {
		if err := l.append(&evs[i]); err != nil { // not running: an entry each
			t.Fatal(err)
		}
	}
	l.close()
	segs, _ := filepath.Glob(filepath.Join(dir, "0*"))
	if len(segs) != 1 {
		t.Fatalf("segments %v, want one", segs)
	}
	f, err := os.OpenFile(segs[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := binary.AppendUvarint(nil, 200) // an entry of 200 bytes, 7 of them written
	if _, err := f.Write(append(torn, "partial"...)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	l = openTestLog(t, dir, 1<<30)
	sameIDs(t, readAll(t, l), evs)
	more := newEvents(1, 5)
	if err := l.append(&more[0]); err != nil {
		t.Fatal(err)
	}
	l.close()
	l = openTestLog(t, dir, 1<<30)
	sameIDs(t, readAll(t, l), append(evs, more...))
}

// A garbled entry (a failing disk) fails its checksum, so the reader skips it.
func TestLogEntryChecksum(t *testing.T) {
	t.Parallel()
	l := openTestLog(t, t.TempDir(), 1<<30)
	evs := newEvents(3, 6)
	for i := range evs {
		if err := l.append(&evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	data, err := l.w.Read(2)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := openLogEntry(data); !ok {
		t.Fatal("a sealed entry does not open")
	}
	data[len(data)-1] ^= 0xff
	if _, ok := openLogEntry(data); ok {
		t.Fatal("a garbled entry passed its checksum")
	}
}

// Only one process may use a log directory.
func TestLogLockedByAnotherUser(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openTestLog(t, dir, 1<<30)
	_, err := openClickLog(logConfig{Dir: dir, MaxBytes: 1 << 30}, newLogMetrics(), testLogger(t))
	if !errors.Is(err, errLogLocked) {
		t.Fatalf("second open: %v, want %v", err, errLogLocked)
	}
}

// Past SpoolMaxBytes a click is dropped: the redirect still returns, the drop is
// counted and /health is degraded; every click taken is stored, once.
func TestLogBoundDropsAndCounts(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	cfg := fastConfig(t, "", "c1")
	cfg.SpoolMaxBytes = 4096
	p := mustPipeline(t, cfg, nil, db.Pool)
	ctx := context.Background()
	evs := newEvents(100, 7)
	for _, ev := range evs { // the readers are not running: nothing leaves the log
		p.Publish(ctx, ev)
	}
	taken, dropped := value(t, p.m.fallback), value(t, p.m.dropped)
	if taken+dropped != 100 || dropped == 0 || taken == 0 {
		t.Fatalf("taken %v, dropped %v of 100; want both, adding up to 100", taken, dropped)
	}
	if bytes, entries := p.log.usage(); bytes > 4096 || float64(entries) != taken {
		t.Fatalf("log holds %d bytes in %d entries; want at most 4096 bytes, %v entries", bytes, entries, taken)
	}
	h, err := p.Health(ctx)
	if err == nil || h.Dropped != int64(dropped) {
		t.Fatalf("health %+v, %v; want degraded with %v dropped", h, err, dropped)
	}
	t.Logf("4096 bytes took %v clicks, dropped %v; health: %v", taken, dropped, err)

	run(t, p)
	waitRows(t, db.Pool, int(taken))
}

// A full disk is the one case where a click may be dropped. The redirect still
// returns, every drop is counted and /health is degraded; once there is space again
// the log takes clicks without a restart, and every click it took is stored once.
// The data directory is a 1 MiB tmpfs, filled up by another file.
func TestFullDiskDropsCountsAndRecovers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (make test runs as root in CI)")
	}
	t.Parallel()
	db := testenv.NewDB(t)
	cfg := fastConfig(t, "", "full")
	if err := syscall.Mount("tmpfs", cfg.DataDir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount a tmpfs on the data directory: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(cfg.DataDir, syscall.MNT_DETACH) })
	p := mustPipeline(t, cfg, nil, db.Pool)
	ctx := context.Background()

	filler := filepath.Join(cfg.DataDir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 4096); ; {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	f.Close()

	for _, ev := range newEvents(50, 7) { // the readers are not running: nothing leaves the log
		p.Publish(ctx, ev)
	}
	taken, dropped := value(t, p.m.fallback), value(t, p.m.dropped)
	if taken+dropped != 50 || dropped == 0 {
		t.Fatalf("disk full: taken %v, dropped %v of 50; want drops, adding up to 50", taken, dropped)
	}
	if h, err := p.Health(ctx); err == nil || h.Dropped != int64(dropped) {
		t.Fatalf("disk full: health %+v, %v; want degraded with %v dropped", h, err, dropped)
	}
	t.Logf("with the disk full: %v of 50 clicks taken, %v dropped", taken, dropped)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The log reopens (cutting any torn tail) at the first append after ReopenInterval.
	testenv.Eventually(t, 10*time.Second, "the log taking clicks again", func() bool {
		p.Publish(ctx, newEvents(1, 7)[0])
		return value(t, p.m.fallback) > taken
	})
	before := value(t, p.m.dropped)
	for _, ev := range newEvents(50, 7) {
		p.Publish(ctx, ev)
	}
	if d := value(t, p.m.dropped); d != before {
		t.Fatalf("space free again: %v more clicks dropped", d-before)
	}
	taken = value(t, p.m.fallback)
	run(t, p)
	waitRows(t, db.Pool, int(taken))
	t.Logf("after space was freed: %v clicks taken in all, each stored once", taken)
}

// BenchmarkLogAppend is the no-Redis hand-off under concurrent redirects: each click
// waits for its group commit's fsync. It reports clicks per fsync.
func BenchmarkLogAppend(b *testing.B) {
	l, err := openClickLog(logConfig{Dir: b.TempDir(), MaxBytes: 1 << 30}, newLogMetrics(), testLogger(b))
	if err != nil {
		b.Fatal(err)
	}
	defer l.close()
	reg := prometheus.NewRegistry()
	if err := register(reg, l.m.fsyncs); err != nil {
		b.Fatal(err)
	}
	stop := run(b, l)
	ev := newEvents(1, 1)[0]
	b.ReportAllocs()
	b.SetParallelism(32) // redirects arrive concurrently; group commit batches them
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.append(&ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/value(b, l.m.fsyncs), "clicks/fsync")
}

// A lone click is never held back to gather others, even with a Gather of an hour:
// clicks appended one after another each get their own fsync at once. Clicks that
// arrive together may wait for more, and a shutdown cuts that wait short without
// losing one of them.
func TestLogGatherOnlyWhileClicksArriveTogether(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := openClickLog(logConfig{Dir: dir, MaxBytes: 1 << 30, ReopenInterval: -1, Gather: time.Hour}, newLogMetrics(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, l)
	lone := newEvents(10, 5)
	for i := range lone {
		if err := l.append(&lone[i]); err != nil {
			t.Fatal(err)
		}
	}
	if c := value(t, l.m.fsyncs); c != 10 {
		t.Fatalf("10 lone clicks took %v fsyncs, want 10", c)
	}

	together := newEvents(600, 6)
	errs := make([]error, len(together))
	var wg sync.WaitGroup
	for i := range together {
		wg.Go(func() { errs[i] = l.append(&together[i]) })
	}
	testenv.Eventually(t, 30*time.Second, "a commit of the concurrent clicks", func() bool { return value(t, l.m.fsyncs) > 10 })
	stop()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	sameIDs(t, readAll(t, openTestLog(t, dir, 1<<30)), append(lone, together...))
}
