// Package ingest captures clicks and turns them into click_logs rows. On the redirect
// path Publish hands each click off durably, without lookups: XADD to a Redis Stream
// (group commit), or, when Redis is absent, failing or slow, an fsync'd append to the
// local click log (group commit too). Background services then move clicks to
// PostgreSQL exactly once: the stream reader and claimer (XREADGROUP/XAUTOCLAIM, enrich,
// COPY, XACK), the log reader (local log, enrich, COPY, truncate), the trimmer and the
// salt purger, each on its own loop so none waits for another's recovery.
package ingest

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// Config configures the click pipeline. Zero values take the defaults.
type Config struct {
	// Prefix starts every Redis key; the stream is Prefix+"clicks".
	Prefix string
	// Name identifies this instance in the stream's consumer group. It must be stable
	// across restarts and distinct per instance (default: the hostname).
	Name string
	// DataDir holds the local click log, in DataDir/clicks (required).
	DataDir string
	// SpoolMaxBytes bounds the local click log (default 1 GiB); past it clicks are
	// dropped and counted.
	SpoolMaxBytes int64
	// BatchSize is about how many clicks go to PostgreSQL in one COPY (default 5000).
	BatchSize int
	// ShutdownTimeout bounds each final flush when Run's context ends (default 10s).
	ShutdownTimeout time.Duration
	// PublishTimeout bounds how long Publish waits for Redis before the click goes to
	// the local log (default 50ms, at most 1s).
	PublishTimeout time.Duration
	// PublishOnly runs no stream services (reader, claimer, trimmer) and no salt
	// purger: for load generators that feed another hop's stream. Clicks that fall
	// back to the local log are still copied to PostgreSQL.
	PublishOnly bool

	svc serviceConfigs // per-service settings; tests shorten them
}

// serviceConfigs are the settings of each service; New fills what Config implies.
type serviceConfigs struct {
	handoff   handoffConfig
	probe     probeConfig
	log       logConfig
	logReader logReaderConfig
	reader    readerConfig
	claimer   claimerConfig
	trimmer   trimmerConfig
	purger    purgerConfig
}

const (
	defaultSpoolMaxBytes = 1 << 30
	defaultBatchSize     = 5000
	// dropWindow is how long after a dropped click the health check says degraded.
	dropWindow = time.Minute
	// dropLogInterval is the most often one "clicks dropped" line is logged.
	dropLogInterval = 10 * time.Second
)

// service is one background loop of the pipeline: it runs until ctx ends, then
// flushes what it holds.
type service interface {
	Run(ctx context.Context) error
}

// Pipeline is the click pipeline: Publish on the redirect path, Run for the
// background services, Health for /health.
type Pipeline struct {
	logger  *slog.Logger
	m       *pipelineMetrics
	handoff *handoff  // nil without Redis
	stream  *stream   // nil without Redis or with PublishOnly
	log     *clickLog // always: the stream without Redis, the fallback with it
	front   []service // stop first: what Publish needs
	back    []service // stop after front: readers and housekeeping
	random  sync.Pool // *bufio.Reader over crypto/rand, for event ids

	dropped         atomic.Int64
	lastDrop        atomic.Int64 // unix nanos of the last dropped click
	lastDropReason  atomic.Pointer[string]
	droppedUnlogged atomic.Int64
	lastDropLog     atomic.Int64 // unix nanos
}

