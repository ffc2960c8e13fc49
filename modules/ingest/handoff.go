package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hop-dev/hop/internal/tick"
	"github.com/redis/rueidis"
)

// handoffConfig tunes the hand-off to the Redis Stream. Zero values take the defaults.
type handoffConfig struct {
	// Key is the stream (set by New).
	Key string
	// Timeout bounds how long a redirect waits for Redis to acknowledge an XADD
	// before the click goes to the local click log (default 50ms).
	Timeout time.Duration
	// Gather is how long a batch of concurrent clicks waits for more before its XADD,
	// counted from its first click's arrival (default 300µs; negative: none; at most
	// Timeout/4). It applies only while clicks arrive together (the previous batch
	// held more than one), so a lone click is never held back.
	Gather time.Duration
	// BreakerThreshold is the number of consecutive Redis failures that open the
	// circuit breaker, after which clicks go to the local log (default 3).
	BreakerThreshold int
}

func (c handoffConfig) withDefaults() handoffConfig {
	c.Timeout = cmp.Or(c.Timeout, 50*time.Millisecond)
	c.Gather = cmp.Or(c.Gather, 300*time.Microsecond)
	c.BreakerThreshold = cmp.Or(c.BreakerThreshold, 3)
	return c
}

func (c handoffConfig) validate() error {
	switch {
	case c.Key == "":
		return errors.New("ingest hand-off: no stream key")
	case c.Timeout < 0 || c.Timeout > time.Second:
		return fmt.Errorf("ingest hand-off: Timeout %s must be between 0 and 1s", c.Timeout)
	case c.Gather > c.Timeout/4:
		return fmt.Errorf("ingest hand-off: Gather %s must be at most a quarter of Timeout %s", c.Gather, c.Timeout)
	case c.BreakerThreshold < 1:
		return errors.New("ingest hand-off: BreakerThreshold must be positive")
	}
	return nil
}

// errBreakerOpen sends a click to the local log without trying Redis.
var errBreakerOpen = errors.New("redis circuit breaker open")

// handoff puts clicks into the Redis Stream with group commit: while Run is running,
// publish appends its event to the batch being filled and waits for that batch's XADD,
// so under load one round trip and one stream entry carry many clicks. One sender
// takes batches one at a time: while its XADD is on the wire the next batch fills, so
// batches grow with load.
type handoff struct {
	cfg    handoffConfig
	rdb    rueidis.Client
	ledger *ledger
	m      *pipelineMetrics
	logger *slog.Logger
	bufs   sync.Pool // *[]byte stream entry buffers, empty

	// Under mu: running tells publish whether the sender will take its event (Run
	// clears it before stopping the sender), and the group-commit queue.
	mu      sync.Mutex
	running bool
	batchQueue

	// Circuit breaker: consecutive failures open it; the probe closes it.
	failures atomic.Int64
	open     atomic.Bool
}

func newHandoff(cfg handoffConfig, rdb rueidis.Client, led *ledger, m *pipelineMetrics, logger *slog.Logger) (*handoff, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &handoff{cfg: cfg, rdb: rdb, ledger: led, m: m, logger: logger, batchQueue: batchQueue{kick: make(chan struct{}, 1), split: true}}
	h.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	return h, nil
}

// batch is one stream entry or local log entry in the making: the events of
// concurrent clicks, encoded back to back, and the outcome for every click waiting on
// it.
type batch struct {
	entry *[]byte // pooled
	// campaigns is a stream entry's campaignField: nil until a tagged event joins.
	campaigns []byte
	n         int           // events in entry
	since     time.Time     // when its first event arrived
	done      chan struct{} // closed once err is set
	err       error
}

// batchQueue is the group-commit queue that the stream hand-off and the local log
// share: filling is the batch new events join, full holds batches that reached
// maxPerEntry, oldest first, and kick wakes the sender. Its owner's mutex guards it.
type batchQueue struct {
	filling *batch
	full    []*batch
	kick    chan struct{}
	// split puts campaign parameters in batch.campaigns (stream entries) instead of
	// inline (local log entries); see codec.go.
	split bool
}

