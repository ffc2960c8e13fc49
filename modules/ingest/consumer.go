package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"
)

// groupName is the consumer group every hop instance reads the click stream with.
const groupName = "hop-ingest"

// ConsumerConfig tunes the stream consumer. Zero values take the defaults.
type ConsumerConfig struct {
	// Prefix starts every Redis key; the stream is Prefix+"clicks".
	Prefix string
	// Name identifies this consumer in the group. It must be stable across restarts
	// (its pending entries are re-read at start) and distinct per instance
	// (default: the hostname).
	Name string
	// BatchSize is about how many clicks are read and written at once (default 5000).
	BatchSize int
	// Block is how long one XREADGROUP waits for new entries (default 1s).
	Block time.Duration
	// Linger is the least time between the starts of two batches when the first
	// emptied the stream (default 100ms; negative: none). Under steady traffic clicks
	// gather for that long and go to PostgreSQL in one transaction instead of dozens
	// of small ones, each with its own commit; a full read (a backlog) is followed at
	// once, and a click after a quiet spell is read at once. It delays a click by at
	// most Linger. At 24,000 redirects/s, 100ms rather than 50ms cost PostgreSQL ~2 µs
	// less per click (12.05 vs 9.9, alternating A/B) for 50ms more before a click is
	// in the stats, where the aggregator's 2s interval dominates.
	Linger time.Duration
	// ClaimIdle is how long an entry stays pending with another consumer before
	// XAUTOCLAIM takes it over (default 5s).
	ClaimIdle time.Duration
	// ClaimInterval is how often XAUTOCLAIM runs (default 5s).
	ClaimInterval time.Duration
	// TrimInterval is how often the stream is trimmed below what every group has
	// acknowledged (default 1s: at 50k clicks/s a second of stream is ~10 MB of Redis).
	TrimInterval time.Duration
	// StatsInterval is how often stream length, pending and lag metrics are
	// refreshed (default 5s).
	StatsInterval time.Duration
	// RetryMin and RetryMax bound the backoff while PostgreSQL or Redis fail
	// (defaults 100ms and 5s).
	RetryMin, RetryMax time.Duration
	// WriteTimeout bounds one batch write attempt (default 30s).
	WriteTimeout time.Duration
	// HousekeepingInterval is how often old visitor salts are deleted (default 1h).
	HousekeepingInterval time.Duration
	// GeoIPDB is an optional .mmdb country database; empty uses embedded data.
	GeoIPDB string
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Name == "" {
		host, _ := os.Hostname() // "" on error
		c.Name = cmp.Or(host, "hop")
	}
	c.BatchSize = cmp.Or(c.BatchSize, 5000)
	c.Block = cmp.Or(c.Block, time.Second)
	c.Linger = cmp.Or(c.Linger, 100*time.Millisecond)
	c.ClaimIdle = cmp.Or(c.ClaimIdle, 5*time.Second)
	c.ClaimInterval = cmp.Or(c.ClaimInterval, 5*time.Second)
	c.TrimInterval = cmp.Or(c.TrimInterval, time.Second)
	c.StatsInterval = cmp.Or(c.StatsInterval, 5*time.Second)
	c.RetryMin = cmp.Or(c.RetryMin, 100*time.Millisecond)
	c.RetryMax = cmp.Or(c.RetryMax, 5*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 30*time.Second)
	c.HousekeepingInterval = cmp.Or(c.HousekeepingInterval, time.Hour)
	return c
}

func (c ConsumerConfig) validate() error {
	switch {
	case c.BatchSize < 1:
		return fmt.Errorf("ingest consumer: BatchSize %d must be positive", c.BatchSize)
	case c.Block < time.Millisecond:
		return fmt.Errorf("ingest consumer: Block %s must be at least 1ms", c.Block)
	case c.ClaimIdle < time.Millisecond, c.ClaimInterval <= 0, c.TrimInterval <= 0, c.StatsInterval <= 0,
		c.RetryMin <= 0, c.RetryMax < c.RetryMin, c.WriteTimeout <= 0, c.HousekeepingInterval <= 0:
		return errors.New("ingest consumer: intervals must be positive and RetryMax >= RetryMin")
	}
	return nil
}

