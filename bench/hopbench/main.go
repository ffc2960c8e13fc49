// Command hopbench runs hop's load benchmarks (bench/run.sh builds and calls it): redirect
// throughput against a bare Echo baseline with every click accounted for, end-to-end
// ingest rate and lag drain, the stats endpoint over a year of rollups with 100k and
// 10M raw clicks, and click-to-stats freshness. It prints figures, never pass/fail:
// the machine is shared and noisy, so runs alternate and medians are reported.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// apiKey is the fixed bootstrap key every benchmark instance of hop accepts.
const apiKey = "hopbench-fixed-api-key-0123456789"

type config struct {
	root, hopBin, bareBin, luaDir, resultsDir, tmp string
	pgURL, redisURL                                string // maintenance database URL; Redis URL
	quick, keep                                    bool
	embedded                                       bool          // BENCH_EMBEDDED=1: hop on its embedded PostgreSQL
	duration                                       time.Duration // wrk -d per run
	runs, conns, threads                           int
	redirectLinks                                  int
	host                                           string // BENCH_HOST: the redirect links' branded domain
	liveClients                                    int    // BENCH_LIVE_CLIENTS: clients on /live during the redirect runs
	livePerLink                                    bool   // BENCH_LIVE_PER_LINK=1: each client on one link's feed instead
	webhook                                        bool   // BENCH_WEBHOOK=1: one webhook to a local receiver during them
	ingestDuration                                 time.Duration
	backlog                                        int // clicks pre-filled for the consumer-only run
	statsLinks, statsDays                          int
	rawBase, rawRows                               int
	freshSamples                                   int
	scenarios                                      map[string]bool
}

func main() {
	var c config
	flag.StringVar(&c.root, "root", ".", "repository root (hop runs there, reading its config.yaml)")
	flag.StringVar(&c.hopBin, "hop", "bin/hop", "hop binary")
	flag.StringVar(&c.bareBin, "bare", "", "bare Echo baseline binary")
	flag.StringVar(&c.luaDir, "lua", "bench", "directory of the wrk scripts")
	flag.StringVar(&c.resultsDir, "results", "bench/results", "where the results file is written")
	flag.StringVar(&c.tmp, "tmp", os.TempDir(), "scratch directory")
	flag.Parse()

	c.quick = os.Getenv("BENCH_QUICK") == "1"
	c.keep = os.Getenv("BENCH_KEEP") == "1"
	c.embedded = os.Getenv("BENCH_EMBEDDED") == "1"
	c.pgURL = envOr("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	c.redisURL = envOr("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
	c.runs = envInt("BENCH_RUNS", 3)
	c.conns = envInt("BENCH_CONNECTIONS", 64)
	c.threads = envInt("BENCH_THREADS", 2)
	c.redirectLinks = 100
	c.host = os.Getenv("BENCH_HOST")
	c.liveClients = envInt("BENCH_LIVE_CLIENTS", 0)
	c.livePerLink = os.Getenv("BENCH_LIVE_PER_LINK") == "1"
	c.webhook = os.Getenv("BENCH_WEBHOOK") == "1"
	c.statsLinks, c.statsDays = 1000, 365
	if c.quick {
		c.duration = envDur("BENCH_DURATION", 3*time.Second)
		c.ingestDuration = envDur("BENCH_INGEST_DURATION", 4*time.Second)
		c.backlog = envInt("BENCH_BACKLOG", 50_000)
		c.statsLinks = envInt("BENCH_STATS_LINKS", 200)
		c.rawBase = 20_000
		c.rawRows = envInt("BENCH_RAW_ROWS", 200_000)
		c.freshSamples = envInt("BENCH_FRESH_SAMPLES", 8)
	} else {
		c.duration = envDur("BENCH_DURATION", 10*time.Second)
		c.ingestDuration = envDur("BENCH_INGEST_DURATION", 15*time.Second)
		c.backlog = envInt("BENCH_BACKLOG", 300_000)
		c.statsLinks = envInt("BENCH_STATS_LINKS", 1000)
		c.rawBase = 100_000
		c.rawRows = envInt("BENCH_RAW_ROWS", 10_000_000)
		c.freshSamples = envInt("BENCH_FRESH_SAMPLES", 30)
	}
	c.rawBase = min(c.rawBase, c.rawRows)
	c.scenarios = map[string]bool{}
	for s := range strings.SplitSeq(envOr("BENCH_SCENARIOS", "redirect,ingest,freshness,stats"), ",") {
		c.scenarios[strings.TrimSpace(s)] = true
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &c); err != nil {
		fmt.Fprintln(os.Stderr, "hopbench:", err)
		os.Exit(1)
	}
}

// out writes to stdout and to the results file.
var out io.Writer = os.Stdout

func logf(format string, args ...any) {
	fmt.Fprintf(out, "# %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, c *config) error {
	if err := os.MkdirAll(c.resultsDir, 0o755); err != nil {
		return err
	}
	name := filepath.Join(c.resultsDir, time.Now().Format("20060102-150405")+".txt")
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	out = io.MultiWriter(os.Stdout, f)

	host, _ := os.Hostname()
	fmt.Fprintf(out, "hop load benchmarks — %s on %s (%d CPUs), quick=%v\n", time.Now().Format(time.RFC3339), host, numCPU(), c.quick)
	ver, _ := exec.Command(c.hopBin, "version").CombinedOutput()
	fmt.Fprintf(out, "%s (%s); wrk -t%d -c%d -d%s; %d alternating runs per target\n", strings.TrimSpace(string(ver)), c.hopBin, c.threads, c.conns, c.duration, c.runs)
	fmt.Fprintf(out, "hop's PostgreSQL: %s; hop's Redis: %s\n\n", c.databaseMode(), cmp.Or(c.hopRedisURL(), "none (the local click log is the stream)"))

	rep := &report{}
	defer func() {
		rep.print(out, c)
		fmt.Fprintf(os.Stdout, "\nresults written to %s\n", name)
	}()

	if c.scenarios["redirect"] || c.scenarios["ingest"] || c.scenarios["freshness"] {
		if err := mainBench(ctx, c, rep); err != nil {
			return err
		}
	}
	if c.scenarios["stats"] {
		if err := statsBench(ctx, c, rep); err != nil {
			return err
		}
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(strings.ReplaceAll(v, "_", ""), ",", ""))
	if err != nil {
		fmt.Fprintf(os.Stderr, "hopbench: %s=%q is not an integer\n", k, v)
		os.Exit(2)
	}
	return n
}

func envDur(k string, def time.Duration) time.Duration {
	v := os.Getenv(k)
	if v == "" {
		return def
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hopbench: %s=%q is not a duration\n", k, v)
		os.Exit(2)
	}
	return d
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile is the nearest-rank percentile of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}