// joinLocked adds ev to the filling batch, which the owner has started when there
// was none, and reports whether the sender must be woken (the batch's first event, or
// it filled up). The owner's mutex is held; call wake after releasing it.
func (q *batchQueue) joinLocked(ev *Event) (b *batch, kick bool) {
	b = q.filling
	if q.split {
		*b.entry, b.campaigns = appendEventSplit(*b.entry, b.campaigns, ev, b.n)
	} else {
		*b.entry = appendEvent(*b.entry, ev)
	}
	b.n++
	kick = b.n == 1
	if b.n == maxPerEntry {
		q.full = append(q.full, b)
		q.filling, kick = nil, true
	}
	return b, kick
}

// gatherLeftLocked is how long the filling batch may still wait for more clicks: until
// it is gather old. None when nothing is filling or a full batch is waiting. The
// owner's mutex is held.
func (q *batchQueue) gatherLeftLocked(gather time.Duration) time.Duration {
	if q.filling == nil || len(q.full) > 0 {
		return 0
	}
	return time.Until(q.filling.since.Add(gather))
}

// wake nudges the sender unless a wake-up is pending already.
func (q *batchQueue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// maxPerEntry bounds the clicks in one stream or log entry.
const maxPerEntry = 256

// publish puts ev into the stream: in the batch being filled while Run is running,
// else with an XADD of its own. It fails at once while the breaker is open.
func (h *handoff) publish(ev *Event) error {
	if h.open.Load() {
		return errBreakerOpen
	}
	h.mu.Lock()
	if !h.running {
		h.mu.Unlock()
		bp := h.bufs.Get().(*[]byte)
		var campaigns []byte
		*bp, campaigns = appendEventSplit(*bp, nil, ev, 0)
		return h.xadd(time.Now().Add(h.cfg.Timeout), bp, campaigns, 1)
	}
	if h.filling == nil {
		h.filling = h.newBatch()
	}
	b, kick := h.joinLocked(ev)
	h.mu.Unlock()
	if kick {
		h.wake()
	}
	<-b.done
	return b.err
}

func (h *handoff) newBatch() *batch {
	return &batch{entry: h.bufs.Get().(*[]byte), since: time.Now(), done: make(chan struct{})}
}

// Run sends batches until ctx ends, then the batches already joined: after it
// returns, every publish that joined a batch has its answer.
func (h *handoff) Run(ctx context.Context) error {
	h.mu.Lock()
	h.running = true
	h.mu.Unlock()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { h.send(stop) })
	<-ctx.Done()
	h.mu.Lock()
	h.running = false
	h.mu.Unlock()
	close(stop)
	wg.Wait()
	return nil
}

// send XADDs batches until stop is closed, then the batches left. Batches go in the
// order they started, and a batch's XADD gets what is left of its first event's
// budget: no redirect waits for Redis longer than cfg.Timeout in all.
func (h *handoff) send(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	last := 0 // events in the previous batch
	for {
		b := h.next(last > 1, timer, stop)
		if b == nil {
			return
		}
		last = b.n
		b.err = h.xadd(b.since.Add(h.cfg.Timeout), b.entry, b.campaigns, b.n)
		close(b.done)
	}
}

// next returns the batch to send next, blocking until there is one: the oldest full
// batch, else the one being filled. While clicks arrive together (gather) a filling
// batch first waits up to cfg.Gather from its first click for more. Once stop is
// closed it returns what is left without gathering, then nil.
func (h *handoff) next(gather bool, timer *time.Timer, stop <-chan struct{}) *batch {
	stopped := false
	for {
		h.mu.Lock()
		if len(h.full) > 0 {
			b := h.full[0]
			h.full = append(h.full[:0], h.full[1:]...)
			h.mu.Unlock()
			return b
		}
		b := h.filling
		var wait time.Duration
		if gather && !stopped {
			wait = h.gatherLeftLocked(h.cfg.Gather)
		}
		if b != nil && wait <= 0 {
			h.filling = nil
			h.mu.Unlock()
			return b
		}
		h.mu.Unlock()
		switch {
		case b != nil: // gathering: until its time is up or a batch is full
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-h.kick:
			case <-stop:
				stopped = true
			}
			timer.Stop()
		case stopped:
			return nil
		default:
			select {
			case <-h.kick:
			case <-stop:
				stopped = true
			}
		}
	}
}

