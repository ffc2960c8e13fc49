package ingest

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/hop-dev/hop/internal/tick"
)

// claimerConfig tunes the claimer. Zero values take the defaults.
type claimerConfig struct {
	retryConfig
	// Interval is how often XAUTOCLAIM runs (default 5s).
	Interval time.Duration
	// Idle is how long an entry stays pending with another consumer before it is
	// taken over (default 5s).
	Idle time.Duration
}

// claimer takes over entries that a consumer read and did not acknowledge, because it
// died or hangs, and writes them like the reader does.
type claimer struct {
	cfg claimerConfig
	s   *stream
}

func newClaimer(cfg claimerConfig, s *stream) (*claimer, error) {
	cfg.retryConfig = cfg.retryConfig.withDefaults()
	cfg.Interval = cmp.Or(cfg.Interval, 5*time.Second)
	cfg.Idle = cmp.Or(cfg.Idle, 5*time.Second)
	if err := cfg.retryConfig.validate(); err != nil {
		return nil, fmt.Errorf("ingest claimer: %w", err)
	}
	if cfg.Interval <= 0 || cfg.Idle < time.Millisecond {
		return nil, fmt.Errorf("ingest claimer: Interval and Idle must be positive")
	}
	return &claimer{cfg: cfg, s: s}, nil
}

func (c *claimer) Run(ctx context.Context) error {
	return tick.Every(ctx, c.cfg.Interval, func(ctx context.Context) {
		if err := c.runOnce(ctx); err != nil && ctx.Err() == nil {
			c.s.logger.Warn("claiming idle clicks failed", "error", err)
		}
	})
}

// runOnce claims and writes every entry idle longer than Idle, page by page.
func (c *claimer) runOnce(ctx context.Context) error {
	idle := strconv.FormatInt(c.cfg.Idle.Milliseconds(), 10)
	start := "0-0"
	for ctx.Err() == nil {
		more, err := c.claimPage(ctx, idle, &start)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// claimPage claims and writes one page after *start and moves *start on; more is
// false once the pending list has been walked.
func (c *claimer) claimPage(ctx context.Context, idle string, start *string) (more bool, err error) {
	c.s.busy.Lock()
	defer c.s.busy.Unlock()
	cmd := c.s.rdb.B().Xautoclaim().Key(c.s.key).Group(groupName).Consumer(c.s.name).
		MinIdleTime(idle).Start(*start).Count(c.s.count()).Build()
	arr, err := c.s.rdb.Do(ctx, cmd).ToArray()
	if isNoGroup(err) {
		return false, nil // the reader recreates the group
	}
	if err == nil && len(arr) < 2 {
		err = fmt.Errorf("XAUTOCLAIM reply has %d elements", len(arr))
	}
	if err != nil {
		return false, fmt.Errorf("XAUTOCLAIM: %w", err)
	}
	if *start, err = arr[0].ToString(); err != nil {
		return false, fmt.Errorf("XAUTOCLAIM: %w", err)
	}
	entries, err := arr[1].AsXRange()
	if err != nil {
		return false, fmt.Errorf("XAUTOCLAIM: %w", err)
	}
	if len(entries) > 0 {
		c.s.m.claimed.Add(float64(len(entries)))
		c.s.logger.Info("claimed clicks left pending by another consumer", "entries", len(entries))
		if !c.s.process(ctx, entries, c.cfg.retryConfig) {
			return false, nil
		}
	}
	return *start != "0-0", nil
}
