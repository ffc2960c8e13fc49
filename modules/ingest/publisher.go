// Package ingest captures clicks and turns them into click_logs rows. On the redirect
// path a Publisher hands each click off durably (XADD to a Redis Stream, or a bounded
// in-process queue to PostgreSQL when Redis is absent or failing) without doing any
// lookups; a Consumer then reads the stream in batches, enriches each click (country,
// browser/OS/device, bot, referer host, daily-salted visitor hash, anonymised IP) and
// writes it exactly once with COPY before acknowledging it.
package ingest

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// PublisherConfig tunes the redirect-side hand-off. Zero values take the defaults.
type PublisherConfig struct {
	// Prefix starts every Redis key; the stream is Prefix+"clicks".
	Prefix string
	// Timeout bounds how long a redirect waits for Redis to acknowledge an XADD
	// before the click takes the in-process path (default 50ms).
	Timeout time.Duration
	// Gather is how long a batch of concurrent clicks waits for more before its XADD,
	// counted from its first click's arrival (default 300µs; negative: none; at most
	// Timeout/4). It applies only while clicks arrive together (the previous batch
	// held more than one), so a lone click is never held back; under load more
	// clicks share each XADD, and Redis and the client do less work per click.
	Gather time.Duration
	// QueueSize bounds the in-process queue to PostgreSQL (default 10000 clicks);
	// beyond it clicks are dropped and counted.
	QueueSize int
	// BatchSize is the most clicks written per batch from the queue (default 1000).
	BatchSize int
	// FlushInterval is how long the queue gathers a batch after its first click
	// (default 100ms).
	FlushInterval time.Duration
	// BreakerThreshold is the number of consecutive Redis failures that open the
	// circuit breaker, after which clicks bypass Redis (default 3).
	BreakerThreshold int
	// ProbeInterval is how often an open breaker pings Redis to close again
	// (default 1s).
	ProbeInterval time.Duration
	// RetryMin and RetryMax bound the backoff while PostgreSQL is down
	// (defaults 100ms and 5s).
	RetryMin, RetryMax time.Duration
	// DropLogInterval is the most often one "clicks dropped" line is logged
	// (default 10s).
	DropLogInterval time.Duration
	// ShutdownTimeout bounds the final flush after Run's context ends (default 10s).
	ShutdownTimeout time.Duration
	// HousekeepingInterval is how often old visitor salts are deleted (default 1h).
	HousekeepingInterval time.Duration
	// GeoIPDB is an optional .mmdb country database; empty uses embedded data.
	GeoIPDB string
}

func (c PublisherConfig) withDefaults() PublisherConfig {
	c.Timeout = cmp.Or(c.Timeout, 50*time.Millisecond)
	c.Gather = cmp.Or(c.Gather, 300*time.Microsecond)
	c.QueueSize = cmp.Or(c.QueueSize, 10000)
	c.BatchSize = cmp.Or(c.BatchSize, 1000)
	c.FlushInterval = cmp.Or(c.FlushInterval, 100*time.Millisecond)
	c.BreakerThreshold = cmp.Or(c.BreakerThreshold, 3)
	c.ProbeInterval = cmp.Or(c.ProbeInterval, time.Second)
	c.RetryMin = cmp.Or(c.RetryMin, 100*time.Millisecond)
	c.RetryMax = cmp.Or(c.RetryMax, 5*time.Second)
	c.DropLogInterval = cmp.Or(c.DropLogInterval, 10*time.Second)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	c.HousekeepingInterval = cmp.Or(c.HousekeepingInterval, time.Hour)
	return c
}

func (c PublisherConfig) validate() error {
	switch {
	case c.Timeout < 0 || c.Timeout > time.Second:
		return fmt.Errorf("ingest publisher: Timeout %s must be between 0 and 1s", c.Timeout)
	case c.Gather > c.Timeout/4:
		return fmt.Errorf("ingest publisher: Gather %s must be at most a quarter of Timeout %s", c.Gather, c.Timeout)
	case c.QueueSize < 0, c.BatchSize < 0, c.BreakerThreshold < 0:
		return errors.New("ingest publisher: QueueSize, BatchSize and BreakerThreshold must not be negative")
	case c.FlushInterval < 0, c.ProbeInterval < 0, c.RetryMin < 0, c.RetryMax < c.RetryMin,
		c.DropLogInterval < 0, c.ShutdownTimeout < 0, c.HousekeepingInterval < 0:
		return errors.New("ingest publisher: intervals must be positive and RetryMax >= RetryMin")
	}
	return nil
}

