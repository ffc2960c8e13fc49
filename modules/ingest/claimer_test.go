package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestClaimerConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     claimerConfig
		want    time.Duration // ConsumerIdle after defaults
		wantErr bool
	}{
		{"defaults", claimerConfig{}, time.Hour, false},
		{"equal to Idle", claimerConfig{Idle: time.Minute, ConsumerIdle: time.Minute}, time.Minute, false},
		{"below Idle", claimerConfig{Idle: time.Minute, ConsumerIdle: time.Second}, 0, true},
		{"below the default Idle", claimerConfig{ConsumerIdle: time.Second}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newClaimer(tc.cfg, nil)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("newClaimer(%+v) = nil error, want one", tc.cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.cfg.ConsumerIdle != tc.want {
				t.Fatalf("ConsumerIdle = %s, want %s", c.cfg.ConsumerIdle, tc.want)
			}
		})
	}
}

// A consumer gone for good (a container's old hostname) is deleted once idle with
// nothing pending; the instance's own consumer never is. A missing stream or group is
// nothing to clean.
func TestClaimerRemovesIdleConsumers(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	key := rd.Prefix + "clicks"
	p, logs := loggedPipeline(t, fastConfig(t, rd.Prefix, "self"), rd.Client, db.Pool)
	c := testClaimer(t, p.stream, time.Millisecond)

	if err := c.runOnce(ctx); err != nil {
		t.Fatalf("runOnce without a stream: %v", err)
	}
	do(t, rd.Client, rd.Client.B().XgroupCreate().Key(key).Group("audit").Id("0").Mkstream().Build())
	if err := c.runOnce(ctx); err != nil {
		t.Fatalf("runOnce without the group: %v", err)
	}

	if _, err := p.stream.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	createConsumers(t, rd.Client, key, "self", "gone")
	waitIdle(t, rd.Client, key, time.Millisecond, "self", "gone")
	if err := c.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	wantConsumers(t, rd.Client, key, map[string]int64{"self": 0})
	if got := value(t, p.stream.m.consumersRemoved); got != 1 {
		t.Fatalf("consumers removed = %v, want 1", got)
	}
	if got := removedLogged(t, logs); !slices.Equal(got, []string{"gone"}) {
		t.Fatalf("logged removals %q, want [gone]", got)
	}

	if err := c.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	wantConsumers(t, rd.Client, key, map[string]int64{"self": 0})
	if got := value(t, p.stream.m.consumersRemoved); got != 1 {
		t.Fatalf("consumers removed after a second round = %v, want 1", got)
	}
}

// A consumer that still holds entries is never deleted, however idle: that would drop
// them from the pending list and no claim would ever write them. Once the claimer has
// taken them over, and written each click once, it is.
func TestClaimerKeepsConsumersWithPending(t *testing.T) {
	t.Parallel()
	db, rd, key, self, dead := twoInstances(t, "dead")
	ctx := context.Background()
	evs := newEvents(200, 1)
	publishAll(ctx, dead, evs) // not running: each click has an XADD of its own
	dead.stream.perEntry.Store(1)
	readN(t, dead.stream, len(evs)) // and dies before writing them
	createConsumers(t, rd.Client, key, "self", "empty")
	c := testClaimer(t, self.stream, time.Millisecond)
	waitIdle(t, rd.Client, key, time.Millisecond, "self", "dead", "empty")

	// The script alone, no claim: the empty consumer goes, the one holding entries stays.
	if err := c.removeIdleConsumers(ctx); err != nil {
		t.Fatal(err)
	}
	wantConsumers(t, rd.Client, key, map[string]int64{"self": 0, "dead": int64(len(evs))})
	if n := countRows(t, db.Pool); n != 0 {
		t.Fatalf("%d rows before any claim, want 0", n)
	}

	// A full round claims and writes every entry, then deletes the emptied consumer.
	testenv.Eventually(t, 10*time.Second, "every pending entry idle past Idle", func() bool {
		cmd := rd.Client.B().Xpending().Key(key).Group(groupName).Idle(c.cfg.Idle.Milliseconds()).
			Start("-").End("+").Count(int64(len(evs)) + 1).Consumer("dead").Build()
		arr, err := rd.Client.Do(ctx, cmd).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		return len(arr) == len(evs)
	})
	if err := c.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	wantConsumers(t, rd.Client, key, map[string]int64{"self": 0})
	if got := value(t, self.stream.m.claimed); got != float64(len(evs)) {
		t.Fatalf("claimed = %v, want %d", got, len(evs))
	}
	if got := value(t, self.stream.m.consumersRemoved); got != 2 {
		t.Fatalf("consumers removed = %v, want 2", got)
	}
	waitRows(t, db.Pool, len(evs))
	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID.String()
	}
	var stored int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM click_logs WHERE event_id = ANY($1::uuid[])", ids).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != len(evs) {
		t.Fatalf("%d of the %d clicks the dead consumer held are stored", stored, len(evs))
	}
}