// Consumer moves clicks from the Redis Stream to click_logs: XREADGROUP in batches,
// XAUTOCLAIM of entries a dead consumer left pending, enrichment, one COPY per batch,
// XACK after commit, and trimming below what every group has acknowledged.
type Consumer struct {
	cfg    ConsumerConfig
	rdb    rueidis.Client
	key    string
	w      *writer
	salts  *saltStore
	closeG func() error
	logger *slog.Logger
	m      *consumerMetrics

	lastBatch atomic.Int64 // unix nanos of the last committed batch

	// perEntry is the number of events per stream entry seen in the last batch
	// (group commit puts up to maxPerEntry in one). Reads ask for BatchSize/perEntry
	// entries, so a batch holds about BatchSize events, not BatchSize entries: it
	// starts at the maximum, so the first read after a restart is bounded too.
	perEntry atomic.Int64
}

// A read is bounded whatever its entries hold: count never asks for more entries than
// readFactor×BatchSize clicks would fill if every entry were full, nor, when that is
// fewer, for more than minReadEntries (or BatchSize). Without the bound, a quiet spell
// (one click per entry) followed by a burst of full entries read 5000 full entries,
// 1.28 million clicks, at once: 625 MB. With it, one read holds at most 32,768 clicks
// at the default BatchSize, and single clicks still go 128 to a batch.
const (
	readFactor     = 4
	minReadEntries = 128
)

// count is how many entries to read or claim for a batch of about BatchSize events.
func (c *Consumer) count() int64 {
	batch := int64(c.cfg.BatchSize)
	limit := max(1, min(batch, minReadEntries), readFactor*batch/maxPerEntry)
	return min(limit, max(1, batch/max(1, c.perEntry.Load())))
}

// IngestHealth is the stream's state for /health.
type IngestHealth struct {
	StreamLength int64     `json:"stream_length"`
	Pending      int64     `json:"pending"`
	Lag          int64     `json:"lag"` // -1 when Redis cannot tell
	LastBatch    time.Time `json:"last_batch,omitzero"`
}

// NewConsumer returns a Consumer of the stream cfg.Prefix+"clicks". Its metrics are
// registered on reg when reg is not nil.
func NewConsumer(cfg ConsumerConfig, rdb rueidis.Client, pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) (*Consumer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if rdb == nil || pool == nil {
		return nil, errors.New("ingest consumer: needs Redis and PostgreSQL")
	}
	logger = cmp.Or(logger, slog.New(slog.DiscardHandler)).With("module", "ingest", "consumer", cfg.Name)
	salts := newSaltStore(pool)
	enr, closeGeo, err := newEnricher(cfg.GeoIPDB, salts)
	if err != nil {
		return nil, err
	}
	wm := newWriterMetrics("stream")
	c := &Consumer{
		cfg:    cfg,
		rdb:    rdb,
		key:    cfg.Prefix + "clicks",
		w:      &writer{pool: pool, enr: enr, logger: logger, m: wm},
		salts:  salts,
		closeG: closeGeo,
		logger: logger,
		m:      newConsumerMetrics(),
	}
	c.perEntry.Store(maxPerEntry)
	if err := register(reg, append(c.m.collectors(), wm.collectors()...)...); err != nil {
		_ = closeGeo()
		return nil, err
	}
	return c, nil
}

