package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestStreamEndToEnd(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	p := mustPipeline(t, fastConfig(t, rd.Prefix, "c1"), rd.Client, db.Pool)
	run(t, p)

	evs := newEvents(300, 7)
	evs[0].IP, evs[0].Country, evs[0].UserAgent, evs[0].Referer = "8.8.8.8", "", "curl/8.4.0", ""
	evs[1].IP, evs[1].Country, evs[1].UserAgent, evs[1].Referer = "2001:db8:1:2::9", "de", uaIPhone, "https://News.Example.org/a?b"
	publishAll(context.Background(), p, evs)
	waitRows(t, db.Pool, len(evs))
	if got := value(t, p.m.published); got != 300 {
		t.Errorf("published = %v, want 300", got)
	}
	if got := value(t, p.m.fallback) + value(t, p.m.dropped); got != 0 {
		t.Errorf("fallback+dropped = %v, want 0", got)
	}

	type row struct {
		ip, country, refHost, browser, os, device, reason string
		bot                                               bool
		hashLen                                           int
	}
	get := func(id uuid.UUID) row {
		var r row
		err := db.Pool.QueryRow(context.Background(), `SELECT ip, country, referer_host, browser, os, device, bot_reason, is_bot, length(visitor_hash)
			FROM click_logs WHERE event_id = $1`, id).Scan(&r.ip, &r.country, &r.refHost, &r.browser, &r.os, &r.device, &r.reason, &r.bot, &r.hashLen)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if got, want := get(evs[0].ID), (row{"8.8.8.0", "US", directHost, "curl", "", deviceBot, botHTTPClient, true, 16}); got != want {
		t.Errorf("curl row = %+v, want %+v", got, want)
	}
	if got, want := get(evs[1].ID), (row{"2001:db8:1::", "DE", "news.example.org", "Safari", "iOS", deviceMobile, "", false, 16}); got != want {
		t.Errorf("iphone row = %+v, want %+v", got, want)
	}
	testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { h := health(t, p); return h.Pending == 0 && h.Lag == 0 && !h.LastBatch.IsZero() })
}

// A consumer that committed a batch and died before XACK leaves it pending; whoever
// replays it (another consumer via XAUTOCLAIM, or the same name restarting) must not
// create duplicates.
func TestExactlyOnceAfterCrashBeforeAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, dead, next string }{
		{"claimed by another consumer", "dead", "alive"},
		{"re-read by the same consumer", "same", "same"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db, rd := testenv.NewDB(t), testenv.NewRedis(t)
			ctx := context.Background()
			// Not running: each click has an XADD of its own.
			dead := mustPipeline(t, fastConfig(t, rd.Prefix, tc.dead), rd.Client, db.Pool)
			if _, err := dead.stream.ensureGroup(ctx); err != nil {
				t.Fatal(err)
			}
			evs := newEvents(500, 1)
			publishAll(ctx, dead, evs)

			// The dead consumer reads everything and commits 300 rows, then dies.
			dead.stream.perEntry.Store(1) // one click per entry
			entries := readN(t, dead.stream, len(evs))
			var committed []Event
			for _, e := range entries[:300] {
				ev, err := decodeEvent(e.FieldValues[streamField])
				if err != nil {
					t.Fatal(err)
				}
				committed = append(committed, ev)
			}
			if err := newTestWriter(t, db.Pool).write(ctx, committed); err != nil {
				t.Fatal(err)
			}
			if n := countRows(t, db.Pool); n != 300 {
				t.Fatalf("%d rows after the dead consumer's commit, want 300", n)
			}

			next := mustPipeline(t, fastConfig(t, rd.Prefix, tc.next), rd.Client, db.Pool)
			run(t, next)
			waitRows(t, db.Pool, len(evs))
			testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { return health(t, next).Pending == 0 })
			if n := countRows(t, db.Pool); n != len(evs) {
				t.Fatalf("%d rows, want %d", n, len(evs))
			}
		})
	}
}