// Publisher hands click events from the redirect path to ingest: XADD to the Redis
// Stream, or, when Redis is absent, failing or slow, a bounded in-process queue that
// Run writes straight to PostgreSQL. Publish is safe for concurrent use.
type Publisher struct {
	cfg    PublisherConfig
	rdb    rueidis.Client
	key    string
	queue  chan Event
	w      *writer
	salts  *saltStore
	closeG func() error
	logger *slog.Logger
	m      *publisherMetrics

	bufs   sync.Pool // *[]byte stream entry buffers, empty (xadd empties one it puts back)
	random sync.Pool // *bufio.Reader over crypto/rand, for event ids

	// Group commit: while Run is running, Publish appends its event to the batch being
	// filled and waits for that batch's XADD, so under load one Redis round trip and
	// one stream entry carry many clicks. One sender takes batches one at a time: while
	// its XADD is on the wire the next batch fills, so batches grow with load (measured:
	// more redirects per second than with two in flight). Under mu: running tells
	// Publish whether the sender will take its event (Run clears it before stopping
	// the sender), filling is the batch new events join, full holds batches that
	// reached maxPerEntry, oldest first. kick wakes the sender.
	mu      sync.Mutex
	running bool
	filling *batch
	full    []*batch
	kick    chan struct{}

	// Circuit breaker: consecutive failures open it; Run's probe closes it.
	failures atomic.Int64
	open     atomic.Bool

	droppedUnlogged atomic.Int64
	lastDropLog     atomic.Int64 // unix nanos
}

// NewPublisher returns a Publisher; rdb may be nil to run on PostgreSQL alone. Its
// metrics are registered on reg when reg is not nil.
func NewPublisher(cfg PublisherConfig, rdb rueidis.Client, pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) (*Publisher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("ingest publisher: nil PostgreSQL pool")
	}
	logger = cmp.Or(logger, slog.New(slog.DiscardHandler)).With("module", "ingest")
	salts := newSaltStore(pool)
	enr, closeGeo, err := newEnricher(cfg.GeoIPDB, salts)
	if err != nil {
		return nil, err
	}
	p := &Publisher{
		cfg:    cfg,
		rdb:    rdb,
		key:    cfg.Prefix + "clicks",
		queue:  make(chan Event, cfg.QueueSize),
		salts:  salts,
		closeG: closeGeo,
		logger: logger,
	}
	p.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	p.kick = make(chan struct{}, 1)
	p.m = newPublisherMetrics(func() float64 { return float64(len(p.queue)) })
	wm := newWriterMetrics("queue")
	p.w = &writer{pool: pool, enr: enr, logger: logger, m: wm}
	if err := register(reg, append(p.m.collectors(), wm.collectors()...)...); err != nil {
		_ = closeGeo()
		return nil, err
	}
	return p, nil
}

