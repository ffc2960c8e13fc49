// Command chaos runs hop's crash and outage scenarios (`make chaos`): real hop
// processes on a private PostgreSQL cluster and private redis-servers, redirects driven
// from many connections, one fault injected under load and healed, then every answered
// redirect checked against click_logs, the rollups and links.total_clicks. It prints
// one row per scenario and exits non-zero if any click was lost or counted twice.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

// run parses flags, runs the chosen scenarios and prints the table; it fails if a
// scenario could not run or lost or duplicated a click.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		root    = fs.String("root", ".", "hop's repository root (hop is built from it)")
		only    = fs.String("scenarios", "all", "comma-separated scenario names, or all")
		phase   = fs.Duration("phase", 4*time.Second, "load before the fault, during it, and after the heal")
		conns   = fs.Int("conns", 32, "concurrent connections driving redirects")
		links   = fs.Int("links", 20, "links the load spreads over")
		drain   = fs.Duration("drain", 2*time.Minute, "longest wait for ingest and the aggregator to settle after the load")
		keep    = fs.Bool("keep", false, "keep the scratch directory (logs, data) for a post-mortem")
		verbose = fs.Bool("v", false, "log each step")
		list    = fs.Bool("list", false, "list the scenarios and exit")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		for _, sc := range allScenarios() {
			fmt.Fprintf(stdout, "%-20s %s\n", sc.name, sc.what)
		}
		return nil
	}
	chosen, err := pick(*only)
	if err != nil {
		return err
	}
	opts := options{phase: *phase, conns: *conns, links: *links, drain: *drain, verbose: func(string, ...any) {}}
	if *verbose {
		opts.verbose = func(format string, args ...any) {
			fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05.000")}, args...)...)
		}
	}
	opts.keep, opts.keepOnFailure = *keep, true
	results, err := runAll(ctx, *root, chosen, opts, stderr)
	printTable(stdout, results)
	if err != nil {
		return err
	}
	for _, r := range results {
		if !r.ok() {
			return fmt.Errorf("scenario %s lost %d and duplicated %d clicks; %s", r.name, r.lost, r.dup, strings.Join(r.problems, "; "))
		}
	}
	return nil
}

// pick returns the scenarios named in a comma-separated list ("all": every one).
func pick(names string) ([]scenario, error) {
	all := allScenarios()
	if names == "" || names == "all" {
		return all, nil
	}
	var out []scenario
	for n := range strings.SplitSeq(names, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, sc := range all {
			if sc.name == n {
				out = append(out, sc)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("no scenario %q (chaos -list shows them)", n)
		}
	}
	return out, nil
}

// runAll builds hop, starts the private PostgreSQL cluster and runs each scenario.
// Every process it started is ended whatever happens, and the scratch directory is
// removed unless opts ask to keep it.
func runAll(ctx context.Context, root string, chosen []scenario, opts options, stderr io.Writer) (results []result, err error) {
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "hop-chaos-")
	if err != nil {
		return nil, err
	}
	ps := &procs{}
	failed := false
	defer func() {
		failed = failed || err != nil
		ps.killAll(30 * time.Second)
		if failed && !opts.keep {
			// Without the directory, the logs' ends must explain the failure.
			tails(stderr, tmp)
		}
		if opts.keep || failed && opts.keepOnFailure {
			fmt.Fprintf(stderr, "chaos: logs and data kept in %s\n", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()
	hopBin, err := buildHop(ctx, root, tmp)
	if err != nil {
		return nil, err
	}
	pg, err := newPGCluster(ctx, ps, tmp)
	if err != nil {
		return nil, err
	}
	if err := migrateTemplate(ctx, pg, hopBin, tmp); err != nil {
		return nil, err
	}
	for _, sc := range chosen {
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		opts.verbose("%s: %s", sc.name, sc.what)
		r, err := runScenario(ctx, ps, pg, hopBin, tmp, sc, opts)
		if err != nil {
			return results, fmt.Errorf("scenario %s: %w", sc.name, err)
		}
		failed = failed || !r.ok()
		results = append(results, r)
	}
	return results, nil
}

// tails writes the last lines of every log under dir.
func tails(w io.Writer, dir string) {
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") {
			return nil
		}
		b, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		fmt.Fprintf(w, "--- %s (last lines)\n%s\n", path, strings.Join(lines[max(0, len(lines)-20):], "\n"))
		return nil
	})
}

// migrateTemplate creates chaos_tpl with hop's migrations applied; each scenario's
// database is a copy of it.
func migrateTemplate(ctx context.Context, pg *pgCluster, hopBin, tmp string) error {
	if err := pg.exec(ctx, "CREATE DATABASE chaos_tpl"); err != nil {
		return err
	}
	dir := filepath.Join(tmp, "migrate")
	if err := mkdirAll(dir); err != nil {
		return err
	}
	ps := &procs{}
	p, err := ps.start("hop migrate", hopBin, []string{"migrate", "up"},
		[]string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + pg.url("chaos_tpl"), "REDIS_URL=", "HOP_DATA_DIR=" + dir, "HOP_LOG_FORMAT=json"},
		dir, filepath.Join(dir, "migrate.log"), nil)
	if err != nil {
		return err
	}
	if err := p.Wait(); err != nil {
		return fmt.Errorf("hop migrate up: %w\n%s", err, p.Tail(20))
	}
	return nil
}

// printTable writes one row per scenario.
func printTable(w io.Writer, results []result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tanswered\tstored\tcounted\tlost\tduplicated\trecover s\tduring fault\tin flight (stored)\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.1f\t%d\t%d (%d)\t\n", r.name, r.answered, r.stored, r.counted, r.lost, r.dup, r.recover.Seconds(), r.during, r.inFlight, r.extra)
	}
	tw.Flush()
	for _, r := range results {
		for _, p := range r.problems {
			fmt.Fprintf(w, "%s: PROBLEM: %s\n", r.name, p)
		}
		for _, i := range r.info {
			fmt.Fprintf(w, "%s: %s\n", r.name, i)
		}
	}
}
