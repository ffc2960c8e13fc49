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

	bufs   sync.Pool // *[]byte encode buffers
	random sync.Pool // *bufio.Reader over crypto/rand, for event ids

	// Group commit: while Run is running, Publish hands events to batchers that put
	// every event waiting at that moment into one XADD, so under load one Redis round
	// trip and one stream entry carry many clicks. running (under gate) tells Publish
	// whether batchers will take its event; Run stops them only under gate's write lock.
	gate    sync.RWMutex
	running bool
	waiting chan *waiter
	waiters sync.Pool // *waiter

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
	p.waiting = make(chan *waiter, 4*maxPerEntry)
	p.waiters.New = func() any { return &waiter{done: make(chan error, 1)} }
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

// waiter is one Publish waiting for the batch that carries its event.
type waiter struct {
	ev    Event
	since time.Time // when Publish handed it over: its cfg.Timeout budget runs from here
	done  chan error
}

// toStream puts ev into the stream: through the batchers when Run is running, else
// with an XADD of its own.
func (p *Publisher) toStream(ev *Event) error {
	p.gate.RLock()
	if !p.running {
		p.gate.RUnlock()
		return p.xadd(time.Now().Add(p.cfg.Timeout), []*Event{ev})
	}
	w := p.waiters.Get().(*waiter)
	w.ev, w.since = *ev, time.Now()
	p.waiting <- w
	p.gate.RUnlock()
	err := <-w.done
	w.ev = Event{}
	p.waiters.Put(w)
	return err
}

// batchers is how many batches may be in flight at once. One: while its XADD is on
// the wire the next batch gathers, so batches grow with load and Redis sees fewer,
// larger commands (measured: more redirects per second than with two).
const (
	batchers    = 1
	maxPerEntry = 256
)

// batch takes the events waiting right now (at least one, at most maxPerEntry), sends
// them in one XADD and tells each waiter the outcome. Under load events pile up while
// the previous batch is on the wire; while clicks arrive together a batch also waits
// up to cfg.Gather from its first click for more (see PublisherConfig.Gather).
func (p *Publisher) batch(stop <-chan struct{}) {
	ws := make([]*waiter, 0, maxPerEntry)
	evs := make([]*Event, 0, maxPerEntry)
	gatherTimer := time.NewTimer(time.Hour)
	gatherTimer.Stop()
	last := 0 // events in the previous batch
	for {
		ws = ws[:0]
		select {
		case w := <-p.waiting:
			ws = append(ws, w)
		case <-stop:
			// No Publish can add more (Run holds the gate): serve what is left.
			for {
				select {
				case w := <-p.waiting:
					w.done <- p.xadd(w.since.Add(p.cfg.Timeout), []*Event{&w.ev})
				default:
					return
				}
			}
		}
	gather:
		for len(ws) < maxPerEntry {
			select {
			case w := <-p.waiting:
				ws = append(ws, w)
			default:
				break gather
			}
		}
		if last > 1 && len(ws) < maxPerEntry {
			if d := time.Until(ws[0].since.Add(p.cfg.Gather)); d > 0 {
				gatherTimer.Reset(d)
			wait:
				for len(ws) < maxPerEntry {
					select {
					case w := <-p.waiting:
						ws = append(ws, w)
					case <-gatherTimer.C:
						break wait
					}
				}
				gatherTimer.Stop()
			}
		}
		last = len(ws)
		evs = evs[:0]
		for _, w := range ws {
			evs = append(evs, &w.ev)
		}
		// Waiters are taken in arrival order: the first has waited longest, and the
		// batch must be acknowledged within its budget, so no redirect waits for Redis
		// longer than cfg.Timeout in all, in-flight batch ahead of it included.
		err := p.xadd(ws[0].since.Add(p.cfg.Timeout), evs)
		for _, w := range ws {
			w.done <- err
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

// xadd appends evs to the stream as one entry, waiting for Redis until deadline.
func (p *Publisher) xadd(deadline time.Time, evs []*Event) error {
	bp := p.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	for _, ev := range evs {
		b = appendEvent(b, ev)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	// The command refers to b without copying it. On error the buffer is not
	// reused: a timed-out command may still be queued for writing.
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
	*bp = b
	p.bufs.Put(bp)
	if p.failures.Load() != 0 {
		p.failures.Store(0)
	}
	p.m.published.Add(float64(len(evs)))
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
		defer p.startBatchers()()
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

// startBatchers starts the group-commit batchers and returns the function that stops
// them: after it returns, every event handed to them has been answered.
func (p *Publisher) startBatchers() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range batchers {
		wg.Go(func() { p.batch(done) })
	}
	p.gate.Lock()
	p.running = true
	p.gate.Unlock()
	return func() {
		p.gate.Lock()
		p.running = false
		p.gate.Unlock()
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
