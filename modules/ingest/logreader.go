package ingest

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// logReaderConfig tunes the service that copies the local click log to PostgreSQL.
// Zero values take the defaults.
type logReaderConfig struct {
	// BatchSize is about how many clicks one COPY carries (set by New).
	BatchSize int
	// Linger is the least time between the starts of two batches when the first was
	// not full (default 100ms), so a steady flow goes in fewer, larger commits, as
	// the stream reader does; a full batch means a backlog, read on at once.
	Linger time.Duration
	// Poll is how often the log is looked at when no append woke the reader
	// (default 1s): after a failed write, or when the log was reopened.
	Poll time.Duration
	// TruncateInterval is the least time between two truncations of what PostgreSQL
	// has committed (default 1s; negative: after every batch); a truncation
	// rewrites the rest of a segment.
	TruncateInterval time.Duration
	// RetryMin and RetryMax bound the backoff while PostgreSQL fails (defaults 100ms
	// and 5s).
	RetryMin, RetryMax time.Duration
	// WriteTimeout bounds one batch write (default 30s).
	WriteTimeout time.Duration
	// ShutdownTimeout bounds the final drain (set by New).
	ShutdownTimeout time.Duration
}

func (c logReaderConfig) withDefaults() logReaderConfig {
	c.BatchSize = cmp.Or(c.BatchSize, defaultBatchSize)
	c.Linger = cmp.Or(c.Linger, 100*time.Millisecond)
	c.Poll = cmp.Or(c.Poll, time.Second)
	c.TruncateInterval = cmp.Or(c.TruncateInterval, time.Second)
	c.RetryMin = cmp.Or(c.RetryMin, 100*time.Millisecond)
	c.RetryMax = cmp.Or(c.RetryMax, 5*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 30*time.Second)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	return c
}

func (c logReaderConfig) validate() error {
	if c.BatchSize < 1 || c.Poll <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin ||
		c.WriteTimeout <= 0 || c.ShutdownTimeout <= 0 {
		return errors.New("ingest log reader: BatchSize and intervals must be positive and RetryMax >= RetryMin")
	}
	return nil
}

// logReader copies the local click log into click_logs: read a batch from where it
// left off, enrich, COPY, then (now and then) truncate what PostgreSQL committed. A
// crash between the COPY and the truncation replays those entries at the next start;
// the writer stores each event once.
type logReader struct {
	cfg    logReaderConfig
	log    *clickLog
	w      *writer
	logger *slog.Logger

	undecodable prometheus.Counter

	next uint64 // first entry not yet committed to PostgreSQL (0: not known yet)
	// linger is sleep; tests watch it.
	linger      func(ctx context.Context, d time.Duration) bool
	truncatedAt time.Time
	events      []Event
}

func newLogReader(cfg logReaderConfig, log *clickLog, w *writer, undecodable prometheus.Counter, logger *slog.Logger) (*logReader, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &logReader{cfg: cfg, log: log, w: w, undecodable: undecodable, logger: logger, linger: sleep}, nil
}

// Run copies until ctx ends, then drains what it can within the shutdown timeout.
func (r *logReader) Run(ctx context.Context) error {
	bo := backoff{min: r.cfg.RetryMin, max: r.cfg.RetryMax}
	poll := time.NewTicker(r.cfg.Poll)
	defer poll.Stop()
	for ctx.Err() == nil {
		started := time.Now()
		n, full, err := r.runOnce(ctx)
		switch {
		case err != nil:
			r.logger.Warn("copying the local click log to PostgreSQL failed; its clicks stay on disk and are retried", "error", err)
			sleep(ctx, bo.next())
			continue
		case n > 0 && full:
			bo.reset()
			continue // a backlog (the batch was full): read on at once
		}
		bo.reset()
		r.maybeTruncate(false)
		if n > 0 && !r.linger(ctx, time.Until(started.Add(r.cfg.Linger))) {
			break
		}
		select {
		case <-ctx.Done():
		case <-r.log.appended:
		case <-poll.C:
		}
	}
	return r.drain(ctx)
}

// drain copies what is left at shutdown, with a fresh deadline.
func (r *logReader) drain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	for {
		n, _, err := r.runOnce(ctx)
		if err != nil || n == 0 {
			r.maybeTruncate(true)
			if _, entries := r.log.usage(); entries > 0 {
				r.logger.Info("clicks stay in the local click log for the next start", "entries", entries, "error", err)
			}
			return nil
		}
	}
}

// runOnce copies one batch and returns how many entries it took from the log, and
// whether the batch was full (BatchSize clicks: more may be waiting).
func (r *logReader) runOnce(ctx context.Context) (n int, full bool, err error) {
	first, last, ok := r.log.bounds()
	if !ok {
		return 0, false, nil // broken: nothing readable until the writer reopens it
	}
	if r.next < first {
		r.next = first
	}
	if r.next > last {
		return 0, false, nil
	}
	events, next, bad, err := r.log.read(r.next, r.cfg.BatchSize, r.events[:0])
	r.events = events[:0]
	if err != nil {
		return 0, false, err
	}
	if bad > 0 {
		r.undecodable.Add(float64(bad))
		r.logger.Error("undecodable local click log entries skipped", "entries", bad)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.WriteTimeout)
	err = r.w.write(wctx, events)
	cancel()
	clear(r.events[:len(events)]) // keep no event's strings alive until the next batch
	if err != nil {
		return 0, false, err
	}
	full = len(events) >= r.cfg.BatchSize
	n = int(next - r.next)
	r.next = next
	return n, full, nil
}

// maybeTruncate drops what PostgreSQL committed, at most once per TruncateInterval
// unless now.
func (r *logReader) maybeTruncate(now bool) {
	if r.next == 0 || (!now && time.Since(r.truncatedAt) < r.cfg.TruncateInterval) {
		return
	}
	r.truncatedAt = time.Now()
	if err := r.log.truncate(r.next - 1); err != nil {
		r.logger.Warn("truncating the local click log failed", "error", err)
	}
}
