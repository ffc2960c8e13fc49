package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
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

// captureLogger records log lines for assertions.
type captureLogger struct {
	mu    sync.Mutex
	lines []string
}

func (c *captureLogger) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, string(p))
	return len(p), nil
}

func (c *captureLogger) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// loggedPipeline builds a pipeline (not running) whose JSON log is kept. When t fails,
// the log and the pipeline's counters are printed: the fault tests' failures are rare
// and depend on timing, so the first one has to tell what happened.
func loggedPipeline(t *testing.T, cfg Config, rdb rueidis.Client, pool *pgxpool.Pool) (*Pipeline, *captureLogger) {
	t.Helper()
	logs := &captureLogger{}
	p, err := New(cfg, rdb, pool, newTestEnricher(t, pool), nil, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.log.close() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: published %v, fallback %v, resets %v; rows %d; logged:\n%s", cfg.Name, value(t, p.m.published),
				value(t, p.m.fallback), value(t, p.m.resets), countRows(t, pool), strings.Join(logs.all(), ""))
		}
	})
	return p, logs
}

// wantOneReset waits for rows in click_logs, then checks that p counted one stream
// reset and logged recovered clicks and none lost, and that no row came twice.
func wantOneReset(t *testing.T, p *Pipeline, logs *captureLogger, pool *pgxpool.Pool, recovered int64, rows int) {
	t.Helper()
	waitRows(t, pool, rows)
	if got := value(t, p.m.resets); got != 1 {
		t.Fatalf("stream resets = %v, want 1", got)
	}
	if lost, got, ok := resetReport(logs); !ok || lost != 0 || got != recovered {
		t.Fatalf("reset logged (%v): %d clicks lost and %d recovered, want 0 and %d", ok, lost, got, recovered)
	}
	if got := countRows(t, pool); got != rows {
		t.Fatalf("click_logs has %d rows, want %d", got, rows)
	}
}

// resetReport is what the last ERROR line on a stream reset says; ok is false when
// there is none.
func resetReport(logs *captureLogger) (lost, recovered int64, ok bool) {
	for _, line := range logs.all() {
		var rec struct {
			Level     string `json:"level"`
			Lost      *int64 `json:"estimated_clicks_lost"`
			Recovered int64  `json:"clicks_recovered"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "ERROR" && rec.Lost != nil {
			lost, recovered, ok = *rec.Lost, rec.Recovered, true
		}
	}
	return lost, recovered, ok
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

// publishAll publishes evs concurrently and returns once every Publish returned.
func publishAll(ctx context.Context, p *Pipeline, evs []Event) {
	var wg sync.WaitGroup
	for i := range evs {
		wg.Go(func() { p.Publish(ctx, evs[i]) })
	}
	wg.Wait()
}

// run starts r in the background and stops it when t ends, failing t if it errs.
func run(t testing.TB, r service) context.CancelFunc {
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

// testRetry retries batch writes quickly.
var testRetry = retryConfig{RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, WriteTimeout: 30 * time.Second}

// health is the pipeline's health, failing t if it cannot tell.
func health(t testing.TB, p *Pipeline) IngestHealth {
	t.Helper()
	h, err := p.Health(context.Background())
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	return h
}

// fastConfig is a pipeline config whose intervals are short, so tests do not wait on
// defaults. Its XADD budget is generous: on a loaded machine a 50 ms budget sends some
// clicks down the (correct, but other) local log path, and tests assert which path
// each click took.
func fastConfig(t testing.TB, prefix, name string) Config {
	cfg := Config{Prefix: prefix, Name: name, DataDir: t.TempDir()}
	retry := testRetry
	cfg.svc.handoff.Timeout = time.Second
	cfg.svc.probe.Interval = 20 * time.Millisecond
	cfg.svc.log.ReopenInterval = 10 * time.Millisecond
	cfg.svc.logReader = logReaderConfig{Linger: -1, Poll: 20 * time.Millisecond, TruncateInterval: -1,
		RetryMin: retry.RetryMin, RetryMax: retry.RetryMax}
	cfg.svc.reader = readerConfig{retryConfig: retry, Block: 50 * time.Millisecond}
	cfg.svc.claimer = claimerConfig{retryConfig: retry, Interval: 50 * time.Millisecond, Idle: 100 * time.Millisecond}
	cfg.svc.trimmer.Interval = 50 * time.Millisecond
	return cfg
}

func newTestEnricher(t testing.TB, pool *pgxpool.Pool) *Enricher {
	t.Helper()
	e, err := NewEnricher("", NewSalts(pool))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// mustPipeline builds a pipeline (rdb may be nil); it is not running until run(t, p).
// Its log is closed when t ends, if Run has not closed it.
func mustPipeline(t testing.TB, cfg Config, rdb rueidis.Client, pool *pgxpool.Pool) *Pipeline {
	t.Helper()
	p, err := New(cfg, rdb, pool, newTestEnricher(t, pool), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.log.close() })
	return p
}

// waitRunning waits until p's hand-off and local log take clicks into group commits.
// Before that, each click has a write of its own: one XADD or fsync after another,
// which under a loaded machine can take seconds for a few hundred clicks.
func waitRunning(t testing.TB, p *Pipeline) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "pipeline running", func() bool {
		p.log.gmu.Lock()
		ok := p.log.running
		p.log.gmu.Unlock()
		if p.handoff != nil {
			p.handoff.mu.Lock()
			ok = ok && p.handoff.running
			p.handoff.mu.Unlock()
		}
		return ok
	})
}

// pauseWrites holds every write command (XADD among them) on admin's server for up to a
// minute, far longer than any test waits, until resume. WRITE mode, unlike ALL, still
// lets CLIENT UNPAUSE through.
func pauseWrites(t testing.TB, admin rueidis.Client) (resume func() error) {
	t.Helper()
	ctx := context.Background()
	if err := admin.Do(ctx, admin.B().ClientPause().Timeout(time.Minute.Milliseconds()).Write().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	return func() error { return admin.Do(ctx, admin.B().ClientUnpause().Build()).Error() }
}

func newTestWriter(t testing.TB, pool *pgxpool.Pool) *writer {
	return newWriter(pool, newTestEnricher(t, pool), "test", testLogger(t))
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

// proxiedPool is a pool to db's database through a proxy the test can cut.
func proxiedPool(t testing.TB, db *testenv.DB) (*pgxpool.Pool, *tcpProxy) {
	t.Helper()
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
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, proxy
}
