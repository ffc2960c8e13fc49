package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/hopproc"
)

// scenario is one fault: inject breaks something while the load runs, heal restarts
// what it broke (the load still running).
type scenario struct {
	name, what string
	redis      bool // hop runs with Redis
	instances  int
	inject     func(e *env) error
	heal       func(e *env) error
}

// allScenarios are the faults of issue 14, in its order.
func allScenarios() []scenario {
	return []scenario{
		{
			name: "kill9-redis", what: "kill -9 hop under load (Redis up), restart it", redis: true, instances: 1,
			inject: func(e *env) error { e.hops[0].kill9(); return nil },
			heal:   func(e *env) error { return e.hops[0].start() },
		},
		{
			name: "kill9-noredis", what: "kill -9 hop under load without Redis (the local log is the stream), restart it", instances: 1,
			inject: func(e *env) error { e.hops[0].kill9(); return nil },
			heal:   func(e *env) error { return e.hops[0].start() },
		},
		{
			name: "redis-killed", what: "kill -9 Redis under load; clicks fall back to the local log; restart Redis (empty)", redis: true, instances: 1,
			inject: func(e *env) error { e.redis.kill(); return nil },
			heal:   func(e *env) error { return e.redis.start() },
		},
		{
			name: "redis-empty", what: "stop PostgreSQL so the stream backs up, restart Redis empty, start PostgreSQL", redis: true, instances: 1,
			inject: func(e *env) error {
				e.pg.stopImmediate()
				e.sleep(e.phase / 2)
				e.redis.kill()
				return e.redis.start()
			},
			heal: func(e *env) error { return e.pg.start() },
		},
		{
			name: "pg-stopped-redis", what: "stop PostgreSQL (immediate) under load with Redis, start it", redis: true, instances: 1,
			inject: func(e *env) error { e.pg.stopImmediate(); return nil },
			heal:   func(e *env) error { return e.pg.start() },
		},
		{
			name: "pg-stopped-noredis", what: "stop PostgreSQL (immediate) under load without Redis, start it", instances: 1,
			inject: func(e *env) error { e.pg.stopImmediate(); return nil },
			heal:   func(e *env) error { return e.pg.start() },
		},
		{
			name: "both-down", what: "kill Redis and stop PostgreSQL under load, then kill -9 hop; start all three", redis: true, instances: 1,
			inject: func(e *env) error {
				e.redis.kill()
				e.pg.stopImmediate()
				// hop notices a dead Redis at once when its reader was waiting on it, else
				// within about 2s (the trimmer's interval and timeout), and then copies what
				// Redis held unacknowledged to disk; a hop killed sooner loses those.
				e.sleep(max(e.phase/2, 2500*time.Millisecond))
				e.hops[0].kill9()
				return nil
			},
			heal: func(e *env) error {
				if err := e.pg.start(); err != nil {
					return err
				}
				if err := e.redis.start(); err != nil {
					return err
				}
				return e.hops[0].start()
			},
		},
		{
			name: "sigterm", what: "SIGTERM hop under load (graceful drain), restart it", redis: true, instances: 1,
			inject: func(e *env) error { return e.hops[0].term() },
			heal:   func(e *env) error { return e.hops[0].start() },
		},
		{
			name: "two-instances", what: "two hops on one stream and database; kill -9 one under load, restart it", redis: true, instances: 2,
			inject: func(e *env) error { e.hops[1].kill9(); return nil },
			heal:   func(e *env) error { return e.hops[1].start() },
		},
	}
}

// options size a run.
type options struct {
	phase         time.Duration // load before the fault, during it, and after the heal
	conns         int           // concurrent connections
	links         int
	drain         time.Duration // how long the pipeline may take to settle after the load
	keep          bool          // keep the scratch directory
	keepOnFailure bool          // keep it when a scenario fails
	verbose       func(format string, args ...any)
}

// env is one scenario's world: its own database on the private cluster, its own
// Redis, its hop instances and the load.
type env struct {
	ctx   context.Context
	opts  options
	phase time.Duration
	dir   string
	pg    *pgCluster
	redis *redisServer
	hops  []*hop
	db    string
	pool  *pgxpool.Pool
	load  *load
}

func (e *env) sleep(d time.Duration) {
	select {
	case <-e.ctx.Done():
	case <-time.After(d):
	}
}