// A stream deleted under a running reader is a reset: counted, the group recreated,
// and clicks flow on.
func TestNoGroupRecovery(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	p := mustPipeline(t, fastConfig(t, rd.Prefix, "c1"), rd.Client, db.Pool)
	run(t, p)
	publishAll(ctx, p, newEvents(100, 1))
	waitRows(t, db.Pool, 100)

	// As if Redis restarted empty: stream and group are gone.
	if err := rd.Client.Do(ctx, rd.Client.B().Del().Key(rd.Prefix+"clicks").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	publishAll(ctx, p, newEvents(100, 2))
	waitRows(t, db.Pool, 200)
	if got := value(t, p.m.published); got != 200 {
		t.Errorf("published = %v, want 200 (all through Redis)", got)
	}
	if got := value(t, p.m.resets); got != 1 {
		t.Errorf("stream resets = %v, want 1", got)
	}
}

func TestUndecodableEntryIsAcknowledged(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	key := rd.Prefix + "clicks"
	for _, v := range []string{"garbage", ""} {
		if err := rd.Client.Do(ctx, rd.Client.B().Xadd().Key(key).Id("*").FieldValue().FieldValue(streamField, v).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rd.Client.Do(ctx, rd.Client.B().Xadd().Key(key).Id("*").FieldValue().FieldValue("other", "x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	p := mustPipeline(t, fastConfig(t, rd.Prefix, "c1"), rd.Client, db.Pool)
	publishAll(ctx, p, newEvents(10, 1))
	run(t, p)
	waitRows(t, db.Pool, 10)
	testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { return health(t, p).Pending == 0 })
	if got := value(t, p.m.undecodable); got != 3 {
		t.Errorf("undecodable = %v, want 3", got)
	}
}

func TestPostgresOutageLosesNothing(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	proxied, proxy := proxiedPool(t, db)
	p := mustPipeline(t, fastConfig(t, rd.Prefix, "c1"), rd.Client, proxied)
	run(t, p)
	publishAll(ctx, p, newEvents(100, 1))
	waitRows(t, db.Pool, 100)

	proxy.cut()
	down := newEvents(200, 2)
	publishAll(ctx, p, down)
	testenv.Eventually(t, 30*time.Second, "failed writes while PostgreSQL is down", func() bool { return value(t, p.stream.w.m.errors) >= 2 })
	if n := countRows(t, db.Pool); n != 100 {
		t.Fatalf("%d rows while cut off, want 100", n)
	}
	// Every click published meanwhile is still in the stream, read or not. (Not the
	// group's pending + lag: Redis estimates lag once entries have been trimmed.)
	entries, err := rd.Client.Do(ctx, rd.Client.B().Xrange().Key(p.stream.key).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	kept := map[uuid.UUID]bool{}
	for _, e := range entries {
		evs, err := appendEvents(nil, e.FieldValues[streamField])
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			kept[ev.ID] = true
		}
	}
	for _, ev := range down {
		if !kept[ev.ID] {
			t.Fatalf("click %s left the stream while PostgreSQL was down", ev.ID)
		}
	}

	proxy.restore()
	waitRows(t, db.Pool, 300)
	testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { return health(t, p).Pending == 0 })
}

// A batch holds about BatchSize clicks however many clicks share an entry: reads ask
// for fewer entries once entries carry several clicks, and start conservatively.
func TestReadSizeFollowsClicksPerEntry(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	cfg := fastConfig(t, rd.Prefix, "c1")
	cfg.BatchSize = 1000
	cons := mustPipeline(t, cfg, rd.Client, db.Pool).stream
	if got := cons.count(); got != 1000/maxPerEntry {
		t.Fatalf("first read asks for %d entries, want %d", got, 1000/maxPerEntry)
	}
	entries := func(n, per int) []rueidis.XRangeEntry {
		out := make([]rueidis.XRangeEntry, n)
		for i := range out {
			var b []byte
			for _, ev := range newEvents(per, 1) {
				b = appendEvent(b, &ev)
			}
			out[i] = rueidis.XRangeEntry{ID: fmt.Sprintf("1-%d", i), FieldValues: map[string]string{streamField: string(b)}}
		}
		return out
	}
	if !cons.process(context.Background(), entries(10, 1), testRetry) {
		t.Fatal("process failed")
	}
	// Single clicks: minReadEntries entries, not BatchSize of them.
	if got, want := cons.count(), int64(minReadEntries); got != want {
		t.Fatalf("after single-click entries: count %d, want %d", got, want)
	}
	if !cons.process(context.Background(), entries(4, 100), testRetry) {
		t.Fatal("process failed")
	}
	if got := cons.count(); got != 10 {
		t.Fatalf("after 100-click entries: count %d, want 10", got)
	}
	if n := countRows(t, db.Pool); n != 410 {
		t.Fatalf("%d rows, want 410", n)
	}

	// After single clicks, a burst of full entries: one read stays within
	// minReadEntries full entries.
	ctx := context.Background()
	if !cons.process(ctx, entries(10, 1), testRetry) {
		t.Fatal("process failed")
	}
	if _, err := cons.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries(minReadEntries+20, maxPerEntry) {
		cmd := rd.Client.B().Xadd().Key(cons.key).Id("*").FieldValue().FieldValue(streamField, e.FieldValues[streamField]).Build()
		if err := rd.Client.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	read, err := cons.read(ctx, ">", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	for _, e := range read {
		if events, err = appendEvents(events, e.FieldValues[streamField]); err != nil {
			t.Fatal(err)
		}
	}
	if len(events) == 0 || len(events) > minReadEntries*maxPerEntry {
		t.Fatalf("one read after single clicks took %d clicks in %d entries, want 1 to %d", len(events), len(read), minReadEntries*maxPerEntry)
	}
}

// readN reads n new entries for c, in as many reads as that takes.
func readN(t testing.TB, c *stream, n int) []rueidis.XRangeEntry {
	t.Helper()
	var entries []rueidis.XRangeEntry
	for len(entries) < n {
		got, err := c.read(context.Background(), ">", 50*time.Millisecond)
		if err != nil || len(got) == 0 {
			t.Fatalf("read %d entries, then %d: %v; want %d", len(entries), len(got), err, n)
		}
		entries = append(entries, got...)
	}
	if len(entries) != n {
		t.Fatalf("read %d entries, want %d", len(entries), n)
	}
	return entries
}

// Linger gathers a steady trickle into fewer batches but never holds back a backlog,
// and a consumer that is lingering stops at once on shutdown, leaving the rest to the
// next start.
func TestLingerHoldsOnlyATrickle(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	cfg := fastConfig(t, rd.Prefix, "c1")
	cfg.BatchSize = 5
	p := mustPipeline(t, cfg, rd.Client, db.Pool)
	run(t, p.handoff)
	for _, e := range newEvents(12, 1) { // one stream entry each: a backlog of 12
		p.Publish(ctx, e)
	}
	reader := func(linger time.Duration) *streamReader {
		r, err := newStreamReader(readerConfig{retryConfig: testRetry, Block: 50 * time.Millisecond, Linger: linger}, p.stream)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	stop := run(t, reader(time.Hour))
	waitRows(t, db.Pool, 12) // full reads follow each other: the hour is never waited

	// The last read emptied the stream, so the next click waits for the linger.
	p.Publish(ctx, newEvents(1, 1)[0])
	time.Sleep(300 * time.Millisecond) // a negative check: nothing may arrive meanwhile
	if n := countRows(t, db.Pool); n != 12 {
		t.Fatalf("%d rows while lingering, want 12", n)
	}
	stop()

	run(t, reader(0)) // the default linger
	waitRows(t, db.Pool, 13)
}

// How many entries a read asks for, by batch size and clicks per entry: about
// BatchSize clicks, single clicks still several to a read, and never more than
// 128 full entries or 4×BatchSize clicks in full ones, whichever is more.
func TestReadBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		batch, perEntry int
		want            int64
	}{
		{5, 1, 5}, {5, 256, 1},
		{50, 1, 50}, {50, 10, 5},
		{5000, 1, 128}, {5000, 40, 125}, {5000, 256, 19},
		{100000, 1, 1562}, {100000, 256, 390},
	} {
		c := newStream(nil, "clicks", "c1", tc.batch, nil, nil, nil, nil, testLogger(t))
		c.perEntry.Store(int64(tc.perEntry))
		if got := c.count(); got != tc.want {
			t.Errorf("BatchSize %d, %d clicks per entry: count %d, want %d", tc.batch, tc.perEntry, got, tc.want)
		}
	}
}

func TestAppendEventsDecodesWholeEntriesOnly(t *testing.T) {
	t.Parallel()
	evs := newEvents(3, 9)
	var b []byte
	for i := range evs {
		b = appendEvent(b, &evs[i])
	}
	got, err := appendEvents(nil, string(b))
	if err != nil || len(got) != 3 || got[2].ID != evs[2].ID {
		t.Fatalf("appendEvents = %d events, %v", len(got), err)
	}
	// A corrupt tail spoils the entry: none of it is taken.
	got, err = appendEvents(got[:1], string(b[:len(b)-3]))
	if err == nil || len(got) != 1 {
		t.Fatalf("truncated entry gave %d events, %v", len(got), err)
	}
	if _, err := appendEvents(nil, ""); err == nil {
		t.Fatal("empty entry accepted")
	}
}

// The stream's epoch: a stream from before epochs gets one without a reset being
// reported, looking again changes nothing, and a stream made anew after Redis lost it
// (FLUSHALL, a restart without persistence; here a DEL of both keys) has
// a new one.
func TestStreamEpoch(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	s := mustPipeline(t, fastConfig(t, rd.Prefix, "c1"), rd.Client, db.Pool).stream
	ctx := context.Background()
	// A group made by an earlier hop, with no epoch.
	if err := rd.Client.Do(ctx, rd.Client.B().XgroupCreate().Key(s.key).Group(groupName).Id("0").Mkstream().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if look, err := s.ensureGroup(ctx); err != nil || look != sameStream {
		t.Fatalf("existing group without epoch: %v, %v; want sameStream", look, err)
	}
	first, err := s.currentEpoch(ctx)
	if err != nil || first == "" {
		t.Fatalf("epoch after the first look = %q, %v; want one set", first, err)
	}
	if look, err := s.ensureGroup(ctx); err != nil || look != sameStream {
		t.Fatalf("second look: %v, %v; want sameStream", look, err)
	}
	// Redis loses both keys; the group made anew comes with a new epoch.
	if err := rd.Client.Do(ctx, rd.Client.B().Del().Key(s.key, s.epochKey).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.currentEpoch(ctx); err != nil || tok != "" {
		t.Fatalf("epoch of a lost stream = %q, %v; want none", tok, err)
	}
	if look, err := s.ensureGroup(ctx); err != nil || look != streamMadeAnew {
		t.Fatalf("after the loss: %v, %v; want newStream", look, err)
	}
	// Seen once: the next look finds the same stream.
	if look, err := s.ensureGroup(ctx); err != nil || look != sameStream {
		t.Fatalf("look after the new stream was seen: %v, %v; want sameStream", look, err)
	}
	if tok, _ := s.currentEpoch(ctx); tok == first || tok == "" {
		t.Fatalf("epoch after the loss = %q, want a new one (was %q)", tok, first)
	}
}

// After a reset, an entry of this instance counts as still in the stream only if the
// stream holds that ID with the same clicks. An entry XADDed in the same millisecond
// as a FLUSHALL gets an ID below the flushed ones (here 9000-0), and a new entry may
// reuse a flushed entry's ID (9000-3): comparing IDs with the stream's first entry lost
// such clicks without a word.
func TestResetComparesEntriesNotIDs(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	p, logs := loggedPipeline(t, fastConfig(t, rd.Prefix, "c1"), rd.Client, db.Pool)
	s := p.stream
	xadd := func(id, payload string) {
		t.Helper()
		cmd := rd.Client.B().Xadd().Key(s.key).Id(id).FieldValue().FieldValue(streamField, payload).Build()
		if err := rd.Client.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// What this instance published before the flush, as its ledger holds it.
	s.ledger.add(streamID{ms: 9000, seq: 1}, 2, []byte("flushed"))
	s.ledger.add(streamID{ms: 9000, seq: 2}, 3, []byte("still there"))
	s.ledger.add(streamID{ms: 9000, seq: 3}, 4, []byte("flushed too"))
	// The stream after the flush: another's entry below them, one of ours that made it
	// (published after the flush), and another's entry with one of our flushed IDs.
	xadd("9000-0", "someone else's")
	xadd("9000-2", "still there")
	xadd("9000-3", "someone else's, same ID")

	s.reportReset(ctx, "test", true)
	if lost, recovered, ok := resetReport(logs); !ok || lost != 0 || recovered != 6 {
		t.Fatalf("reset logged (%v): %d lost, %d recovered; want 0 and 6 (entries 9000-1 and 9000-3)", ok, lost, recovered)
	}
	if got := s.ledger.snapshot(); len(got) != 1 || got[0].id != (streamID{ms: 9000, seq: 2}) {
		t.Fatalf("ledger holds %v after the reset, want only 9000-2 (still in the stream)", got)
	}
}
