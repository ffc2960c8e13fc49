package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hop-dev/hop/modules/ingest"
)

// ingestResult is the dedicated-publisher run (publisher and consumer at once) and the
// consumer-only run over a backlog published while hop was stopped.
type ingestResult struct {
	dur                          time.Duration
	published, fallback, dropped int64
	publishRate                  float64 // clicks/s acknowledged by Redis (or queued)
	loadRows                     int64   // rows committed while the publisher ran
	loadRate                     float64 // rows/s committed while the publisher ran
	steadyRate                   float64 // rows/s over the last part of the load (after 2s)
	e2eRate                      float64 // all published clicks / (publish start -> last row committed)
	drain                        drainResult
	maxLag, maxPending, rssKB    int64
	complete                     bool // every published click committed exactly once
	rows                         int64

	backlog        int64
	backlogRate    float64 // rows/s committed by the consumer alone
	backlogSeconds float64
	backlogRSSKB   int64
	backlogOK      bool
}

var (
	eventAgents = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
	}
	eventReferers = []string{"", "https://news.ycombinator.com/item?id=1", "https://www.google.com/", "https://t.co/abc", "https://www.reddit.com/r/golang/"}
)

func randomEvent(links []int64) ingest.Event {
	ip := netip.AddrFrom4([4]byte{byte(1 + rand.IntN(220)), byte(rand.IntN(256)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
	return ingest.Event{
		LinkID:         links[rand.IntN(len(links))],
		IP:             ip.String(),
		UserAgent:      eventAgents[rand.IntN(len(eventAgents))],
		Referer:        eventReferers[rand.IntN(len(eventReferers))],
		AcceptLanguage: "en-US,en;q=0.9",
	}
}

// benchPublisher is hop's own ingest pipeline, publishing only (same encoding, same
// stream), in this process.
type benchPublisher struct {
	p      *ingest.Pipeline
	enr    *ingest.Enricher
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func newBenchPublisher(ctx context.Context, c *config, prefix string, pool *pgxpool.Pool) (*benchPublisher, error) {
	rdb, err := openRedis(c)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	// A 1s XADD timeout (the most hop allows): this process floods Redis on a 2-core
	// machine, and the point is to measure hop's consumer, not this publisher's
	// fallback path (a local click log in a temporary directory).
	dir, err := os.MkdirTemp("", "hopbench-clicks-")
	if err != nil {
		rdb.Close()
		return nil, err
	}
	enr, err := ingest.NewEnricher("", ingest.NewSalts(pool))
	if err != nil {
		rdb.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	p, err := ingest.New(ingest.Config{Prefix: prefix, DataDir: dir, PublishTimeout: time.Second, PublishOnly: true}, rdb, pool, enr, reg, nil)
	if err != nil {
		rdb.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	bp := &benchPublisher{p: p, enr: enr, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { bp.done <- p.Run(rctx); rdb.Close(); enr.Close(); os.RemoveAll(dir) }()
	return bp, nil
}

// close copies what fell back to the local click log (if anything) to PostgreSQL.
func (bp *benchPublisher) close() error {
	bp.cancel()
	return <-bp.done
}

func (bp *benchPublisher) counter(name string) int64 {
	mfs, _ := bp.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n float64
			for _, m := range mf.GetMetric() {
				n += counterValue(m)
			}
			return int64(n)
		}
	}
	return 0
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return 0
}

// publish calls Publish from conc goroutines until d has passed or, when n > 0, n
// clicks were sent.
func (bp *benchPublisher) publish(ctx context.Context, links []int64, conc int, d time.Duration, n int64) {
	var sent atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if n > 0 && sent.Add(1) > n {
					return
				}
				bp.p.Publish(ctx, randomEvent(links))
			}
		})
	}
	wg.Wait()
}

// publishers is the number of goroutines calling Publish: a full stream entry's worth
// (maxPerEntry), so the offered load is bounded by the machine, not by each call's
// round trip (with 32, the publisher offered ~22,000 clicks/s and the pipeline idled).
const publishers = 256

const rowsWritten = `hop_ingest_rows_written_total{source="stream"}`

func ingestBench(ctx context.Context, c *config, rep *report, h *hop, pool *pgxpool.Pool) (*hop, error) {
	var r ingestResult
	rep.ingest = &r
	var links []int64
	rows, err := pool.Query(ctx, `SELECT id FROM links WHERE deleted_at IS NULL`)
	if err != nil {
		return h, err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return h, err
		}
		links = append(links, id)
	}
	if err := rows.Err(); err != nil || len(links) == 0 {
		return h, fmt.Errorf("no links for the ingest bench (%v)", err)
	}

	// Part A: the publisher and hop's consumer run at once; click_logs is counted every second.
	bp, err := newBenchPublisher(ctx, c, h.prefix, pool)
	if err != nil {
		return h, err
	}
	if d := waitDrained(ctx, h, pool, time.Now(), -1, 2*time.Minute); !d.OK {
		return h, fmt.Errorf("before ingest: %s", d.Note)
	}
	var base int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM click_logs`).Scan(&base); err != nil {
		return h, err
	}
	m0, err := h.metrics(ctx)
	if err != nil {
		return h, err
	}
	logf("ingest: dedicated publisher (hop's ingest.Publisher, %d goroutines) for %s while hop consumes", publishers, c.ingestDuration)
	type sample struct {
		t    time.Duration
		rows int64
	}
	var (
		mu      sync.Mutex
		samples []sample
	)
	start := time.Now()
	sctx, stopSampling := context.WithCancel(ctx)
	s := startSampler(sctx, h, true)
	var sampWG sync.WaitGroup
	sampWG.Go(func() {
		// Rows committed by hop's consumer, from its counter (cheaper than count(*)
		// every half second; click_logs is counted exactly at the start and the end).
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := h.metrics(sctx); err == nil {
				mu.Lock()
				samples = append(samples, sample{time.Since(start), int64(m[rowsWritten] - m0[rowsWritten])})
				mu.Unlock()
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	})
	bp.publish(ctx, links, publishers, c.ingestDuration, 0)
	stopped := time.Now()
	r.dur = stopped.Sub(start)
	var atStop int64
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM click_logs`).Scan(&atStop)
	r.published, r.fallback, r.dropped = bp.counter("hop_ingest_published_total"), bp.counter("hop_ingest_fallback_total"), bp.counter("hop_ingest_dropped_total")
	if err := bp.close(); err != nil {
		logf("ingest publisher flush: %v", err)
	}
	want := base + r.published + r.fallback
	r.drain = waitDrained(ctx, h, pool, stopped, want, 3*time.Minute)
	done := time.Now()
	r.rssKB, r.maxLag, r.maxPending = s.finish()
	stopSampling()
	sampWG.Wait()
	var final int64
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM click_logs`).Scan(&final)
	r.rows = final - base
	r.complete = r.rows == r.published+r.fallback
	secs := r.dur.Seconds()
	r.publishRate = float64(r.published+r.fallback) / secs
	r.loadRows = atStop - base
	r.loadRate = float64(r.loadRows) / secs
	// Steady state: from the first sample after 2s to the last sample before the stop.
	var first, last *sample
	for i := range samples {
		if samples[i].t >= 2*time.Second && first == nil {
			first = &samples[i]
		}
		if samples[i].t <= r.dur {
			last = &samples[i]
		}
	}
	if first != nil && last != nil && last.t > first.t {
		r.steadyRate = float64(last.rows-first.rows) / (last.t - first.t).Seconds()
	}
	r.e2eRate = float64(r.rows) / done.Sub(start).Seconds()
	logf("ingest: published %d (+%d fallback, %d dropped) at %.0f/s; committed %.0f rows/s during load (steady %.0f/s); lag peak %d; drained %s after stop; %d rows",
		r.published, r.fallback, r.dropped, r.publishRate, r.loadRate, r.steadyRate, r.maxLag, r.drain.Ingest.Round(time.Millisecond), r.rows)

	// Part B: stop hop, publish a backlog, restart hop and time the consumer alone.
	if c.backlog <= 0 {
		return h, nil
	}
	logf("ingest: stopping hop, publishing a backlog of %d clicks, restarting hop", c.backlog)
	stopProc(h.Proc, 30*time.Second)
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM click_logs`).Scan(&base); err != nil {
		return h, err
	}
	bp, err = newBenchPublisher(ctx, c, h.prefix, pool)
	if err != nil {
		return h, err
	}
	bp.publish(ctx, links, publishers, 10*time.Minute, int64(c.backlog))
	pub, fb := bp.counter("hop_ingest_published_total"), bp.counter("hop_ingest_fallback_total")
	if err := bp.close(); err != nil {
		logf("ingest publisher flush: %v", err)
	}
	var afterFallback int64
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM click_logs`).Scan(&afterFallback)
	r.backlog = pub
	want = afterFallback + pub
	nh, err := startHop(ctx, c, "main", h.dbURL, h.prefix, h.port)
	if err != nil {
		return h, err
	}
	h = nh
	s = startSampler(ctx, h, false)
	var t0 time.Time
	var r0 int64
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		// The restarted process counts from zero: its counter is the consumer's progress.
		if m, err := h.metrics(ctx); err == nil {
			n := int64(m[rowsWritten])
			if t0.IsZero() && n > 0 {
				t0, r0 = time.Now(), n
			}
			if n >= pub {
				r.backlogSeconds = time.Since(t0).Seconds()
				if r.backlogSeconds > 0 {
					r.backlogRate = float64(n-r0) / r.backlogSeconds
				}
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var final2 int64
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM click_logs`).Scan(&final2)
	r.backlogOK = final2 == want && fb == 0
	r.backlogRSSKB, _, _ = s.finish()
	logf("ingest backlog: %d clicks committed by the consumer alone at %.0f rows/s (%.1fs), exact=%v",
		r.backlog, r.backlogRate, r.backlogSeconds, r.backlogOK)
	if d := waitDrained(ctx, h, pool, time.Now(), -1, 2*time.Minute); !d.OK {
		logf("after backlog: %s", d.Note)
	}
	return h, nil
}