// Publish hands ev to ingest. It returns once Redis acknowledged the XADD (within
// cfg.Timeout) or the event is in the in-process queue; when that is full the click is
// dropped and counted. It never blocks longer than the timeout and never fails the
// caller. A missing ID or Time is filled in.
func (p *Publisher) Publish(_ context.Context, ev Event) {
	if ev.ID == uuid.Nil {
		ev.ID = p.newEventID()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	// ctx does not shorten the hand-off: a client that goes away after its redirect was
	// decided still made the click, and the wait is bounded by cfg.Timeout anyway.
	if p.rdb != nil && !p.open.Load() && p.toStream(&ev) == nil {
		return
	}
	select {
	case p.queue <- ev:
		p.m.fallback.Inc()
	default:
		p.drop()
	}
}

// batch is one stream entry in the making: the events of concurrent clicks, encoded
// back to back, and the outcome of its XADD for every Publish waiting on it.
type batch struct {
	entry *[]byte       // from Publisher.bufs
	n     int           // events in entry
	since time.Time     // when its first event arrived: its cfg.Timeout budget runs from here
	done  chan struct{} // closed once err is set
	err   error
}

// maxPerEntry bounds the clicks in one stream entry.
const maxPerEntry = 256

// toStream puts ev into the stream: in the batch being filled when Run is running,
// else with an XADD of its own.
func (p *Publisher) toStream(ev *Event) error {
	p.mu.Lock()
	if !p.running {
		p.mu.Unlock()
		bp := p.bufs.Get().(*[]byte)
		*bp = appendEvent(*bp, ev)
		return p.xadd(time.Now().Add(p.cfg.Timeout), bp, 1)
	}
	b := p.filling
	if b == nil {
		b = &batch{entry: p.bufs.Get().(*[]byte), since: time.Now(), done: make(chan struct{})}
		p.filling = b
	}
	*b.entry = appendEvent(*b.entry, ev)
	b.n++
	kick := b.n == 1
	if b.n == maxPerEntry {
		p.full = append(p.full, b)
		p.filling, kick = nil, true
	}
	p.mu.Unlock()
	if kick {
		select {
		case p.kick <- struct{}{}:
		default: // the sender has a wake-up pending already
		}
	}
	<-b.done
	return b.err
}

// send XADDs batches until stop is closed, then the batches left. Batches go in
// the order they started, so the first event of each has waited longest, and a
// batch's XADD gets what is left of that event's budget: no redirect waits for Redis
// longer than cfg.Timeout in all, in-flight batch ahead of it included.
func (p *Publisher) send(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	last := 0 // events in the previous batch
	for {
		b := p.next(last > 1, timer, stop)
		if b == nil {
			return
		}
		last = b.n
		b.err = p.xadd(b.since.Add(p.cfg.Timeout), b.entry, b.n)
		close(b.done)
	}
}

// next returns the batch to send next, blocking until there is one: the oldest full
// batch, else the one being filled. While clicks arrive together (gather: the previous
// batch held more than one) a filling batch first waits up to cfg.Gather from its
// first click for more, so a lone click is never held back. Once stop is closed it
// returns what is left without gathering, then nil.
func (p *Publisher) next(gather bool, timer *time.Timer, stop <-chan struct{}) *batch {
	stopped := false
	for {
		p.mu.Lock()
		if len(p.full) > 0 {
			b := p.full[0]
			p.full = append(p.full[:0], p.full[1:]...)
			p.mu.Unlock()
			return b
		}
		b := p.filling
		var wait time.Duration
		if b != nil && gather && !stopped {
			wait = time.Until(b.since.Add(p.cfg.Gather))
		}
		if b != nil && wait <= 0 {
			p.filling = nil
			p.mu.Unlock()
			return b
		}
		p.mu.Unlock()
		switch {
		case b != nil: // gathering: until its time is up or a batch is full
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-p.kick:
			case <-stop:
				stopped = true
			}
			timer.Stop()
		case stopped:
			return nil
		default:
			select {
			case <-p.kick:
			case <-stop:
				stopped = true
			}
		}
	}
}

// newEventID makes a UUIDv7 from randomness read ahead from crypto/rand, one read per
// 256 ids: reading 16 bytes per click cost more than the rest of making the id.
func (p *Publisher) newEventID() uuid.UUID {
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

// xadd appends entry, n encoded events, to the stream, waiting for Redis until
// deadline. entry goes back to p.bufs unless the XADD failed: a timed-out command may
// still be queued for writing, and it refers to entry without copying it.
func (p *Publisher) xadd(deadline time.Time, entry *[]byte, n int) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	b := *entry
	cmd := p.rdb.B().Xadd().Key(p.key).Id("*").FieldValue().FieldValue(streamField, unsafe.String(unsafe.SliceData(b), len(b))).Build()
	err := p.rdb.Do(ctx, cmd).Error()
	cancel()
	if err != nil {
		if p.failures.Add(1) >= int64(p.cfg.BreakerThreshold) && p.open.CompareAndSwap(false, true) {
			p.m.breakerOpen.Set(1)
			p.logger.Warn("Redis failing, clicks go to PostgreSQL directly until it answers again", "error", err)
		}
		return err
	}
	*entry = b[:0]
	p.bufs.Put(entry)
	if p.failures.Load() != 0 {
		p.failures.Store(0)
	}
	p.m.published.Add(float64(n))
	return nil
}

func (p *Publisher) drop() {
	p.m.dropped.Inc()
	p.droppedUnlogged.Add(1)
	p.logDrops()
}