// xadd appends entry, n encoded events, and their campaigns (none: nil) to the
// stream, waiting for Redis until deadline. entry goes back to the pool unless the
// XADD failed: a timed-out command may still be queued for writing, and it refers to
// entry without copying it.
func (h *handoff) xadd(deadline time.Time, entry *[]byte, campaigns []byte, n int) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	b := *entry
	fv := h.rdb.B().Xadd().Key(h.cfg.Key).Id("*").FieldValue().FieldValue(streamField, rueidis.BinaryString(b))
	if len(campaigns) > 0 {
		fv = fv.FieldValue(campaignField, rueidis.BinaryString(campaigns))
	}
	cmd := fv.Build()
	id, err := h.rdb.Do(ctx, cmd).ToString()
	cancel()
	if err != nil {
		if h.failures.Add(1) >= int64(h.cfg.BreakerThreshold) && h.open.CompareAndSwap(false, true) {
			h.m.breakerOpen.Set(1)
			h.logger.Warn("Redis failing, clicks go to the local click log until it answers again", "error", err)
			spillUndelivered(h.ledger, h.logger)
		}
		return err
	}
	if sid, ok := parseStreamID(id); ok {
		h.ledger.add(sid, n, b) // copies b, before it goes back to the pool
	}
	*entry = b[:0]
	h.bufs.Put(entry)
	if h.failures.Load() != 0 {
		h.failures.Store(0)
	}
	h.m.published.Add(float64(n))
	return nil
}

// spillUndelivered copies the clicks of entries the group has not acknowledged to the
// local click log: Redis is failing, and a Redis without persistence comes back
// without them. Until Redis fails they live in its memory and the ledger's.
func spillUndelivered(l *ledger, logger *slog.Logger) {
	kept, gone, err := l.spillAll()
	if err != nil {
		logger.Error("Redis failing: clicks published but not yet acknowledged could not be copied to the local click log; they are lost if Redis restarts without persistence",
			"clicks", gone, "error", err)
		return
	}
	if kept > 0 {
		logger.Warn("Redis failing: clicks published but not yet acknowledged copied to the local click log, in case Redis comes back without them", "clicks", kept)
	}
}

// probe closes an open breaker once Redis answers a PING within the timeout.
func (h *handoff) probe(ctx context.Context) {
	if !h.open.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	if err := h.rdb.Do(ctx, h.rdb.B().Ping().Build()).Error(); err != nil {
		return
	}
	h.failures.Store(0)
	h.open.Store(false)
	h.m.breakerOpen.Set(0)
	h.logger.Info("Redis answers again, clicks go to the stream")
}

// probeConfig tunes the breaker probe.
type probeConfig struct {
	// Interval is how often an open breaker pings Redis (default 1s).
	Interval time.Duration
}

// probeService closes the hand-off's breaker once Redis answers, on its own ticker,
// so no other loop's retries delay it.
type probeService struct {
	cfg probeConfig
	h   *handoff
}

func newProbe(cfg probeConfig, h *handoff) (*probeService, error) {
	cfg.Interval = cmp.Or(cfg.Interval, time.Second)
	if cfg.Interval < 0 {
		return nil, errors.New("ingest probe: Interval must be positive")
	}
	return &probeService{cfg: cfg, h: h}, nil
}

func (s *probeService) Run(ctx context.Context) error {
	return tick.Every(ctx, s.cfg.Interval, s.runOnce)
}

func (s *probeService) runOnce(ctx context.Context) { s.h.probe(ctx) }