// A consumer idle for less than ConsumerIdle is kept: it may be an instance between
// two reads.
func TestClaimerKeepsRecentConsumers(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	key := rd.Prefix + "clicks"
	p := mustPipeline(t, fastConfig(t, rd.Prefix, "self"), rd.Client, db.Pool)
	if _, err := p.stream.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	createConsumers(t, rd.Client, key, "self", "recent")
	patient := testClaimer(t, p.stream, time.Minute)
	if err := patient.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	wantConsumers(t, rd.Client, key, map[string]int64{"self": 0, "recent": 0})
	if got := value(t, p.stream.m.consumersRemoved); got != 0 {
		t.Fatalf("consumers removed = %v, want 0", got)
	}

	// The same consumer goes under a shorter ConsumerIdle: it was kept for its idle time.
	eager := testClaimer(t, p.stream, time.Millisecond)
	waitIdle(t, rd.Client, key, time.Millisecond, "recent")
	if err := eager.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	wantConsumers(t, rd.Client, key, map[string]int64{"self": 0})
}

// A live instance on a quiet stream is kept even when Redis reports its consumer idle
// (before 7.2 a blocking read that gets nothing does not reset that): its own claimer
// marks it alive. Once its marks stop for ConsumerIdle, it goes, and its mark with it.
func TestClaimerKeepsLiveInstancesOfAQuietStream(t *testing.T) {
	t.Parallel()
	_, rd, key, self, other := twoInstances(t, "other")
	ctx := context.Background()
	createConsumers(t, rd.Client, key, "self", "other")
	const consumerIdle = time.Second
	waitIdle(t, rd.Client, key, consumerIdle, "other")
	// other's claimer runs: it marks other alive (its long ConsumerIdle removes nothing).
	if err := testClaimer(t, other.stream, time.Hour).runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	c := testClaimer(t, self.stream, consumerIdle)
	if err := c.runOnce(ctx); err != nil {
		t.Fatal(err)
	}
	wantConsumers(t, rd.Client, key, map[string]int64{"self": 0, "other": 0})

	// other stops: once its consumer and its mark are both a ConsumerIdle old, it goes.
	testenv.Eventually(t, 10*time.Second, "other's mark to age", func() bool {
		if err := c.runOnce(ctx); err != nil {
			t.Fatal(err)
		}
		_, alive := consumers(t, rd.Client, key)["other"]
		return !alive
	})
	wantConsumers(t, rd.Client, key, map[string]int64{"self": 0})
	marks, err := rd.Client.Do(ctx, rd.Client.B().Hkeys().Key(key+":alive").Build()).AsStrSlice()
	if err != nil || !slices.Equal(marks, []string{"self"}) {
		t.Fatalf("alive marks %q (%v), want only self's", marks, err)
	}
}