// Run consumes until ctx ends. The batch in hand when ctx ends is still committed and
// acknowledged (or left pending for the next start); then Run returns nil.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.closeG()
	bo := backoff{min: c.cfg.RetryMin, max: c.cfg.RetryMax}
	for {
		err := c.ensureGroup(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		c.logger.Warn("cannot create consumer group, retrying", "error", err)
		if !sleep(ctx, bo.next()) {
			return nil
		}
	}
	if !c.readOwnPending(ctx) {
		return nil
	}
	c.housekeep(ctx)
	now := time.Now()
	claimAt, trimAt, statsAt, houseAt := now, now.Add(c.cfg.TrimInterval), now, now.Add(c.cfg.HousekeepingInterval)
	var lingerUntil time.Time
	bo.reset()
	for ctx.Err() == nil {
		now = time.Now()
		if !now.Before(claimAt) {
			if !c.claim(ctx) {
				return nil
			}
			claimAt = now.Add(c.cfg.ClaimInterval)
		}
		if !now.Before(trimAt) {
			if err := c.trim(ctx); err != nil && ctx.Err() == nil {
				c.logger.Warn("stream trim failed", "error", err)
			}
			trimAt = now.Add(c.cfg.TrimInterval)
		}
		if !now.Before(statsAt) {
			if _, err := c.Health(ctx); err != nil && ctx.Err() == nil {
				c.logger.Debug("stream stats failed", "error", err)
			}
			statsAt = now.Add(c.cfg.StatsInterval)
		}
		if !now.Before(houseAt) {
			c.housekeep(ctx)
			houseAt = now.Add(c.cfg.HousekeepingInterval)
		}

		// Let a steady trickle gather into the next batch (see Linger).
		if wait := time.Until(lingerUntil); wait > 0 && !sleep(ctx, wait) {
			return nil
		}
		started := time.Now()
		entries, err := c.read(ctx, ">")
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isNoGroup(err) {
				// Redis restarted empty or the stream was deleted.
				c.logger.Warn("consumer group missing, creating it again")
				if err := c.ensureGroup(ctx); err == nil {
					continue
				}
			}
			c.logger.Warn("reading click stream failed, retrying", "error", err)
			sleep(ctx, bo.next())
			continue
		}
		bo.reset()
		drained := int64(len(entries)) < c.count() // else more may be waiting: go on at once
		if !c.process(ctx, entries) {
			return nil
		}
		lingerUntil = time.Time{}
		if len(entries) > 0 && drained {
			lingerUntil = started.Add(c.cfg.Linger)
		}
	}
	return nil
}

// ensureGroup creates the group at the stream's start, so entries added before it
// existed (or after Redis came back empty) are all read.
func (c *Consumer) ensureGroup(ctx context.Context) error {
	err := c.rdb.Do(ctx, c.rdb.B().XgroupCreate().Key(c.key).Group(groupName).Id("0").Mkstream().Build()).Error()
	if re, ok := rueidis.IsRedisErr(err); ok && re.IsBusyGroup() {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create consumer group: %w", err)
	}
	return nil
}

// isNoGroup reports that the group is gone: NOGROUP, or UNBLOCKED when the stream
// was deleted under a blocked XREADGROUP.
func isNoGroup(err error) bool {
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "NOGROUP") || strings.HasPrefix(msg, "UNBLOCKED")
}

// read returns up to BatchSize entries after id: ">" for new entries (blocking up to
// cfg.Block), or an ID to page through this consumer's own pending entries.
func (c *Consumer) read(ctx context.Context, id string) ([]rueidis.XRangeEntry, error) {
	b := c.rdb.B().Xreadgroup().Group(groupName, c.cfg.Name).Count(c.count())
	var cmd rueidis.Completed
	if id == ">" {
		cmd = b.Block(c.cfg.Block.Milliseconds()).Streams().Key(c.key).Id(id).Build()
	} else {
		cmd = b.Streams().Key(c.key).Id(id).Build()
	}
	res, err := c.rdb.Do(ctx, cmd).AsXRead()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read click stream: %w", err)
	}
	return res[c.key], nil
}

// readOwnPending re-processes what this consumer read but did not acknowledge before
// it last stopped. It reports false if ctx ended.
func (c *Consumer) readOwnPending(ctx context.Context) bool {
	bo := backoff{min: c.cfg.RetryMin, max: c.cfg.RetryMax}
	start := "0"
	for {
		entries, err := c.read(ctx, start)
		switch {
		case ctx.Err() != nil:
			return false
		case isNoGroup(err):
			return true // a new group has nothing pending; Run recreates it
		case err != nil:
			c.logger.Warn("reading own pending clicks failed, retrying", "error", err)
			if !sleep(ctx, bo.next()) {
				return false
			}
			continue
		case len(entries) == 0:
			return true
		}
		if !c.process(ctx, entries) {
			return false
		}
		start = entries[len(entries)-1].ID
	}
}

