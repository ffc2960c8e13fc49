package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// report collects every figure and prints them as tables at the end.
type report struct {
	redirect        []redirectRun
	redirectHWM     int64 // kB, VmHWM of hop after the redirect runs
	wrkSample       string
	ingest          *ingestResult
	fresh           []float64 // seconds
	freshLost       int
	stats           []statsPhase
	statsSeed       time.Duration
	rawInsert       time.Duration
	statsAggregated int64
	duplicateEvents int64
	mainLog         string
}

func mb(kb int64) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

func (r *report) print(w io.Writer, c *config) {
	line := strings.Repeat("=", 100)
	fmt.Fprintf(w, "\n%s\nRESULTS (figures only; targets from issues #3 and #4 shown for reference)\n%s\n", line, line)

	if len(r.redirect) > 0 {
		fmt.Fprintf(w, "\n1. Redirect throughput — wrk -t%d -c%d -d%s --latency, %d links, random slugs, browser User-Agents\n",
			c.threads, c.conns, c.duration, c.redirectLinks)
		if c.host != "" {
			fmt.Fprintf(w, "   links on the branded domain %s, requests with Host: %s (bare gets the same header)\n", c.host, c.host)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%-4s %-5s %10s %9s %9s %9s %10s %7s %7s\n", "run", "target", "req/s", "p50", "p90", "p99", "3xx", "non-3xx", "sockerr")
		var hopRPS, bareRPS, hopP99, bareP99, hopP50, bareP50, ratios []float64
		for i, run := range r.redirect {
			for _, x := range []struct {
				name string
				r    wrkResult
			}{{"hop", run.hop}, {"bare", run.bare}} {
				fmt.Fprintf(w, "%-4d %-5s %10.0f %7.2fms %7.2fms %7.2fms %10d %7d %7d\n", i+1, x.name, x.r.RPS, x.r.P50, x.r.P90, x.r.P99,
					x.r.count(300, 399), x.r.Requests-x.r.count(300, 399), x.r.Errors)
			}
			hopRPS, bareRPS = append(hopRPS, run.hop.RPS), append(bareRPS, run.bare.RPS)
			hopP50, bareP50 = append(hopP50, run.hop.P50), append(bareP50, run.bare.P50)
			hopP99, bareP99 = append(hopP99, run.hop.P99), append(bareP99, run.bare.P99)
			if run.bare.RPS > 0 {
				ratios = append(ratios, run.hop.RPS/run.bare.RPS)
			}
		}
		fmt.Fprintf(w, "\nmedian hop %.0f req/s, bare %.0f req/s; hop/bare per pair %s -> median %.2fx   (target >= 0.60x)\n",
			median(hopRPS), median(bareRPS), fmtList(ratios, "%.2f"), median(ratios))
		if c.liveClients > 0 || c.webhook {
			feed := "every click"
			if c.livePerLink {
				feed = "one link's clicks each"
			}
			fmt.Fprintf(w, "attached during the hop runs: %d /live clients (%s), %d webhook (receivers in the bench process, on this machine)\n",
				c.liveClients, feed, c.webhooks())
			for i, run := range r.redirect {
				fmt.Fprintf(w, "  run %d: %s\n", i+1, run.attached)
			}
		}
		fmt.Fprintf(w, "median p50 hop %.2fms vs bare %.2fms; median p99 hop %.2fms vs bare %.2fms -> %.2fx   (target p99 <= 2x bare)\n",
			median(hopP50), median(bareP50), median(hopP99), median(bareP99), median(hopP99)/max(median(bareP99), 1e-9))
		fmt.Fprintf(w, "peak RSS of hop (VmHWM since start, after the redirect runs): %s; max VmRSS sampled per run: ", mb(r.redirectHWM))
		for i, run := range r.redirect {
			if i > 0 {
				fmt.Fprint(w, ", ")
			}
			fmt.Fprint(w, mb(run.rssKB))
		}
		fmt.Fprintln(w, "   (target <= 80 MB)")
		if c.embedded {
			fmt.Fprint(w, "peak PSS of hop plus its embedded PostgreSQL (postmaster and backends; sampled every second) per run: ")
			for i, run := range r.redirect {
				if i > 0 {
					fmt.Fprint(w, ", ")
				}
				fmt.Fprint(w, mb(run.treeKB))
			}
			fmt.Fprintln(w)
		}

		fmt.Fprintf(w, "\nEvery answered redirect counted? (per hop run, after the stream drained and the aggregator caught up)\n\n")
		fmt.Fprintf(w, "%-4s %10s %10s %10s %10s %10s %10s %9s %7s %9s %9s %8s  %s\n", "run", "wrk 3xx", "answered", "published", "click_logs",
			"rollups", "hourly", "fallback", "dropped", "drain", "aggreg.", "peak lag", "check")
		for i, run := range r.redirect {
			w3 := run.hop.count(300, 399)
			check := "ok"
			switch {
			case run.delta.Raw != run.answered:
				check = fmt.Sprintf("MISMATCH: %+d rows vs answered", run.delta.Raw-run.answered)
			case run.delta.Rollup != run.delta.Raw || run.delta.Hourly != run.delta.Raw:
				check = fmt.Sprintf("MISMATCH: rollups %+d vs rows", run.delta.Rollup-run.delta.Raw)
			case run.dropped > 0:
				check = "DROPPED clicks"
			case w3 > run.answered || run.answered-w3 > int64(c.conns):
				check = fmt.Sprintf("wrk saw %d 3xx, hop answered %d", w3, run.answered)
			}
			if !run.drain.OK {
				check += " (" + run.drain.Note + ")"
			}
			fmt.Fprintf(w, "%-4d %10d %10d %10d %10d %10d %10d %9d %7d %8.2fs %8.2fs %8d  %s\n", i+1, w3, run.answered, run.published,
				run.delta.Raw, run.delta.Rollup, run.delta.Hourly, run.fallback, run.dropped,
				run.drain.Ingest.Seconds(), run.drain.Aggregate.Seconds(), run.lag, check)
		}
		fmt.Fprintf(w, "answered = hop_redirects_total{status=\"302\"}; wrk stops mid-flight, so up to -c (%d) answered redirects per run\n"+
			"may be missing from wrk's 3xx count. rollups = sum(daily_stats.clicks+bot_clicks); drain = load stop -> consumer lag 0 and\n"+
			"nothing pending (GET /health); aggreg. = load stop -> no click_logs row above the aggregator watermark.\n", c.conns)
		if r.duplicateEvents != 0 {
			fmt.Fprintf(w, "DUPLICATE event ids in click_logs: %d\n", r.duplicateEvents)
		}
	}

	if in := r.ingest; in != nil {
		fmt.Fprintf(w, "\n2. Ingest end-to-end — hop's ingest.Publisher in the bench process (%d goroutines, XADD to hop's stream) while hop consumes\n\n", publishers)
		fmt.Fprintf(w, "  publisher ran %.1fs: %d published + %d fallback + %d dropped = %.0f clicks/s offered\n",
			in.dur.Seconds(), in.published, in.fallback, in.dropped, in.publishRate)
		fmt.Fprintf(w, "  committed to click_logs during the load: %d rows = %.0f rows/s (steady state after 2s: %.0f rows/s)   (target >= 25,000/s)\n",
			in.loadRows, in.loadRate, in.steadyRate)
		fmt.Fprintf(w, "  end to end (publish start -> last row committed): %.0f rows/s; consumer lag peak %d, pending peak %d\n",
			in.e2eRate, in.maxLag, in.maxPending)
		fmt.Fprintf(w, "  lag drained %.2fs after the publisher stopped; aggregator caught up %.2fs after   %s\n",
			in.drain.Ingest.Seconds(), in.drain.Aggregate.Seconds(), in.drain.Note)
		fmt.Fprintf(w, "  every click committed exactly once: %v (%d rows for %d clicks); hop max VmRSS during ingest %s\n",
			in.complete, in.rows, in.published+in.fallback, mb(in.rssKB))
		if in.backlog > 0 {
			fmt.Fprintf(w, "  consumer alone over a backlog of %d clicks (published while hop was stopped): %.0f rows/s over %.2fs, exact: %v, max VmRSS %s\n",
				in.backlog, in.backlogRate, in.backlogSeconds, in.backlogOK, mb(in.backlogRSSKB))
		}
	}

	if len(r.stats) > 0 {
		fmt.Fprintf(w, "\n3. Stats endpoint — GET /links/{slug}/stats, random slug of %d, random 30-day window within %d days of rollups, -c%d\n",
			c.statsLinks, c.statsDays, c.conns)
		fmt.Fprintf(w, "   (rollups seeded with SQL in %s; raw clicks inserted as already aggregated)\n\n", r.statsSeed.Round(time.Second))
		fmt.Fprintf(w, "%-12s %-4s %10s %9s %9s %9s %9s %8s\n", "raw clicks", "run", "req/s", "p50", "p90", "p99", "200", "other")
		var meds [][3]float64
		for _, ph := range r.stats {
			var rps, p50, p99 []float64
			for i, x := range ph.runs {
				fmt.Fprintf(w, "%-12d %-4d %10.0f %7.2fms %7.2fms %7.2fms %9d %8d\n", ph.rawRows, i+1, x.RPS, x.P50, x.P90, x.P99,
					x.Status[200], x.Requests-x.Status[200]+x.Errors)
				rps, p50, p99 = append(rps, x.RPS), append(p50, x.P50), append(p99, x.P99)
			}
			meds = append(meds, [3]float64{median(rps), median(p50), median(p99)})
			fmt.Fprintf(w, "%-12s median %10.0f %7.2fms %19.2fms      [%s]\n", "", median(rps), median(p50), median(p99), ph.sizes)
		}
		if len(meds) == 2 && meds[0][0] > 0 {
			fmt.Fprintf(w, "\n%d -> %d raw clicks: req/s x%.2f, p50 x%.2f, p99 x%.2f   (target >= 3,000 req/s; latency flat in raw rows)\n",
				r.stats[0].rawRows, r.stats[1].rawRows, meds[1][0]/meds[0][0], meds[1][1]/meds[0][1], meds[1][2]/meds[0][2])
		}
		if r.rawInsert > 0 {
			fmt.Fprintf(w, "raw clicks inserted in %s; aggregator rows_total afterwards %d (0 = it never scanned them)\n", r.rawInsert.Round(time.Second), r.statsAggregated)
		}
	}

	if len(r.fresh) > 0 || r.freshLost > 0 {
		fmt.Fprintf(w, "\n4. Freshness — redirect -> click visible in /links/{slug}/stats (polled every 50ms), default aggregate interval\n\n")
		fmt.Fprintf(w, "  %d samples: p50 %.2fs, p95 %.2fs, max %.2fs; not visible within 30s: %d   (target p95 <= 3s)\n",
			len(r.fresh), percentile(r.fresh, 50), percentile(r.fresh, 95), percentile(r.fresh, 100), r.freshLost)
	}
	if r.wrkSample != "" {
		fmt.Fprintf(w, "\nwrk output of redirect run 1 (hop, then bare):\n%s\n", indent(r.wrkSample))
	}
}

func fmtList(xs []float64, f string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf(f, x)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ")
}
