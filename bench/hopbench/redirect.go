package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hop-dev/hop/internal/hopproc"
)

const browserUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"

// mainBench runs the scenarios that share one hop instance and database: redirect
// throughput, freshness, then ingest (which restarts hop for its backlog run).
func mainBench(ctx context.Context, c *config, rep *report) error {
	env, err := startEnv(ctx, c, "main", "hop_bench")
	if err != nil {
		return err
	}
	defer env.close()
	h, pool := env.h, env.pool

	if c.host != "" {
		body, _ := json.Marshal(map[string]any{"host": c.host})
		if code, b, err := httpDo(ctx, "POST", h.url+"/domains", apiKey, "", bytes.NewReader(body)); err != nil || code != 201 {
			return fmt.Errorf("POST /domains: %d %s %v", code, b, err)
		}
	}
	slugs, err := createLinksOn(ctx, h, c.redirectLinks, c.host)
	if err != nil {
		return err
	}
	slugFile := filepath.Join(c.tmp, "redirect-slugs.txt")
	if err := os.WriteFile(slugFile, []byte(strings.Join(slugs, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	fresh, err := createLinks(ctx, h, 1)
	if err != nil {
		return err
	}
	logf("created %d links (+1 for freshness) through POST /links", len(slugs))

	if c.scenarios["redirect"] {
		if err := redirectBench(ctx, c, rep, h, pool, slugs, slugFile); err != nil {
			return err
		}
	}
	if c.scenarios["freshness"] {
		if err := freshnessBench(ctx, c, rep, h, fresh[0]); err != nil {
			return err
		}
	}
	if c.scenarios["ingest"] {
		h, err = ingestBench(ctx, c, rep, h, pool)
		env.h = h // ingest restarts hop; stop the running one at the end
		if err != nil {
			return err
		}
	}
	var dups int64
	if err := pool.QueryRow(ctx, `SELECT count(*) - count(DISTINCT event_id) FROM click_logs`).Scan(&dups); err == nil {
		rep.duplicateEvents = dups
	}
	rep.mainLog = h.LogPath()
	return nil
}

// createLinks makes n links through the API and returns their slugs.
func createLinks(ctx context.Context, h *hop, n int) ([]string, error) {
	return createLinksOn(ctx, h, n, "")
}

// createLinksOn makes n links on domain ("" the default) and returns their slugs.
func createLinksOn(ctx context.Context, h *hop, n int, domain string) ([]string, error) {
	slugs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req := map[string]any{"url": fmt.Sprintf("https://example.com/landing/%d?utm_source=bench", i)}
			if domain != "" {
				req["domain"] = domain
			}
			body, _ := json.Marshal(req)
			code, b, err := httpDo(ctx, "POST", h.url+"/links", apiKey, "", bytes.NewReader(body))
			if err != nil || code != 201 {
				errs[i] = fmt.Errorf("POST /links: %d %s %v", code, b, err)
				return
			}
			var l struct{ Slug string }
			if err := json.Unmarshal(b, &l); err != nil || l.Slug == "" {
				errs[i] = fmt.Errorf("POST /links answered %s", b)
				return
			}
			slugs[i] = l.Slug
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return slugs, nil
}

// redirectRun is one hop run with the bare run that follows it.
type redirectRun struct {
	hop, bare                    wrkResult
	answered                     int64 // hop_redirects_total{status="302"} delta
	published, fallback, dropped int64
	delta                        counts
	drain                        drainResult
	rssKB, lag, pending          int64
	attached                     string // what the /live clients and the webhook received
	treeKB                       int64  // peak PSS of hop and its embedded PostgreSQL
}

func redirectBench(ctx context.Context, c *config, rep *report, h *hop, pool *pgxpool.Pool, slugs []string, slugFile string) error {
	bare, bareURL, err := startBare(ctx, c)
	if err != nil {
		return err
	}
	defer stopProc(bare, 5*time.Second)
	// With BENCH_HOST both hop and bare get its Host header; hop picks the domain by it.
	env := []string{"BENCH_SLUGS=" + slugFile, "BENCH_HOST=" + c.host}

	warm := min(c.duration, 3*time.Second)
	logf("redirect: warm-up %s each against hop and bare", warm)
	if _, err := runWrk(ctx, c, "redirect.lua", h.url, warm, env...); err != nil {
		return err
	}
	if d := waitDrained(ctx, h, pool, time.Now(), -1, 2*time.Minute); !d.OK {
		return fmt.Errorf("after warm-up: %s", d.Note)
	}
	if _, err := runWrk(ctx, c, "redirect.lua", bareURL, warm, env...); err != nil {
		return err
	}
	var att *attachment
	if c.liveClients > 0 || c.webhook {
		if att, err = attach(ctx, c, h, pool, slugs); err != nil {
			return err
		}
		defer att.close()
	}

	for i := 1; i <= c.runs; i++ {
		var run redirectRun
		before, err := readCounts(ctx, pool)
		if err != nil {
			return err
		}
		m0, err := h.metrics(ctx)
		if err != nil {
			return err
		}
		s := startSampler(ctx, h, true)
		run.hop, err = runWrk(ctx, c, "redirect.lua", h.url, c.duration, env...)
		stopped := time.Now()
		run.rssKB, run.lag, run.pending = s.finish()
		run.treeKB = s.tree()
		if err != nil {
			return err
		}
		// Drain first, then read hop's counters: wrk stops mid-flight and hop may still
		// be finishing requests (publishing their clicks) when wrk exits.
		run.drain = waitDrained(ctx, h, pool, stopped, -1, 2*time.Minute)
		m1, err := h.metrics(ctx)
		if err != nil {
			return err
		}
		d := func(k string) int64 { return int64(m1[k] - m0[k]) }
		run.answered = d(`hop_redirects_total{status="302"}`)
		run.published, run.fallback, run.dropped = d("hop_ingest_published_total"), d("hop_ingest_fallback_total"), d("hop_ingest_dropped_total")
		// A click answered but not yet in click_logs shows as a shortfall after a grace.
		if chk := waitDrained(ctx, h, pool, time.Now(), before.Raw+run.answered, time.Minute); !chk.OK {
			run.drain.OK, run.drain.Note = false, chk.Note
		}
		after, err := readCounts(ctx, pool)
		if err != nil {
			return err
		}
		run.delta = after.sub(before)
		if att != nil {
			if run.attached, err = att.check(ctx, pool, time.Minute); err != nil {
				return err
			}
			logf("redirect run %d attached: %s", i, run.attached)
		}
		logf("redirect run %d hop: %.0f req/s p50 %.2fms p99 %.2fms; 3xx %d answered %d rows %d rollups %d; drained in %s / aggregated in %s %s",
			i, run.hop.RPS, run.hop.P50, run.hop.P99, run.hop.count(300, 399), run.answered, run.delta.Raw, run.delta.Rollup,
			run.drain.Ingest.Round(time.Millisecond), run.drain.Aggregate.Round(time.Millisecond), run.drain.Note)

		run.bare, err = runWrk(ctx, c, "redirect.lua", bareURL, c.duration, env...)
		if err != nil {
			return err
		}
		logf("redirect run %d bare: %.0f req/s p50 %.2fms p99 %.2fms", i, run.bare.RPS, run.bare.P50, run.bare.P99)
		rep.redirect = append(rep.redirect, run)
		if i == 1 {
			rep.wrkSample = run.hop.Text + "\n" + run.bare.Text
		}
	}
	_, rep.redirectHWM = procStatus(h.PID())
	return nil
}

func startBare(ctx context.Context, c *config) (*hopproc.Proc, string, error) {
	port, err := hopproc.FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := hopproc.Start(hopproc.Spec{Name: "bare", Bin: c.bareBin, Args: []string{"-addr", addr}, Env: os.Environ(), Dir: c.root, Log: filepath.Join(c.tmp, "bare.log")})
	if err != nil {
		return nil, "", err
	}
	u := "http://" + addr
	for range 100 {
		if code, _, err := httpGet(ctx, u+"/probe", ""); err == nil && code == 302 {
			return p, u, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopProc(p, time.Second)
	return nil, "", fmt.Errorf("bare server did not answer:\n%s", p.Tail(10))
}

// freshnessBench times redirect -> click visible in /links/{slug}/stats.
func freshnessBench(ctx context.Context, c *config, rep *report, h *hop, slug string) error {
	total := func() (int64, error) {
		code, b, err := httpGet(ctx, h.url+"/links/"+slug+"/stats", apiKey)
		if err != nil || code != 200 {
			return 0, fmt.Errorf("stats: %d %s %v", code, b, err)
		}
		var s struct {
			Total int64 `json:"total_clicks"`
			Bots  int64 `json:"bot_clicks"`
		}
		err = json.Unmarshal(b, &s)
		return s.Total + s.Bots, err
	}
	logf("freshness: %d samples (redirect, then poll stats every 50ms)", c.freshSamples)
	for i := range c.freshSamples {
		base, err := total()
		if err != nil {
			return err
		}
		t0 := time.Now()
		code, _, err := httpDo(ctx, "GET", h.url+"/"+slug, "", browserUA, nil)
		if err != nil || code != 302 {
			return fmt.Errorf("freshness redirect: %d %v", code, err)
		}
		for {
			time.Sleep(50 * time.Millisecond)
			n, err := total()
			if err != nil {
				return err
			}
			if n > base {
				rep.fresh = append(rep.fresh, time.Since(t0).Seconds())
				break
			}
			if time.Since(t0) > 30*time.Second {
				rep.freshLost++
				break
			}
		}
		_ = i
		// Desynchronise from the aggregator's ticker.
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
	}
	return nil
}