// twoInstances is a test's database and Redis with two pipelines on one stream, "self"
// and other, and the group made; key is the stream.
func twoInstances(t *testing.T, other string) (db *testenv.DB, rd *testenv.Redis, key string, self, o *Pipeline) {
	t.Helper()
	db, rd = testenv.NewDB(t), testenv.NewRedis(t)
	self = mustPipeline(t, fastConfig(t, rd.Prefix, "self"), rd.Client, db.Pool)
	o = mustPipeline(t, fastConfig(t, rd.Prefix, other), rd.Client, db.Pool)
	if _, err := self.stream.ensureGroup(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db, rd, rd.Prefix + "clicks", self, o
}

// testClaimer is a claimer over s that claims entries idle 1ms and deletes consumers
// idle consumerIdle.
func testClaimer(t testing.TB, s *stream, consumerIdle time.Duration) *claimer {
	t.Helper()
	c, err := newClaimer(claimerConfig{retryConfig: testRetry, Interval: 50 * time.Millisecond,
		Idle: time.Millisecond, ConsumerIdle: consumerIdle}, s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func do(t testing.TB, rdb rueidis.Client, cmd rueidis.Completed) rueidis.RedisResult {
	t.Helper()
	r := rdb.Do(context.Background(), cmd)
	if err := r.Error(); err != nil {
		t.Fatal(err)
	}
	return r
}

func createConsumers(t testing.TB, rdb rueidis.Client, key string, names ...string) {
	t.Helper()
	for _, name := range names {
		do(t, rdb, rdb.B().XgroupCreateconsumer().Key(key).Group(groupName).Consumer(name).Build())
	}
}

// consumerInfo is one consumer of the group as XINFO CONSUMERS reports it.
type consumerInfo struct{ pending, idle int64 }

func consumers(t testing.TB, rdb rueidis.Client, key string) map[string]consumerInfo {
	t.Helper()
	arr, err := do(t, rdb, rdb.B().XinfoConsumers().Key(key).Group(groupName).Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]consumerInfo, len(arr))
	for _, c := range arr {
		m, err := c.AsMap()
		if err != nil {
			t.Fatal(err)
		}
		name, pending, idle := m["name"], m["pending"], m["idle"]
		n, err := name.ToString()
		if err != nil {
			t.Fatal(err)
		}
		var ci consumerInfo
		if ci.pending, err = pending.AsInt64(); err != nil {
			t.Fatal(err)
		}
		if ci.idle, err = idle.AsInt64(); err != nil {
			t.Fatal(err)
		}
		out[n] = ci
	}
	return out
}

// wantConsumers checks the group has exactly the consumers of want, with those pending
// entries.
func wantConsumers(t testing.TB, rdb rueidis.Client, key string, want map[string]int64) {
	t.Helper()
	got := make(map[string]int64)
	for name, c := range consumers(t, rdb, key) {
		got[name] = c.pending
	}
	if !maps.Equal(got, want) {
		t.Fatalf("consumers (name: pending) %v, want %v", got, want)
	}
}

// waitIdle waits until Redis reports each named consumer idle at least d.
func waitIdle(t testing.TB, rdb rueidis.Client, key string, d time.Duration, names ...string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("consumers %q idle %s", names, d), func() bool {
		cs := consumers(t, rdb, key)
		for _, name := range names {
			if c, ok := cs[name]; !ok || c.idle < d.Milliseconds() {
				return false
			}
		}
		return true
	})
}

// removedLogged is the consumers the log says were removed, in order.
func removedLogged(t testing.TB, logs *captureLogger) []string {
	t.Helper()
	var names []string
	for _, line := range logs.all() {
		var rec struct {
			Level, Msg string
			Removed    string `json:"removed_consumer"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Msg == "removed idle stream consumer" {
			if rec.Level != "INFO" {
				t.Errorf("removal logged at %s, want INFO", rec.Level)
			}
			names = append(names, rec.Removed)
		}
	}
	return names
}
