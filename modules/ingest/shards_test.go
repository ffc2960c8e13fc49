package ingest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func openTestShards(t testing.TB, maxBytes int64) shardedLog {
	t.Helper()
	s, err := openShardedLog(logConfig{Dir: t.TempDir() + "/clicks", MaxBytes: maxBytes, ReopenInterval: -1}, newLogMetrics(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// A click goes to an idle shard, else to the one whose fsync started first: that
// one answers soonest.
func TestShardPickPrefersIdleThenOldestCommit(t *testing.T) {
	s := openTestShards(t, 1<<20)
	if got := s.pick(); got != 0 {
		t.Fatalf("both idle: pick %d, want 0", got)
	}
	s[0].busySince.Store(100)
	if got := s.pick(); got != 1 {
		t.Fatalf("shard 0 committing: pick %d, want 1", got)
	}
	s[1].busySince.Store(50)
	if got := s.pick(); got != 1 {
		t.Fatalf("both committing, shard 1 since 50, shard 0 since 100: pick %d, want 1", got)
	}
	s[1].busySince.Store(200)
	if got := s.pick(); got != 0 {
		t.Fatalf("both committing, shard 0 since 100, shard 1 since 200: pick %d, want 0", got)
	}
}

// A full shard hands clicks to the other; each shard holds half of MaxBytes; after a
// restart every click is read back from both, once.
func TestShardFullHandsOverAndReopens(t *testing.T) {
	dir := t.TempDir() + "/clicks"
	cfg := logConfig{Dir: dir, MaxBytes: 8192, ReopenInterval: -1}
	s, err := openShardedLog(cfg, newLogMetrics(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	evs := newEvents(200, 3)
	var taken []Event
	for i := range evs {
		if err := s.append(&evs[i]); err == nil {
			taken = append(taken, evs[i])
		}
	}
	_, n0 := s[0].usage()
	_, n1 := s[1].usage()
	if n0 == 0 || n0 != n1 || int(n0+n1) != len(taken) || len(taken) == len(evs) {
		t.Fatalf("shard entries %d + %d, %d of %d clicks taken; want equal shards holding every taken click, some dropped", n0, n1, len(taken), len(evs))
	}
	for i, l := range s {
		if b, _ := l.usage(); b > 4096 {
			t.Fatalf("shard %d holds %d bytes, want at most 4096", i, b)
		}
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s2, err := openShardedLog(cfg, newLogMetrics(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.close()
	sameIDs(t, readAllShards(t, s2), taken)
}

// BenchmarkShardedLogAppend is BenchmarkLogAppend over the sharded log as Publish
// uses it.
func BenchmarkShardedLogAppend(b *testing.B) {
	s := openTestShards(b, 1<<30)
	reg := prometheus.NewRegistry()
	if err := register(reg, s[0].m.fsyncs); err != nil {
		b.Fatal(err)
	}
	for _, l := range s {
		defer run(b, l)()
	}
	ev := newEvents(1, 1)[0]
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.append(&ev); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/value(b, s[0].m.fsyncs), "clicks/fsync")
}