// logDrops writes at most one line per DropLogInterval with the clicks dropped since
// the previous line.
func (p *Publisher) logDrops() {
	now := time.Now().UnixNano()
	last := p.lastDropLog.Load()
	if now-last < int64(p.cfg.DropLogInterval) || !p.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	if n := p.droppedUnlogged.Swap(0); n > 0 {
		p.logger.Error("clicks dropped: Redis unavailable and in-process queue full", "dropped", n, "queue_size", p.cfg.QueueSize)
	}
}

// Run writes the in-process queue to PostgreSQL, probes an open Redis breaker (only
// Run closes it again, so Run must be running whenever Publish is used) and deletes
// old visitor salts, until ctx ends; then it flushes what it holds within
// cfg.ShutdownTimeout. It returns an error only if that final flush fails.
func (p *Publisher) Run(ctx context.Context) error {
	defer p.closeG()
	if p.rdb != nil {
		defer p.startSender()()
	}
	p.housekeep(ctx)
	probe := time.NewTicker(p.cfg.ProbeInterval)
	defer probe.Stop()
	house := time.NewTicker(p.cfg.HousekeepingInterval)
	defer house.Stop()
	batch := make([]Event, 0, p.cfg.BatchSize)
	for {
		select {
		case <-ctx.Done():
			return p.shutdown(ctx, batch)
		case ev := <-p.queue:
			batch = p.gather(ctx, append(batch, ev))
			if !p.flush(ctx, batch) {
				return p.shutdown(ctx, batch)
			}
			batch = batch[:0]
		case <-probe.C:
			p.probe(ctx)
			p.logDrops()
		case <-house.C:
			p.housekeep(ctx)
		}
	}
}

// startSender starts the group-commit sender and returns the function that stops
// it: after it returns, every Publish that joined a batch has its answer.
func (p *Publisher) startSender() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { p.send(done) })
	p.mu.Lock()
	p.running = true
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
		close(done)
		wg.Wait()
	}
}

// gather adds queued clicks to batch until it is full or FlushInterval has passed.
func (p *Publisher) gather(ctx context.Context, batch []Event) []Event {
	t := time.NewTimer(p.cfg.FlushInterval)
	defer t.Stop()
	for len(batch) < p.cfg.BatchSize {
		select {
		case ev := <-p.queue:
			batch = append(batch, ev)
		case <-t.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// flush writes batch, retrying with backoff while PostgreSQL fails. It reports false
// if ctx ended first; the batch is then still unwritten.
func (p *Publisher) flush(ctx context.Context, batch []Event) bool {
	bo := backoff{min: p.cfg.RetryMin, max: p.cfg.RetryMax}
	for {
		err := p.w.write(ctx, batch)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.logger.Warn("writing queued clicks failed, retrying", "clicks", len(batch), "error", err)
		if !sleep(ctx, bo.next()) {
			return false
		}
	}
}

// shutdown writes what is held and what is still queued, with a fresh deadline.
func (p *Publisher) shutdown(ctx context.Context, batch []Event) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.ShutdownTimeout)
	defer cancel()
	lost := 0
	for {
	drain:
		for len(batch) < p.cfg.BatchSize {
			select {
			case ev := <-p.queue:
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		if len(batch) == 0 {
			break
		}
		if !p.flush(ctx, batch) {
			lost += len(batch) + len(p.queue)
			break
		}
		batch = batch[:0]
	}
	p.logDrops()
	if lost > 0 {
		return fmt.Errorf("flush queued clicks at shutdown: %d clicks not written: %w", lost, ctx.Err())
	}
	return nil
}

// probe closes an open breaker once Redis answers a PING within the timeout.
func (p *Publisher) probe(ctx context.Context) {
	if p.rdb == nil || !p.open.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if err := p.rdb.Do(ctx, p.rdb.B().Ping().Build()).Error(); err != nil {
		return
	}
	p.failures.Store(0)
	p.open.Store(false)
	p.m.breakerOpen.Set(0)
	p.logger.Info("Redis answers again, clicks go to the stream")
}

func (p *Publisher) housekeep(ctx context.Context) {
	if _, err := p.salts.purge(ctx, time.Now()); err != nil && ctx.Err() == nil {
		p.logger.Warn("visitor salt housekeeping failed", "error", err)
	}
}
