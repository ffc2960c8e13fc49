package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/testenv"
)

// testLogger shows ingest's logs only with -v.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func countRows(t testing.TB, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM click_logs").Scan(&n); err != nil {
		t.Fatalf("count click_logs: %v", err)
	}
	return n
}

// waitRows waits for exactly n rows and checks there are no duplicate events.
func waitRows(t testing.TB, pool *pgxpool.Pool, n int) {
	t.Helper()
	var got int
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d rows in click_logs", n), func() bool {
		got = countRows(t, pool)
		if got > n {
			t.Fatalf("click_logs has %d rows, want %d", got, n)
		}
		return got == n
	})
	var distinct int
	if err := pool.QueryRow(context.Background(), "SELECT count(DISTINCT event_id) FROM click_logs").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if distinct != n {
		t.Fatalf("click_logs has %d distinct events in %d rows", distinct, n)
	}
}

func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("unsupported metric %v", c.Desc())
	return 0
}

func newEvents(n int, linkID int64) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{
			ID: uuid.Must(uuid.NewV7()), LinkID: linkID, Time: time.Now(),
			IP: "203.0.113." + strconv.Itoa(i%250), UserAgent: uaChromeWin, Referer: "https://www.example.com/p",
			AcceptLanguage: "en",
		}
	}
	return evs
}

func publishAll(ctx context.Context, p *Publisher, evs []Event) {
	var wg sync.WaitGroup
	for i := range evs {
		wg.Go(func() { p.Publish(ctx, evs[i]) })
	}
	wg.Wait()
}

// run starts r in the background and stops it when t ends, failing t if it errs.
func run(t testing.TB, r interface{ Run(context.Context) error }) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// fastConsumer shortens the consumer's intervals so tests do not wait on defaults.
func fastConsumer(prefix, name string) ConsumerConfig {
	return ConsumerConfig{
		Prefix: prefix, Name: name, Block: 50 * time.Millisecond,
		ClaimIdle: 100 * time.Millisecond, ClaimInterval: 50 * time.Millisecond,
		TrimInterval: 50 * time.Millisecond, StatsInterval: 50 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}
}

// fastPublisher is a publisher for tests. Its XADD budget is generous: on a loaded
// machine a 50 ms budget sends some clicks down the (correct, but other) in-process
// path, and these tests assert which path each click took.
func fastPublisher(prefix string) PublisherConfig {
	return PublisherConfig{
		Prefix: prefix, Timeout: time.Second, FlushInterval: 5 * time.Millisecond, ProbeInterval: 20 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
	}
}

func newTestWriter(t testing.TB, pool *pgxpool.Pool) *writer {
	return &writer{
		pool:   pool,
		enr:    &enricher{ua: sharedUAParser(), country: iplocCountry, salts: newSaltStore(pool)},
		logger: testLogger(t),
		m:      newWriterMetrics("test"),
	}
}

func health(t testing.TB, c *Consumer) IngestHealth {
	t.Helper()
	h, err := c.Health(context.Background())
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	return h
}

func TestStreamEndToEnd(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	reg := prometheus.NewRegistry()
	pub := mustPublisher(t, fastPublisher(rd.Prefix), rd.Client, db.Pool, reg, testLogger(t))
	cons := mustConsumer(t, fastConsumer(rd.Prefix, "c1"), rd.Client, db.Pool, reg, testLogger(t))
	run(t, pub)
	run(t, cons)

	evs := newEvents(300, 7)
	evs[0].IP, evs[0].Country, evs[0].UserAgent, evs[0].Referer = "8.8.8.8", "", "curl/8.4.0", ""
	evs[1].IP, evs[1].Country, evs[1].UserAgent, evs[1].Referer = "2001:db8:1:2::9", "de", uaIPhone, "https://News.Example.org/a?b"
	publishAll(context.Background(), pub, evs)
	waitRows(t, db.Pool, len(evs))
	if got := value(t, pub.m.published); got != 300 {
		t.Errorf("published = %v, want 300", got)
	}
	if got := value(t, pub.m.fallback) + value(t, pub.m.dropped); got != 0 {
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
	testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { h := health(t, cons); return h.Pending == 0 && h.Lag == 0 && !h.LastBatch.IsZero() })
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
			pub, err := NewPublisher(fastPublisher(rd.Prefix), rd.Client, db.Pool, nil, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			dead, err := NewConsumer(fastConsumer(rd.Prefix, tc.dead), rd.Client, db.Pool, nil, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := dead.ensureGroup(ctx); err != nil {
				t.Fatal(err)
			}
			evs := newEvents(500, 1)
			publishAll(ctx, pub, evs)

			// The dead consumer reads everything and commits 300 rows, then dies.
			dead.perEntry.Store(1) // one click per entry (no group commit without Run)
			entries := readN(t, dead, len(evs))
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

			next, err := NewConsumer(fastConsumer(rd.Prefix, tc.next), rd.Client, db.Pool, nil, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			run(t, next)
			waitRows(t, db.Pool, len(evs))
			testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { return health(t, next).Pending == 0 })
			if n := countRows(t, db.Pool); n != len(evs) {
				t.Fatalf("%d rows, want %d", n, len(evs))
			}
		})
	}
}