// claim takes over entries idle longer than ClaimIdle, whichever consumer held them.
// It reports false if ctx ended.
func (c *Consumer) claim(ctx context.Context) bool {
	idle := strconv.FormatInt(c.cfg.ClaimIdle.Milliseconds(), 10)
	start := "0-0"
	for ctx.Err() == nil {
		cmd := c.rdb.B().Xautoclaim().Key(c.key).Group(groupName).Consumer(c.cfg.Name).
			MinIdleTime(idle).Start(start).Count(c.count()).Build()
		arr, err := c.rdb.Do(ctx, cmd).ToArray()
		if err == nil && len(arr) < 2 {
			err = fmt.Errorf("XAUTOCLAIM reply has %d elements", len(arr))
		}
		var entries []rueidis.XRangeEntry
		if err == nil {
			start, err = arr[0].ToString()
		}
		if err == nil {
			entries, err = arr[1].AsXRange()
		}
		if err != nil {
			if ctx.Err() == nil && !isNoGroup(err) {
				c.logger.Warn("claiming idle clicks failed", "error", err)
			}
			return ctx.Err() == nil
		}
		if len(entries) > 0 {
			c.m.claimed.Add(float64(len(entries)))
			c.logger.Info("claimed clicks left pending by another consumer", "entries", len(entries))
			if !c.process(ctx, entries) {
				return false
			}
		}
		if start == "0-0" {
			return true
		}
	}
	return false
}

// process writes entries to click_logs, retrying with backoff while PostgreSQL fails,
// then acknowledges them. It reports false if ctx ended before the batch was
// committed; the entries then stay pending and are read again later.
func (c *Consumer) process(ctx context.Context, entries []rueidis.XRangeEntry) bool {
	if len(entries) == 0 {
		return true
	}
	ids := make([]string, 0, len(entries))
	// Sized for the events the last batch carried per entry, so it rarely grows.
	events := make([]Event, 0, len(entries)*int(max(1, c.perEntry.Load())))
	for _, e := range entries {
		ids = append(ids, e.ID)
		if e.FieldValues == nil {
			continue // deleted from the stream while pending: nothing to write
		}
		var err error
		if events, err = appendEvents(events, e.FieldValues[streamField]); err != nil {
			c.m.undecodable.Inc()
			c.logger.Error("undecodable click stream entry acknowledged and skipped", "id", e.ID, "error", err)
		}
	}
	c.perEntry.Store(max(1, (int64(len(events))+int64(len(entries))-1)/int64(len(entries))))
	bo := backoff{min: c.cfg.RetryMin, max: c.cfg.RetryMax}
	for {
		// An in-flight write is not cut short by shutdown: the batch in hand is
		// committed if PostgreSQL allows.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.WriteTimeout)
		err := c.w.write(wctx, events)
		cancel()
		if err == nil {
			break
		}
		c.logger.Warn("writing clicks failed, entries stay pending and are retried", "entries", len(events), "error", err)
		if ctx.Err() != nil || !sleep(ctx, bo.next()) {
			return false
		}
	}
	c.lastBatch.Store(time.Now().UnixNano())
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.rdb.Do(actx, c.rdb.B().Xack().Key(c.key).Group(groupName).Id(ids...).Build()).Error(); err != nil {
		// Committed but pending: a later claim replays them and the writer skips
		// the rows that exist.
		c.logger.Warn("acknowledging written clicks failed; they will be replayed idempotently", "entries", len(ids), "error", err)
	}
	return true
}

// groupInfo is one row of XINFO GROUPS.
type groupInfo struct {
	name          string
	pending       int64
	lastDelivered string
	lag           int64 // -1 when Redis cannot tell
}