// runScenario sets the scenario up, runs the load with the fault in its middle and
// returns the verified counts.
func runScenario(ctx context.Context, ps *procs, pg *pgCluster, hopBin, root string, sc scenario, opts options) (res result, err error) {
	res.name = sc.name
	e := &env{ctx: ctx, opts: opts, phase: opts.phase, pg: pg, dir: filepath.Join(root, sc.name), db: "chaos_" + strings.ReplaceAll(sc.name, "-", "_")}
	if err := mkdirAll(e.dir); err != nil {
		return res, err
	}
	if err := pg.exec(ctx, "CREATE DATABASE "+pgx.Identifier{e.db}.Sanitize()+" TEMPLATE chaos_tpl"); err != nil {
		return res, fmt.Errorf("create database: %w", err)
	}
	redisURL := ""
	if sc.redis {
		if e.redis, err = newRedisServer(ps, e.dir, "redis"); err != nil {
			return res, err
		}
		redisURL = e.redis.url()
	}
	for i := range sc.instances {
		port, err := hopproc.FreePort()
		if err != nil {
			return res, err
		}
		h := &hop{ps: ps, bin: hopBin, name: fmt.Sprintf("hop%d", i+1), dir: filepath.Join(e.dir, fmt.Sprintf("hop%d", i+1)), port: port,
			dbURL: pg.url(e.db), redisURL: redisURL, prefix: "chaos:"}
		if err := mkdirAll(h.dir); err != nil {
			return res, err
		}
		h.logPath = filepath.Join(h.dir, "hop.log")
		if err := h.start(); err != nil {
			return res, err
		}
		e.hops = append(e.hops, h)
	}
	defer func() {
		// Stop this scenario's processes now (the run's cleanup would too, later).
		// Everything is verified by then: no need to wait for a graceful drain.
		for _, h := range e.hops {
			h.p.Kill()
		}
		if e.redis != nil {
			e.redis.kill()
		}
	}()
	if e.pool, err = pgxpool.New(ctx, pg.url(e.db)); err != nil {
		return res, err
	}
	defer e.pool.Close()
	slugs, err := e.hops[0].createLinks(ctx, opts.links)
	if err != nil {
		return res, err
	}
	var targets []string
	for _, h := range e.hops {
		targets = append(targets, h.addr())
	}
	e.load = newLoad(slugs, targets)
	e.load.run(opts.conns)
	loadStopped := false
	defer func() {
		if !loadStopped {
			e.load.finish()
		}
	}()

	e.sleep(opts.phase)
	atInject := e.load.answeredN.Load()
	opts.verbose("%s: %d answered, injecting the fault", sc.name, atInject)
	if err := sc.inject(e); err != nil {
		return res, fmt.Errorf("inject: %w", err)
	}
	e.sleep(opts.phase)
	opts.verbose("%s: %d answered, healing", sc.name, e.load.answeredN.Load())
	// Recovery counts from the start of the heal: a restart's start-up is part of it.
	healed := time.Now()
	atHeal := e.load.answeredN.Load()
	during := atHeal - atInject
	if err := sc.heal(e); err != nil {
		return res, fmt.Errorf("heal: %w", err)
	}
	var (
		recMu     sync.Mutex
		recovered time.Duration
	)
	rctx, stopRec := context.WithCancel(ctx)
	var recWG sync.WaitGroup
	recWG.Go(func() {
		// Recovered: everything answered up to the heal is stored and counted.
		for rctx.Err() == nil {
			var rows, counted int64
			err := e.pool.QueryRow(rctx, `SELECT (SELECT count(*) FROM click_logs),
       (SELECT coalesce(sum(clicks + bot_clicks), 0)::int8 FROM daily_stats)`).Scan(&rows, &counted)
			if err == nil && rows >= atHeal && counted >= atHeal {
				recMu.Lock()
				recovered = time.Since(healed)
				recMu.Unlock()
				return
			}
			select {
			case <-rctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	e.sleep(opts.phase)
	e.load.finish()
	loadStopped = true
	opts.verbose("%s: load stopped, %d answered; waiting for ingest and the aggregator", sc.name, e.load.answeredN.Load())
	settled, note := e.waitSettled(opts.drain)
	recWG.Wait()
	stopRec()
	res, err = e.verify(ctx, sc.name)
	if err != nil {
		return res, err
	}
	res.during = during
	recMu.Lock()
	res.recover = recovered
	recMu.Unlock()
	if res.recover == 0 {
		res.recover = settled
	}
	if note != "" {
		res.problems = append(res.problems, note)
	}
	for _, h := range e.hops {
		if d, err := h.metric(ctx, "hop_ingest_dropped_total"); err == nil && d > 0 {
			res.problems = append(res.problems, fmt.Sprintf("%s dropped %.0f clicks (hop_ingest_dropped_total)", h.name, d))
		}
		if r, err := h.metric(ctx, "hop_ingest_stream_resets_total"); err == nil && r > 0 {
			res.info = append(res.info, fmt.Sprintf("%s saw %.0f stream reset(s)", h.name, r))
		}
	}
	return res, nil
}

// waitSettled waits until every instance's ingest has drained, click_logs holds at
// least every answered click, and the aggregator has passed every stored row. It
// returns the time that took, or a note saying what did not settle in time.
func (e *env) waitSettled(timeout time.Duration) (time.Duration, string) {
	start := time.Now()
	answered := e.load.answeredN.Load()
	var last string
	for {
		last = e.settled(answered)
		if last == "" {
			return time.Since(start), ""
		}
		if time.Since(start) > timeout || e.ctx.Err() != nil {
			return time.Since(start), fmt.Sprintf("not settled after %s: %s", timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settled returns "" when the pipeline has settled, else what it still waits for.
func (e *env) settled(answered int64) string {
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	for _, h := range e.hops {
		ih, err := hopproc.ReadIngestHealth(ctx, h.base(), apiKey) // details need the key
		if err != nil {
			return fmt.Sprintf("%s health: %v", h.name, err)
		}
		if !ih.Drained() {
			return fmt.Sprintf("%s ingest not drained: %+v", h.name, ih)
		}
	}
	var rows int64
	var caughtUp bool
	err := e.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM click_logs),
       NOT EXISTS (SELECT 1 FROM click_logs WHERE xid >= (SELECT watermark FROM aggregator_state WHERE id = 1))`).Scan(&rows, &caughtUp)
	switch {
	case err != nil:
		return err.Error()
	case rows < answered:
		return fmt.Sprintf("click_logs has %d rows, %d redirects were answered", rows, answered)
	case !caughtUp:
		return "the aggregator has not passed every stored click"
	}
	return ""
}