func TestNoGroupRecovery(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	pub := mustPublisher(t, fastPublisher(rd.Prefix), rd.Client, db.Pool, nil, testLogger(t))
	cons := mustConsumer(t, fastConsumer(rd.Prefix, "c1"), rd.Client, db.Pool, nil, testLogger(t))
	run(t, pub)
	run(t, cons)
	publishAll(ctx, pub, newEvents(100, 1))
	waitRows(t, db.Pool, 100)

	// As if Redis restarted empty: stream and group are gone.
	if err := rd.Client.Do(ctx, rd.Client.B().Del().Key(rd.Prefix+"clicks").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	publishAll(ctx, pub, newEvents(100, 2))
	waitRows(t, db.Pool, 200)
	if got := value(t, pub.m.published); got != 200 {
		t.Errorf("published = %v, want 200 (all through Redis)", got)
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
	pub := mustPublisher(t, fastPublisher(rd.Prefix), rd.Client, db.Pool, nil, testLogger(t))
	publishAll(ctx, pub, newEvents(10, 1))
	cons := mustConsumer(t, fastConsumer(rd.Prefix, "c1"), rd.Client, db.Pool, nil, testLogger(t))
	run(t, cons)
	waitRows(t, db.Pool, 10)
	testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { return health(t, cons).Pending == 0 })
	if got := value(t, cons.m.undecodable); got != 3 {
		t.Errorf("undecodable = %v, want 3", got)
	}
}

// tcpProxy sits between a pool and PostgreSQL so a test can cut the database off.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func startProxy(t testing.TB, target string) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *tcpProxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.mu.Unlock()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close(); c.Close() }()
	io.Copy(c, up)
	c.Close()
	up.Close()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func TestPostgresOutageLosesNothing(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port))))
	host, port, _ := net.SplitHostPort(proxy.ln.Addr().String())
	cfg.ConnConfig.Host = host
	p, _ := strconv.Atoi(port)
	cfg.ConnConfig.Port = uint16(p)
	cfg.ConnConfig.ConnectTimeout = time.Second
	proxied, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxied.Close)

	pub := mustPublisher(t, fastPublisher(rd.Prefix), rd.Client, db.Pool, nil, testLogger(t))
	cons := mustConsumer(t, fastConsumer(rd.Prefix, "c1"), rd.Client, proxied, nil, testLogger(t))
	run(t, cons)
	publishAll(ctx, pub, newEvents(100, 1))
	waitRows(t, db.Pool, 100)

	proxy.cut()
	down := newEvents(200, 2)
	publishAll(ctx, pub, down)
	testenv.Eventually(t, 30*time.Second, "failed writes while PostgreSQL is down", func() bool { return value(t, cons.w.m.errors) >= 2 })
	if n := countRows(t, db.Pool); n != 100 {
		t.Fatalf("%d rows while cut off, want 100", n)
	}
	// Every click published meanwhile is still in the stream, read or not. (Not the
	// group's pending + lag: Redis estimates lag once entries have been trimmed.)
	entries, err := rd.Client.Do(ctx, rd.Client.B().Xrange().Key(cons.key).Start("-").End("+").Build()).AsXRange()
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
	testenv.Eventually(t, 30*time.Second, "nothing pending", func() bool { return health(t, cons).Pending == 0 })
}

