package ratelimit

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ulule/limiter/v3"
)

// failOpen is a limiter.Store that never fails: when the primary (Redis) store errors
// or is slower than timeout, it counts the error and answers from an in-process
// fallback store instead, so limits still roughly hold per instance. After an error it
// leaves the primary alone for cooldown, so a hung Redis costs one timeout per cooldown
// rather than one per request.
type failOpen struct {
	primary   limiter.Store
	fallback  limiter.Store
	timeout   time.Duration
	cooldown  time.Duration
	errors    prometheus.Counter // primary store failures and timeouts
	fallbacks prometheus.Counter // decisions taken by the fallback store
	logger    *slog.Logger

	downUntil atomic.Int64 // unix nanoseconds; the primary is skipped before it
	degraded  atomic.Bool  // whether the last primary attempt failed, to log transitions once
}

var _ limiter.Store = (*failOpen)(nil)

func (f *failOpen) Get(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return f.do(ctx, rate, func(ctx context.Context, s limiter.Store) (limiter.Context, error) {
		return s.Get(ctx, key, rate)
	})
}

func (f *failOpen) Increment(ctx context.Context, key string, count int64, rate limiter.Rate) (limiter.Context, error) {
	return f.do(ctx, rate, func(ctx context.Context, s limiter.Store) (limiter.Context, error) {
		return s.Increment(ctx, key, count, rate)
	})
}

func (f *failOpen) Peek(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	return f.do(ctx, rate, func(ctx context.Context, s limiter.Store) (limiter.Context, error) {
		return s.Peek(ctx, key, rate)
	})
}

func (f *failOpen) Reset(ctx context.Context, key string, rate limiter.Rate) (limiter.Context, error) {
	// Counts taken during an outage must not outlive a reset either.
	_, _ = f.fallback.Reset(ctx, key, rate)
	return f.do(ctx, rate, func(ctx context.Context, s limiter.Store) (limiter.Context, error) {
		return s.Reset(ctx, key, rate)
	})
}

func (f *failOpen) do(ctx context.Context, rate limiter.Rate, op func(context.Context, limiter.Store) (limiter.Context, error)) (limiter.Context, error) {
	if time.Now().UnixNano() >= f.downUntil.Load() {
		tctx, cancel := context.WithTimeout(ctx, f.timeout)
		lc, err := op(tctx, f.primary)
		cancel()
		if err == nil {
			if f.degraded.CompareAndSwap(true, false) {
				f.logger.Info("rate limiter store recovered")
			}
			return lc, nil
		}
		// A request abandoned by its client says nothing about Redis.
		if ctx.Err() == nil {
			f.errors.Inc()
			f.downUntil.Store(time.Now().Add(f.cooldown).UnixNano())
			if f.degraded.CompareAndSwap(false, true) {
				f.logger.Warn("rate limiter store failed; counting in memory", "err", err, "retry_in", f.cooldown)
			}
		}
	}
	f.fallbacks.Inc()
	lc, err := op(ctx, f.fallback)
	if err != nil {
		// The memory store does not fail; should it, the request still goes through.
		return limiter.Context{Limit: rate.Limit, Remaining: rate.Limit, Reset: time.Now().Add(rate.Period).Unix()}, nil
	}
	return lc, nil
}