// New builds the pipeline. rdb may be nil: the local click log is then the stream.
// enr is shared by every writer (one GeoIP database, one salt store); the pipeline
// purges its old salts. Metrics are registered on reg when it is not nil.
func New(cfg Config, rdb rueidis.Client, pool *pgxpool.Pool, enr *Enricher, reg prometheus.Registerer, logger *slog.Logger) (*Pipeline, error) {
	if pool == nil || enr == nil {
		return nil, errors.New("ingest: needs a PostgreSQL pool and an enricher")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("ingest: DataDir is required for the local click log")
	}
	if cfg.SpoolMaxBytes < 0 || cfg.BatchSize < 0 || cfg.ShutdownTimeout < 0 || cfg.PublishTimeout < 0 {
		return nil, errors.New("ingest: SpoolMaxBytes, BatchSize and the timeouts must not be negative")
	}
	cfg.SpoolMaxBytes = cmp.Or(cfg.SpoolMaxBytes, defaultSpoolMaxBytes)
	cfg.BatchSize = cmp.Or(cfg.BatchSize, defaultBatchSize)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, 10*time.Second)
	logger = cmp.Or(logger, slog.New(slog.DiscardHandler)).With("module", "ingest")
	s := cfg.svc

	p := &Pipeline{logger: logger, m: newPipelineMetrics()}
	collectors := p.m.collectors()

	s.log.Dir = filepath.Join(cfg.DataDir, "clicks")
	s.log.MaxBytes = cfg.SpoolMaxBytes
	s.log.ShutdownTimeout = cmp.Or(s.log.ShutdownTimeout, cfg.ShutdownTimeout)
	lm := newLogMetrics()
	log, err := openClickLog(s.log, lm, logger)
	if err != nil {
		return nil, err
	}
	p.log = log
	collectors = append(collectors, lm.collectors(log)...)
	p.front = append(p.front, log)
	fail := func(err error) (*Pipeline, error) {
		_ = log.close()
		return nil, err
	}

	var led *ledger
	if rdb != nil {
		led = &ledger{spill: log.appendEntries}
		s.handoff.Key = cfg.Prefix + "clicks"
		s.handoff.Timeout = cmp.Or(s.handoff.Timeout, cfg.PublishTimeout)
		h, err := newHandoff(s.handoff, rdb, led, p.m, logger)
		if err != nil {
			return fail(err)
		}
		pr, err := newProbe(s.probe, h)
		if err != nil {
			return fail(err)
		}
		p.handoff = h
		p.front = append(p.front, h, pr)
	}
	lw := newWriter(pool, enr, "log", logger)
	collectors = append(collectors, lw.m.collectors()...)
	s.logReader.BatchSize = cmp.Or(s.logReader.BatchSize, cfg.BatchSize)
	s.logReader.ShutdownTimeout = cmp.Or(s.logReader.ShutdownTimeout, cfg.ShutdownTimeout)
	lr, err := newLogReader(s.logReader, log, lw, p.m.undecodable, logger)
	if err != nil {
		return fail(err)
	}
	p.back = append(p.back, lr)
	if !cfg.PublishOnly {
		pu, err := newPurger(s.purger, enr.salts, logger)
		if err != nil {
			return fail(err)
		}
		p.back = append(p.back, pu)
	}
	if rdb != nil && !cfg.PublishOnly {
		sw := newWriter(pool, enr, "stream", logger)
		sm := newStreamMetrics()
		collectors = append(collectors, sw.m.collectors()...)
		collectors = append(collectors, sm.collectors()...)
		st := newStream(rdb, cfg.Prefix+"clicks", cfg.Name, cfg.BatchSize, sw, led, sm, p.m, logger)
		rd, err := newStreamReader(s.reader, st)
		if err != nil {
			return fail(err)
		}
		cl, err := newClaimer(s.claimer, st)
		if err != nil {
			return fail(err)
		}
		tr, err := newTrimmer(s.trimmer, st)
		if err != nil {
			return fail(err)
		}
		p.stream = st
		p.back = append(p.back, rd, cl, tr)
	}
	if err := register(reg, collectors...); err != nil {
		return fail(err)
	}
	return p, nil
}

