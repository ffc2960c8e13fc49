package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/hopproc"
)

// resetDatabase drops the benchmark database so hop creates it afresh (create_database).
func resetDatabase(ctx context.Context, c *config, name string) error {
	conn, err := pgx.Connect(ctx, c.pgURL)
	if err != nil {
		return fmt.Errorf("PostgreSQL at %s: %w (start it with `make services`)", c.pgURL, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func dropDatabase(c *config, name string) {
	if c.keep {
		logf("BENCH_KEEP=1: keeping database %s", name)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := resetDatabase(ctx, c, name); err != nil {
		logf("dropping database %s: %v", name, err)
	}
}

func openPool(ctx context.Context, dbURL string, conns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = conns
	return pgxpool.NewWithConfig(ctx, cfg)
}

func openRedis(c *config) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(c.redisURL)
	if err != nil {
		return nil, err
	}
	return rueidis.NewClient(opt)
}

// cleanRedis deletes every key under prefix.
func cleanRedis(c *config, prefix string) {
	if c.keep {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rdb, err := openRedis(c)
	if err != nil {
		logf("cleaning Redis prefix %s: %v", prefix, err)
		return
	}
	defer rdb.Close()
	var cursor uint64
	n := 0
	for {
		e, err := rdb.Do(ctx, rdb.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			logf("cleaning Redis prefix %s: %v", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			if err := rdb.Do(ctx, rdb.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				logf("cleaning Redis prefix %s: %v", prefix, err)
				return
			}
			n += len(e.Elements)
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	logf("deleted %d Redis keys under %s", n, prefix)
}

// counts is what the click pipeline has stored so far.
type counts struct {
	Raw        int64 // click_logs rows
	Rollup     int64 // sum of daily_stats clicks + bot_clicks
	Hourly     int64 // sum of hourly_stats clicks + bot_clicks
	Total      int64 // sum of links.total_clicks (humans)
	Humans     int64 // sum of daily_stats clicks
	Aggregated int64 // aggregator_state.rows_total
}

func (a counts) sub(b counts) counts {
	return counts{a.Raw - b.Raw, a.Rollup - b.Rollup, a.Hourly - b.Hourly, a.Total - b.Total, a.Humans - b.Humans, a.Aggregated - b.Aggregated}
}

func readCounts(ctx context.Context, pool *pgxpool.Pool) (counts, error) {
	var n counts
	err := pool.QueryRow(ctx, `
SELECT (SELECT count(*) FROM click_logs),
       (SELECT coalesce(sum(clicks + bot_clicks), 0)::int8 FROM daily_stats),
       (SELECT coalesce(sum(clicks + bot_clicks), 0)::int8 FROM hourly_stats),
       (SELECT coalesce(sum(total_clicks), 0)::int8 FROM links),
       (SELECT coalesce(sum(clicks), 0)::int8 FROM daily_stats),
       (SELECT rows_total FROM aggregator_state WHERE id = 1)`).Scan(&n.Raw, &n.Rollup, &n.Hourly, &n.Total, &n.Humans, &n.Aggregated)
	return n, err
}

// aggregatorCaughtUp reports whether every committed click is below the watermark.
func aggregatorCaughtUp(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM click_logs
WHERE xid >= (SELECT watermark FROM aggregator_state WHERE id = 1))`).Scan(&ok)
	return ok, err
}

// drainResult times how long the pipeline took to settle after a load stopped.
type drainResult struct {
	Ingest, Aggregate time.Duration // load stop -> lag and pending 0; -> aggregator caught up
	OK                bool
	Note              string
}

// waitDrained waits until the consumer group has no lag and nothing pending, then (when
// wantRaw >= 0) for click_logs to hold wantRaw rows — at most a short grace, so a lost
// click shows as a shortfall rather than a hang — then until the aggregator has caught up.
func waitDrained(ctx context.Context, h *hop, pool *pgxpool.Pool, since time.Time, wantRaw int64, timeout time.Duration) drainResult {
	var r drainResult
	deadline := since.Add(timeout)
	for {
		ih, err := hopproc.ReadIngestHealth(ctx, h.url, apiKey) // details need a key
		if err == nil && ih.Drained() {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.Note = fmt.Sprintf("ingest not drained after %s (last health %+v, err %v)", timeout, ih, err)
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Ingest = time.Since(since)
	if wantRaw >= 0 {
		grace := time.Now().Add(15 * time.Second)
		for {
			var n int64
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM click_logs`).Scan(&n); err == nil && n >= wantRaw {
				break
			}
			if time.Now().After(grace) || ctx.Err() != nil {
				r.Note = fmt.Sprintf("click_logs has %d rows, %d expected, 15s after the stream drained", n, wantRaw)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for {
		ok, err := aggregatorCaughtUp(ctx, pool)
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.Note = fmt.Sprintf("aggregator not caught up after %s (err %v)", timeout, err)
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Aggregate = time.Since(since)
	r.OK = r.Note == ""
	return r
}
