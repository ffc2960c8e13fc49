package ingest

import (
	"context"
	"testing"

	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestTrimKeepsUnacknowledged(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	key := rd.Prefix + "clicks"
	cfg := fastConfig(t, rd.Prefix, "c1")
	cfg.BatchSize = 1000
	pub := mustPipeline(t, cfg, rd.Client, db.Pool)
	cons := pub.stream
	tr, err := newTrimmer(trimmerConfig{}, cons)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range newEvents(1000, 1) { // sequential: stream order = slice order
		pub.Publish(ctx, ev)
	}
	if _, err := cons.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	cons.perEntry.Store(1) // one click per entry: sequential publishes
	entries := readN(t, cons, 1000)
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	do := func(cmd rueidis.Completed) rueidis.RedisResult {
		t.Helper()
		r := rd.Client.Do(ctx, cmd)
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// hop-ingest acknowledges entries 0..599 and 700..999; 600..699 stay pending.
	do(rd.Client.B().Xack().Key(key).Group(groupName).Id(ids[:600]...).Build())
	do(rd.Client.B().Xack().Key(key).Group(groupName).Id(ids[700:]...).Build())
	xlen := func() int64 {
		n, err := do(rd.Client.B().Xlen().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	present := func(from, to string) int {
		r, err := do(rd.Client.B().Xrange().Key(key).Start(from).End(to).Build()).AsXRange()
		if err != nil {
			t.Fatal(err)
		}
		return len(r)
	}

	// A second group that has read nothing protects every entry.
	do(rd.Client.B().XgroupCreate().Key(key).Group("audit").Id("0").Build())
	if err := tr.trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := xlen(); n != 1000 {
		t.Fatalf("XLEN %d after trim with an unread group, want 1000", n)
	}

	// Once it has read and acknowledged 800, hop-ingest's pending entry 600 is the floor.
	got, err := do(rd.Client.B().Xreadgroup().Group("audit", "a").Count(800).Streams().Key(key).Id(">").Build()).AsXRead()
	if err != nil || len(got[key]) != 800 {
		t.Fatalf("audit read %d, %v", len(got[key]), err)
	}
	do(rd.Client.B().Xack().Key(key).Group("audit").Id(ids[:800]...).Build())
	if err := tr.trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := present(ids[600], "+"); n != 400 {
		t.Fatalf("%d entries from the oldest pending one on, want 400", n)
	}
	if n := xlen(); n >= 1000 {
		t.Fatalf("XLEN %d: nothing trimmed below the oldest pending entry", n)
	}

	// With nothing pending anywhere, audit's last delivered entry (799) is the floor.
	do(rd.Client.B().Xack().Key(key).Group(groupName).Id(ids[600:700]...).Build())
	if err := tr.trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := present(ids[799], "+"); n != 201 {
		t.Fatalf("%d entries from audit's last delivered on, want 201", n)
	}
}