// redisServer is a private, disposable redis-server for fault tests.
type redisServer struct {
	port string
	cmd  *exec.Cmd
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func (s *redisServer) start(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command("redis-server", "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server (is it installed?): %v", err)
	}
	cmd := s.cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testenv.Eventually(t, 30*time.Second, "private redis-server to accept connections", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+s.port)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// client connects to the private server; the client is closed when t ends.
func (s *redisServer) client(t testing.TB) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:" + s.port}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func (s *redisServer) kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

func TestRedisDownFallback(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	srv := &redisServer{port: freePort(t)}
	srv.start(t)
	rdb := srv.client(t)

	pub := mustPublisher(t, fastPublisher(""), rdb, db.Pool, nil, testLogger(t))
	cons := mustConsumer(t, fastConsumer("", "c1"), rdb, db.Pool, nil, testLogger(t))
	run(t, pub)
	run(t, cons)

	publishAll(ctx, pub, newEvents(100, 1))
	waitRows(t, db.Pool, 100)
	if got := value(t, pub.m.published); got != 100 {
		t.Fatalf("published = %v, want 100", got)
	}

	srv.kill()
	down := newEvents(100, 2)
	// In rounds: concurrent clicks share one XADD (group commit), and the breaker
	// counts failed XADDs.
	for i := 0; i < len(down); i += 20 {
		publishAll(ctx, pub, down[i:i+20])
	}
	if got := value(t, pub.m.fallback); got != 100 {
		t.Fatalf("fallback = %v with Redis down, want 100", got)
	}
	if !pub.open.Load() {
		t.Error("breaker still closed with Redis down")
	}
	waitRows(t, db.Pool, 200)

	srv.start(t) // same port, empty: no stream, no group
	testenv.Eventually(t, 30*time.Second, "breaker to close", func() bool { return !pub.open.Load() })
	// New clicks plus replays of clicks that already took the fallback path.
	publishAll(ctx, pub, append(newEvents(100, 3), down...))
	waitRows(t, db.Pool, 300)
	testenv.Eventually(t, 30*time.Second, "stream drained", func() bool { h := health(t, cons); return h.Pending == 0 && h.Lag == 0 })
	if n := countRows(t, db.Pool); n != 300 {
		t.Fatalf("%d rows, want 300", n)
	}
	if got := value(t, pub.m.published) + value(t, pub.m.fallback); got != 400 {
		t.Errorf("published+fallback = %v, want 400", got)
	}
	if got := value(t, pub.m.dropped); got != 0 {
		t.Errorf("dropped = %v, want 0", got)
	}
}

func TestPublisherWithoutRedis(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	pub := mustPublisher(t, fastPublisher(""), nil, db.Pool, nil, testLogger(t))
	run(t, pub)
	publishAll(context.Background(), pub, newEvents(250, 1))
	waitRows(t, db.Pool, 250)
	if got := value(t, pub.m.fallback); got != 250 {
		t.Errorf("fallback = %v, want 250", got)
	}
}

func TestPublisherDropsWhenQueueFull(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	cfg := fastPublisher("")
	cfg.QueueSize = 4
	pub := mustPublisher(t, cfg, nil, db.Pool, nil, testLogger(t))
	publishAll(context.Background(), pub, newEvents(10, 1)) // Run not started: nothing drains
	if f, d := value(t, pub.m.fallback), value(t, pub.m.dropped); f != 4 || d != 6 {
		t.Fatalf("fallback %v, dropped %v; want 4, 6", f, d)
	}
	run(t, pub)
	waitRows(t, db.Pool, 4)
}

func TestPublisherFlushesOnShutdown(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	cfg := fastPublisher("")
	cfg.FlushInterval = time.Hour // only shutdown can flush
	pub := mustPublisher(t, cfg, nil, db.Pool, nil, testLogger(t))
	stop := run(t, pub)
	publishAll(context.Background(), pub, newEvents(37, 1))
	testenv.Eventually(t, 30*time.Second, "queue taken by Run", func() bool { return len(pub.queue) < 37 })
	stop()
	if n := countRows(t, db.Pool); n != 37 {
		t.Fatalf("%d rows after shutdown, want 37", n)
	}
}

func TestTrimKeepsUnacknowledged(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	key := rd.Prefix + "clicks"
	cfg := fastConsumer(rd.Prefix, "c1")
	cfg.BatchSize = 1000
	cons := mustConsumer(t, cfg, rd.Client, db.Pool, nil, testLogger(t))
	pub := mustPublisher(t, fastPublisher(rd.Prefix), rd.Client, db.Pool, nil, testLogger(t))
	for _, ev := range newEvents(1000, 1) { // sequential: stream order = slice order
		pub.Publish(ctx, ev)
	}
	if err := cons.ensureGroup(ctx); err != nil {
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
	if err := cons.trim(ctx); err != nil {
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
	if err := cons.trim(ctx); err != nil {
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
	if err := cons.trim(ctx); err != nil {
		t.Fatal(err)
	}
	if n := present(ids[799], "+"); n != 201 {
		t.Fatalf("%d entries from audit's last delivered on, want 201", n)
	}
}

func TestSaltsAgreeAndExpire(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	a, b := newSaltStore(db.Pool), newSaltStore(db.Pool)
	now := time.Now()
	var wg sync.WaitGroup
	var sa, sb []byte
	var ea, eb error
	wg.Go(func() { sa, ea = a.forDay(ctx, now) })
	wg.Go(func() { sb, eb = b.forDay(ctx, now) })
	wg.Wait()
	if err := errors.Join(ea, eb); err != nil {
		t.Fatal(err)
	}
	if len(sa) != 32 || string(sa) != string(sb) {
		t.Fatalf("instances disagree on today's salt: %x vs %x", sa, sb)
	}
	for _, d := range []int{-1, -2, -3, -10} {
		if _, err := a.forDay(ctx, now.AddDate(0, 0, d)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := a.purge(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("purged %d salts, want 2 (3 and 10 days old)", n)
	}
	var left int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM visitor_salts").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 3 {
		t.Errorf("%d salts left, want 3 (today and two days before)", left)
	}
	if _, ok := a.salt[utcDay(now.AddDate(0, 0, -3))]; ok {
		t.Error("purged salt still cached")
	}
}

// Every column of every row arrives as given, through COPY and through the
// idempotent path for a replayed batch, a missing visitor hash as NULL.
func TestWriterStoresRowsExactly(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	w := newTestWriter(t, db.Pool)
	var rows []clickRow
	for i := range 4 {
		rows = append(rows, clickRow{
			eventID: uuid.Must(uuid.NewV7()), linkID: int64(i) - 2, clickedAt: time.Date(2025, 6, 7, 8, 9, 10, 123456000+i*1000, time.UTC),
			ip: "203.0.113.0", country: "NL", referer: "https://example.com/ü?" + strconv.Itoa(i), refererHost: "example.com",
			userAgent: uaEdge, browser: "Edge", os: "Windows", device: deviceDesktop, isBot: i%2 == 1, botReason: "",
			visitorHash: []byte{byte(i), 1, 2, 3},
		})
	}
	rows[1].botReason, rows[3].botReason = botHTTPClient, botEmpty
	rows[2].visitorHash = nil
	read := func() []clickRow {
		t.Helper()
		res, err := db.Pool.Query(ctx, `SELECT event_id, link_id, clicked_at, ip, country, referer, referer_host,
			user_agent, browser, os, device, is_bot, bot_reason, visitor_hash FROM click_logs ORDER BY clicked_at`)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Close()
		var got []clickRow
		for res.Next() {
			var r clickRow
			if err := res.Scan(&r.eventID, &r.linkID, &r.clickedAt, &r.ip, &r.country, &r.referer, &r.refererHost,
				&r.userAgent, &r.browser, &r.os, &r.device, &r.isBot, &r.botReason, &r.visitorHash); err != nil {
				t.Fatal(err)
			}
			r.clickedAt = r.clickedAt.UTC()
			got = append(got, r)
		}
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"click_logs"}, clickColumns, &rowSource{rows: rows[:3]}); err != nil {
		t.Fatal(err)
	}
	if got := read(); !reflect.DeepEqual(got, rows[:3]) {
		t.Fatalf("after COPY:\n got %+v\nwant %+v", got, rows[:3])
	}
	if err := w.insertIdempotent(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if got := read(); !reflect.DeepEqual(got, rows) {
		t.Fatalf("after replay:\n got %+v\nwant %+v", got, rows)
	}
}

func TestWriterRejectsOnlyBadRows(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	w := newTestWriter(t, db.Pool)
	evs := newEvents(5, 1)
	evs[2].Time = time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC) // beyond timestamptz
	if err := w.write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db.Pool); n != 4 {
		t.Fatalf("%d rows, want 4", n)
	}
	if got := value(t, w.m.rejected); got != 1 {
		t.Errorf("rejected = %v, want 1", got)
	}
}

func BenchmarkPublish(b *testing.B) {
	db, rd := testenv.NewDB(b), testenv.NewRedis(b)
	pub, err := NewPublisher(PublisherConfig{Prefix: rd.Prefix}, rd.Client, db.Pool, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ev := newEvents(1, 1)[0]
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(32) // redirects arrive concurrently; auto-pipelining batches them
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			pub.Publish(ctx, ev)
		}
	})
	b.StopTimer()
	if f := value(b, pub.m.fallback); f != 0 {
		b.Logf("%v of %d clicks fell back to the queue", f, b.N)
	}
}

func BenchmarkWriteBatch(b *testing.B) {
	db := testenv.NewDB(b)
	w := newTestWriter(b, db.Pool)
	const batch = 5000
	ctx := context.Background()
	if _, err := w.enr.salts.forDay(ctx, time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		evs := newEvents(batch, 1)
		for i := range evs {
			evs[i].UserAgent = []string{uaChromeWin, uaIPhone, uaAndroidPhone, "curl/8.4.0"}[i%4]
		}
		b.StartTimer()
		if err := w.write(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
}

// Concurrent clicks share stream entries (group commit) and each is stored once.
func TestGroupCommitSharesEntries(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	pub := mustPublisher(t, fastPublisher(rd.Prefix), rd.Client, db.Pool, nil, testLogger(t))
	run(t, pub)
	evs := newEvents(3000, 3)
	publishAll(context.Background(), pub, evs)
	entries, err := rd.Client.Do(context.Background(), rd.Client.B().Xlen().Key(rd.Prefix+"clicks").Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if entries >= int64(len(evs)) || entries == 0 {
		t.Fatalf("%d clicks made %d stream entries: no group commit", len(evs), entries)
	}
	t.Logf("%d clicks in %d stream entries", len(evs), entries)
	cons := mustConsumer(t, fastConsumer(rd.Prefix, "c1"), rd.Client, db.Pool, nil, testLogger(t))
	run(t, cons)
	waitRows(t, db.Pool, len(evs))
	var distinct int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(DISTINCT event_id) FROM click_logs").Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if distinct != len(evs) || countRows(t, db.Pool) != len(evs) {
		t.Fatalf("stored %d rows, %d distinct; want %d", countRows(t, db.Pool), distinct, len(evs))
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

// A Redis that hangs holds no redirect longer than the publish budget: every click
// takes the in-process path while Redis is still paused, and is stored exactly once.
func TestSlowRedisDoesNotHoldRedirects(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	srv := &redisServer{port: freePort(t)}
	srv.start(t)
	rdb := srv.client(t)
	cfg := fastPublisher("")
	cfg.Timeout = 50 * time.Millisecond
	pub := mustPublisher(t, cfg, rdb, db.Pool, nil, testLogger(t))
	run(t, pub)
	ctx := context.Background()
	admin := srv.client(t)
	const pause = 3 * time.Second
	if err := admin.Do(ctx, admin.B().ClientPause().Timeout(pause.Milliseconds()).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	pausedUntil := time.Now().Add(pause)
	evs := newEvents(200, 5)
	publishAll(ctx, pub, evs)
	if time.Now().After(pausedUntil) {
		t.Fatal("Publish waited for a paused Redis")
	}
	if got := value(t, pub.m.fallback); got != float64(len(evs)) {
		t.Fatalf("fallback = %v while Redis is paused, want %d", got, len(evs))
	}
	waitRows(t, db.Pool, len(evs))
	// XADDs that were cut off may still land in the stream once Redis resumes; a
	// consumer then finds those rows already stored.
	cons := mustConsumer(t, fastConsumer("", "c1"), rdb, db.Pool, nil, testLogger(t))
	run(t, cons)
	testenv.Eventually(t, 30*time.Second, "stream drained", func() bool { h := health(t, cons); return h.Pending == 0 && h.Lag == 0 })
	if n := countRows(t, db.Pool); n != len(evs) {
		t.Fatalf("%d rows, want %d", n, len(evs))
	}
}

// A batch holds about BatchSize clicks however many clicks share an entry: reads ask
// for fewer entries once entries carry several clicks, and start conservatively.
func TestReadSizeFollowsClicksPerEntry(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	cfg := fastConsumer(rd.Prefix, "c1")
	cfg.BatchSize = 1000
	cons := mustConsumer(t, cfg, rd.Client, db.Pool, nil, testLogger(t))
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
	if !cons.process(context.Background(), entries(10, 1)) {
		t.Fatal("process failed")
	}
	// Single clicks: minReadEntries entries, not BatchSize of them.
	if got, want := cons.count(), int64(minReadEntries); got != want {
		t.Fatalf("after single-click entries: count %d, want %d", got, want)
	}
	if !cons.process(context.Background(), entries(4, 100)) {
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
	if !cons.process(ctx, entries(10, 1)) {
		t.Fatal("process failed")
	}
	if err := cons.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries(minReadEntries+20, maxPerEntry) {
		cmd := rd.Client.B().Xadd().Key(cons.key).Id("*").FieldValue().FieldValue(streamField, e.FieldValues[streamField]).Build()
		if err := rd.Client.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	read, err := cons.read(ctx, ">")
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
func readN(t testing.TB, c *Consumer, n int) []rueidis.XRangeEntry {
	t.Helper()
	var entries []rueidis.XRangeEntry
	for len(entries) < n {
		got, err := c.read(context.Background(), ">")
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

func mustPublisher(t testing.TB, cfg PublisherConfig, rdb rueidis.Client, pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) *Publisher {
	t.Helper()
	p, err := NewPublisher(cfg, rdb, pool, reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustConsumer(t testing.TB, cfg ConsumerConfig, rdb rueidis.Client, pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) *Consumer {
	t.Helper()
	c, err := NewConsumer(cfg, rdb, pool, reg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Linger gathers a steady trickle into fewer batches but never holds back a backlog,
// and a consumer that is lingering stops at once on shutdown, leaving the rest to the
// next start.
func TestLingerHoldsOnlyATrickle(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	pub := mustPublisher(t, fastPublisher(rd.Prefix), rd.Client, db.Pool, nil, testLogger(t))
	run(t, pub)
	for _, e := range newEvents(12, 1) { // one stream entry each: a backlog of 12
		pub.Publish(ctx, e)
	}

	cfg := fastConsumer(rd.Prefix, "c1")
	cfg.BatchSize, cfg.Linger = 5, time.Hour
	stop := run(t, mustConsumer(t, cfg, rd.Client, db.Pool, nil, testLogger(t)))
	waitRows(t, db.Pool, 12) // full reads follow each other: the hour is never waited

	// The last read emptied the stream, so the next click waits for the linger.
	pub.Publish(ctx, newEvents(1, 1)[0])
	time.Sleep(300 * time.Millisecond)
	if n := countRows(t, db.Pool); n != 12 {
		t.Fatalf("%d rows while lingering, want 12", n)
	}
	stop()

	cfg.Linger = 0 // the default
	run(t, mustConsumer(t, cfg, rd.Client, db.Pool, nil, testLogger(t)))
	waitRows(t, db.Pool, 13)
}

// A lone click is never held back to gather others; clicks that arrive together
// share stream entries, and every one of them arrives once.
func TestGatherOnlyWhileClicksArriveTogether(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx := context.Background()
	cfg := fastPublisher(rd.Prefix)
	cfg.Gather = cfg.Timeout / 4
	pub := mustPublisher(t, cfg, rd.Client, db.Pool, nil, testLogger(t))
	run(t, pub)
	entries := func() int64 {
		n, err := rd.Client.Do(ctx, rd.Client.B().Xlen().Key(rd.Prefix+"clicks").Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	start := time.Now()
	for _, e := range newEvents(10, 1) {
		pub.Publish(ctx, e)
	}
	if d := time.Since(start); d >= 10*cfg.Gather {
		t.Fatalf("10 clicks one after another took %s: lone clicks were held for Gather (%s)", d, cfg.Gather)
	}
	if n := entries(); n != 10 {
		t.Fatalf("%d stream entries for 10 lone clicks, want 10", n)
	}

	publishAll(ctx, pub, newEvents(500, 2))
	if n := entries() - 10; n > 50 {
		t.Errorf("%d stream entries for 500 concurrent clicks, want them shared", n)
	}
	if got := value(t, pub.m.published); got != 510 {
		t.Errorf("published = %v, want 510", got)
	}

	cfg.Gather = cfg.Timeout/4 + time.Millisecond
	if _, err := NewPublisher(cfg, rd.Client, db.Pool, nil, testLogger(t)); err == nil {
		t.Error("a Gather over a quarter of Timeout was accepted")
	}
}

// Event ids are the idempotency key: made concurrently, each is a distinct UUIDv7
// carrying the time it was made.
func TestEventIDsAreDistinctV7(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	p := mustPublisher(t, PublisherConfig{}, nil, db.Pool, nil, testLogger(t))
	const goroutines, each = 8, 5000
	before := time.Now().Add(-time.Millisecond)
	ids := make([][]uuid.UUID, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				ids[g] = append(ids[g], p.newEventID())
			}
		})
	}
	wg.Wait()
	// Ids made faster than one per 256 ns borrow from the next millisecond to stay
	// ordered, so a burst may run a little ahead of the clock.
	after := time.Now().Add(time.Second)
	seen := make(map[uuid.UUID]bool, goroutines*each)
	// The time and sequence part is unique by construction; the random part must be
	// too (two equal ones in 40,000 draws of 62 bits: about 1e-10).
	randomParts := make(map[[8]byte]bool, goroutines*each)
	for _, list := range ids {
		for _, id := range list {
			if seen[id] || randomParts[[8]byte(id[8:])] {
				t.Fatalf("id %s made twice, or its random part reused", id)
			}
			seen[id], randomParts[[8]byte(id[8:])] = true, true
			if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
				t.Fatalf("id %s is version %d, variant %v; want a UUIDv7", id, id.Version(), id.Variant())
			}
			if at := time.Unix(id.Time().UnixTime()); at.Before(before.Truncate(time.Millisecond)) || at.After(after) {
				t.Fatalf("id %s carries time %s, want between %s and %s", id, at, before, after)
			}
		}
	}
}

// How many entries a read asks for, by batch size and clicks per entry: about
// BatchSize clicks, single clicks still several to a read, and never more than
// 128 full entries or 4×BatchSize clicks in full ones, whichever is more.
func TestReadBound(t *testing.T) {
	t.Parallel()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	for _, tc := range []struct {
		batch, perEntry int
		want            int64
	}{
		{5, 1, 5}, {5, 256, 1},
		{50, 1, 50}, {50, 10, 5},
		{5000, 1, 128}, {5000, 40, 125}, {5000, 256, 19},
		{100000, 1, 1562}, {100000, 256, 390},
	} {
		cfg := fastConsumer(rd.Prefix, "c1")
		cfg.BatchSize = tc.batch
		c := mustConsumer(t, cfg, rd.Client, db.Pool, nil, testLogger(t))
		c.perEntry.Store(int64(tc.perEntry))
		if got := c.count(); got != tc.want {
			t.Errorf("BatchSize %d, %d clicks per entry: count %d, want %d", tc.batch, tc.perEntry, got, tc.want)
		}
	}
}

// A writer reuses its batch rows: a small batch after a large one stores its own
// values, with each click's own visitor hash.
func TestWriterReusesRowsSafely(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	w := newTestWriter(t, db.Pool)
	batch := func(n int, host string) []Event {
		evs := newEvents(n, 3)
		for i := range evs {
			evs[i].IP = "198.51." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250)
			evs[i].Referer = "https://" + host + "/" + strconv.Itoa(i)
		}
		return evs
	}
	large, small := batch(600, "large.example"), batch(3, "small.example")
	for _, evs := range [][]Event{large, small} {
		if err := w.write(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range append(large, small...) {
		var referer string
		var hash []byte
		if err := db.Pool.QueryRow(ctx, `SELECT referer, visitor_hash FROM click_logs WHERE event_id = $1`, ev.ID).Scan(&referer, &hash); err != nil {
			t.Fatal(err)
		}
		salt, err := w.enr.salts.forDay(ctx, ev.Time)
		if err != nil {
			t.Fatal(err)
		}
		if want := visitorHash(salt, ev.LinkID, ev.IP, ev.UserAgent); referer != ev.Referer || !bytes.Equal(hash, want) {
			t.Fatalf("click %s stored referer %q, hash %x; want %q, %x", ev.ID, referer, hash, ev.Referer, want)
		}
	}
}