// Publish hands ev to ingest and returns once it is durable: acknowledged by Redis, or
// fsync'd in the local click log. When neither can take it (Redis failing and the log
// full or its disk broken) the click is dropped, counted and logged; Publish never
// fails the redirect. A missing ID or Time is filled in.
func (p *Pipeline) Publish(_ context.Context, ev Event) {
	if ev.ID == uuid.Nil {
		ev.ID = p.newEventID()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	// ctx does not shorten the hand-off: a client that goes away after its redirect was
	// decided still made the click, and each wait is bounded anyway.
	if p.handoff != nil && p.handoff.publish(&ev) == nil {
		return
	}
	if err := p.log.append(&ev); err != nil {
		p.drop(err)
		return
	}
	p.m.fallback.Inc()
}

// Run runs the services until ctx ends. Then the hand-off and the log writer flush
// what they hold first, and the readers commit what they can after them, each within
// the shutdown timeout. It returns the first service's error.
func (p *Pipeline) Run(ctx context.Context) error {
	backCtx, stopBack := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBack()
	var front, back sync.WaitGroup
	errs := make([]error, len(p.front)+len(p.back))
	for i, s := range p.front {
		front.Go(func() { errs[i] = s.Run(ctx) })
	}
	for i, s := range p.back {
		back.Go(func() { errs[len(p.front)+i] = s.Run(backCtx) })
	}
	front.Wait()
	stopBack()
	back.Wait()
	p.logDrops(true)
	return errors.Join(append(errs, p.log.close())...)
}

// IngestHealth is the pipeline's state for /health.
type IngestHealth struct {
	Mode         string    `json:"mode"` // "stream" with Redis, "log" without
	StreamLength int64     `json:"stream_length"`
	Pending      int64     `json:"pending"`
	Lag          int64     `json:"lag"` // -1 when Redis cannot tell
	LastBatch    time.Time `json:"last_batch,omitzero"`
	LogBytes     int64     `json:"log_bytes"`   // local click log on disk
	LogEntries   uint64    `json:"log_entries"` // its entries not yet known to be in PostgreSQL
	Dropped      int64     `json:"dropped"`     // clicks dropped since start
}

// Health reports the stream and the local log. It fails (health "degraded") when
// Redis cannot say how the stream is, or a click was dropped in the last minute.
func (p *Pipeline) Health(ctx context.Context) (IngestHealth, error) {
	h := IngestHealth{Mode: "log", Lag: -1}
	h.LogBytes, h.LogEntries = p.log.usage()
	h.Dropped = p.dropped.Load()
	var errs []error
	if p.stream != nil {
		h.Mode = "stream"
		st, err := p.stream.health(ctx)
		h.StreamLength, h.Pending, h.Lag, h.LastBatch = st.length, st.pending, st.lag, st.lastBatch
		if err != nil {
			errs = append(errs, err)
		}
	} else if p.handoff != nil {
		h.Mode = "stream"
	}
	if err := p.log.broken(); err != nil {
		errs = append(errs, err)
	}
	if last := p.lastDrop.Load(); last != 0 && time.Since(time.Unix(0, last)) < dropWindow {
		reason := ""
		if r := p.lastDropReason.Load(); r != nil {
			reason = *r
		}
		errs = append(errs, fmt.Errorf("clicks dropped in the last minute: %s", reason))
	}
	return h, errors.Join(errs...)
}

// drop counts a click neither Redis nor the local log could take.
func (p *Pipeline) drop(err error) {
	p.m.dropped.Inc()
	p.dropped.Add(1)
	p.droppedUnlogged.Add(1)
	p.lastDrop.Store(time.Now().UnixNano())
	reason := err.Error()
	if r := p.lastDropReason.Load(); r == nil || *r != reason {
		p.lastDropReason.Store(&reason)
	}
	p.logDrops(false)
}

// logDrops writes at most one line per dropLogInterval (or now, when final) with the
// clicks dropped since the previous line.
func (p *Pipeline) logDrops(final bool) {
	now := time.Now().UnixNano()
	last := p.lastDropLog.Load()
	if !final && (now-last < int64(dropLogInterval) || !p.lastDropLog.CompareAndSwap(last, now)) {
		return
	}
	if n := p.droppedUnlogged.Swap(0); n > 0 {
		reason := ""
		if r := p.lastDropReason.Load(); r != nil {
			reason = *r
		}
		p.logger.Error("clicks dropped: Redis unavailable and the local click log cannot take them", "dropped", n, "reason", reason)
	}
}

// newEventID makes a UUIDv7 from randomness read ahead from crypto/rand, one read per
// 256 ids: reading 16 bytes per click cost more than the rest of making the id.
func (p *Pipeline) newEventID() uuid.UUID {
	r, _ := p.random.Get().(*bufio.Reader)
	if r == nil {
		r = bufio.NewReaderSize(rand.Reader, 256*len(uuid.UUID{}))
	}
	id, err := uuid.NewV7FromReader(r)
	p.random.Put(r)
	if err != nil {
		return uuid.New()
	}
	return id
}