func (c *Consumer) groups(ctx context.Context) ([]groupInfo, error) {
	arr, err := c.rdb.Do(ctx, c.rdb.B().XinfoGroups().Key(c.key).Build()).ToArray()
	if err != nil {
		if re, ok := rueidis.IsRedisErr(err); ok && strings.Contains(re.Error(), "no such key") {
			return nil, nil
		}
		return nil, fmt.Errorf("XINFO GROUPS: %w", err)
	}
	out := make([]groupInfo, 0, len(arr))
	for _, g := range arr {
		m, err := g.AsMap()
		if err != nil {
			return nil, fmt.Errorf("XINFO GROUPS: %w", err)
		}
		gi := groupInfo{lag: -1}
		name, pending, last, lag := m["name"], m["pending"], m["last-delivered-id"], m["lag"]
		gi.name, _ = name.ToString()
		gi.pending, _ = pending.AsInt64()
		gi.lastDelivered, _ = last.ToString()
		if v, err := lag.AsInt64(); err == nil {
			gi.lag = v
		}
		out = append(out, gi)
	}
	return out, nil
}

// trim removes entries below the oldest one some group has not acknowledged: for each
// group its smallest pending ID, or, with nothing pending, its last delivered ID.
// Entries never delivered to a group are above its last delivered ID, so nothing a
// group still needs is removed. "~" lets Redis trim whole nodes only, which trims
// less, never more.
func (c *Consumer) trim(ctx context.Context) error {
	groups, err := c.groups(ctx)
	if err != nil || len(groups) == 0 {
		return err
	}
	var minID streamID
	for i, g := range groups {
		idStr := g.lastDelivered
		if g.pending > 0 {
			arr, err := c.rdb.Do(ctx, c.rdb.B().Xpending().Key(c.key).Group(g.name).Build()).ToArray()
			if err != nil {
				return fmt.Errorf("XPENDING %s: %w", g.name, err)
			}
			if len(arr) < 2 {
				return nil
			}
			if idStr, err = arr[1].ToString(); err != nil {
				return nil // acknowledged meanwhile; try again next time
			}
		}
		id, ok := parseStreamID(idStr)
		if !ok {
			return fmt.Errorf("group %s: unparseable stream ID %q", g.name, idStr)
		}
		if i == 0 || id.less(minID) {
			minID = id
		}
	}
	if minID == (streamID{}) {
		return nil
	}
	n, err := c.rdb.Do(ctx, c.rdb.B().Xtrim().Key(c.key).Minid().Almost().Threshold(minID.String()).Build()).AsInt64()
	if err != nil {
		return fmt.Errorf("XTRIM MINID: %w", err)
	}
	c.m.trimmed.Add(float64(n))
	return nil
}

// streamID is a Redis Stream entry ID, milliseconds-sequence.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	var id streamID
	var err error
	if id.ms, err = strconv.ParseUint(ms, 10, 64); err != nil {
		return id, false
	}
	if ok {
		if id.seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
			return id, false
		}
	}
	return id, true
}

func (a streamID) less(b streamID) bool {
	return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq)
}

func (a streamID) String() string {
	return strconv.FormatUint(a.ms, 10) + "-" + strconv.FormatUint(a.seq, 10)
}

// Health reports the stream's length, this group's pending entries and lag, and when
// the consumer last committed a batch. It also refreshes the matching metrics.
func (c *Consumer) Health(ctx context.Context) (IngestHealth, error) {
	h := IngestHealth{Lag: -1}
	if t := c.lastBatch.Load(); t != 0 {
		h.LastBatch = time.Unix(0, t)
	}
	n, err := c.rdb.Do(ctx, c.rdb.B().Xlen().Key(c.key).Build()).AsInt64()
	if err != nil {
		return h, fmt.Errorf("XLEN: %w", err)
	}
	h.StreamLength = n
	groups, err := c.groups(ctx)
	if err != nil {
		return h, err
	}
	for _, g := range groups {
		if g.name == groupName {
			h.Pending, h.Lag = g.pending, g.lag
		}
	}
	c.m.streamLength.Set(float64(h.StreamLength))
	c.m.pending.Set(float64(h.Pending))
	c.m.lag.Set(float64(h.Lag))
	return h, nil
}

func (c *Consumer) housekeep(ctx context.Context) {
	if _, err := c.salts.purge(ctx, time.Now()); err != nil && ctx.Err() == nil {
		c.logger.Warn("visitor salt housekeeping failed", "error", err)
	}
}
