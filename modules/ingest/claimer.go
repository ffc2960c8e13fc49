package ingest

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

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
	// ConsumerIdle is how long another consumer of the group must have been idle, with
	// nothing pending, before it is deleted (default 1h, at least Idle). The default
	// name carries the hostname, which a container gets anew at each deploy: without
	// this the group would keep every name it ever had.
	ConsumerIdle time.Duration
}

// claimer takes over entries that a consumer read and did not acknowledge, because it
// died or hangs, and writes them like the reader does. Then it deletes the consumers
// that have stayed idle with nothing pending.
type claimer struct {
	cfg    claimerConfig
	s      *stream
	remove *rueidis.Lua // removeScript
}

func newClaimer(cfg claimerConfig, s *stream) (*claimer, error) {
	cfg.retryConfig = cfg.retryConfig.withDefaults()
	cfg.Interval = cmp.Or(cfg.Interval, 5*time.Second)
	cfg.Idle = cmp.Or(cfg.Idle, 5*time.Second)
	cfg.ConsumerIdle = cmp.Or(cfg.ConsumerIdle, time.Hour)
	if err := cfg.retryConfig.validate(); err != nil {
		return nil, fmt.Errorf("ingest claimer: %w", err)
	}
	if cfg.Interval <= 0 || cfg.Idle < time.Millisecond {
		return nil, fmt.Errorf("ingest claimer: Interval and Idle must be positive")
	}
	if cfg.ConsumerIdle < cfg.Idle {
		return nil, fmt.Errorf("ingest claimer: ConsumerIdle %s must be at least Idle %s", cfg.ConsumerIdle, cfg.Idle)
	}
	return &claimer{cfg: cfg, s: s, remove: rueidis.NewLuaScript(removeScript)}, nil
}

func (c *claimer) Run(ctx context.Context) error {
	return tick.Every(ctx, c.cfg.Interval, func(ctx context.Context) {
		if err := c.runOnce(ctx); err != nil && ctx.Err() == nil {
			c.s.logger.Warn("claiming idle clicks failed", "error", err)
		}
	})
}

// runOnce claims and writes every entry idle longer than Idle, page by page, then
// deletes the consumers left idle with nothing pending.
func (c *claimer) runOnce(ctx context.Context) error {
	if err := c.claim(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	return c.removeIdleConsumers(ctx)
}

func (c *claimer) claim(ctx context.Context) error {
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

// removeScript first marks consumer ARGV[2] (this instance) alive now in the hash
// KEYS[2]. Then it deletes the consumers of group ARGV[1] on stream KEYS[1] that have
// nothing pending, have been idle at least ARGV[3] ms, and were not marked alive
// within that time, and returns their names; marks that old are forgotten. Check and
// delete are one step: a consumer deleted with entries pending would take them out of
// the pending list, and no claim would ever write them. The marks keep live instances
// of a quiet stream: before Redis 7.2 a blocking read that gets nothing leaves a
// consumer's idle time growing. Fields are looked up by name, since Redis versions add
// some ("inactive").
const removeScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minIdle = tonumber(ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], now)
local r = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if r.err then return r end
local removed = {}
for _, c in ipairs(r) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  local pending, idle = tonumber(f['pending']), tonumber(f['idle'])
  local seen = tonumber(redis.call('HGET', KEYS[2], f['name']) or '0')
  if f['name'] ~= ARGV[2] and pending == 0 and idle and idle >= minIdle and now - seen >= minIdle then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    removed[#removed + 1] = f['name']
  end
end
local marks = redis.call('HGETALL', KEYS[2])
for i = 1, #marks, 2 do
  if now - tonumber(marks[i + 1]) >= minIdle then redis.call('HDEL', KEYS[2], marks[i]) end
end
return removed`

// removeIdleConsumers deletes the group's consumers that have been idle ConsumerIdle
// with nothing pending, this instance's own excepted: instances gone for good (a new
// hostname per deploy). One that comes back is made anew by its next read.
func (c *claimer) removeIdleConsumers(ctx context.Context) error {
	minIdle := strconv.FormatInt(c.cfg.ConsumerIdle.Milliseconds(), 10)
	names, err := c.remove.Exec(ctx, c.s.rdb, []string{c.s.key, c.s.key + ":alive"}, []string{groupName, c.s.name, minIdle}).AsStrSlice()
	if isNoGroup(err) || isNoStream(err) {
		return nil // the reader recreates the group
	}
	if err != nil {
		return fmt.Errorf("remove idle consumers: %w", err)
	}
	for _, name := range names {
		c.s.m.consumersRemoved.Inc()
		c.s.logger.Info("removed idle stream consumer", "removed_consumer", name)
	}
	return nil
}
