package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/hop-dev/hop/internal/weburl"
	"github.com/hop-dev/hop/modules/client"
)

// The client commands (import, export, links) talk to a running hop over its REST API,
// so they need no configuration file and no database: only --url and --key, or
// HOP_URL and HOP_KEY.

// usageErr is a bad command line; it exits with status 2 like errUsage.
type usageErr struct{ msg string }

func (e usageErr) Error() string        { return e.msg }
func (e usageErr) Is(target error) bool { return target == errUsage }

func usagef(format string, args ...any) error { return usageErr{fmt.Sprintf(format, args...)} }

// ExitCode is the exit status for an error of Run: 0 for none, 2 for a bad command
// line, 1 for anything else.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

// clientEnv is what every client command shares.
type clientEnv struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// clientFlags adds --url and --key to fs and returns a function making the client
// once the flags are parsed.
func (ce clientEnv) clientFlags(fs *flag.FlagSet) func() (*client.Client, error) {
	url := fs.String("url", "", "base URL of the hop server (default $HOP_URL, else http://localhost:8080)")
	key := fs.String("key", "", "API key (default $HOP_KEY)")
	return func() (*client.Client, error) {
		base := cmp.Or(*url, ce.getenv("HOP_URL"), "http://localhost:8080")
		if err := checkServerURL(base); err != nil {
			return nil, err
		}
		k := cmp.Or(*key, ce.getenv("HOP_KEY"))
		if k == "" {
			return nil, usagef("no API key: pass --key or set HOP_KEY (create one with hop apikey create --name NAME)")
		}
		c := client.New(base, k, nil)
		c.Retry.Notify = func(err error, wait time.Duration) {
			if _, limited := client.RateLimited(err); limited {
				fmt.Fprintf(ce.stderr, "hop: the server is rate-limiting this API key (429); waiting %s before going on\n", wait)
				return
			}
			fmt.Fprintf(ce.stderr, "hop: %v; trying again in %s (safe: reads change nothing, import batches carry an Idempotency-Key)\n", err, wait)
		}
		return c, nil
	}
}

// checkServerURL refuses a server URL no request could reach hop at, as bad usage:
// tried, each would fail, be retried for seconds, and say less.
func checkServerURL(raw string) error {
	u, err := neturl.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "":
		return usagef("--url (or HOP_URL) must be like http://localhost:8080 or https://s.example.com, got %q", raw)
	case !weburl.PortOK(u):
		return usagef("--url (or HOP_URL) has port %s, not between 1 and 65535", u.Port())
	case u.RawQuery != "" || u.Fragment != "":
		return usagef("--url (or HOP_URL) must have no query or fragment, got %q", raw)
	}
	return nil
}

// errHelp is returned by parseArgs after it printed the usage asked for with -h or
// --help; the command then exits 0.
var errHelp = errors.New("help printed")

// helped turns errHelp into success.
func helped(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// parseArgs parses flags wherever they stand among the positional arguments
// (`hop links create URL --slug x`), which the flag package alone stops at. -h or
// --help prints use and the flags to stdout (errHelp); a bad flag prints them to
// stderr after the flag package's message (errUsage).
func parseArgs(ce clientEnv, fs *flag.FlagSet, use string, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(ce.stdout, fs, use)
				return nil, errHelp
			}
			printUsage(ce.stderr, fs, use)
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func printUsage(w io.Writer, fs *flag.FlagSet, use string) {
	fmt.Fprintf(w, "%s\n\nflags:\n", use)
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parseArgs prints the usage, to stdout when it was asked for
	return fs
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stringList is a repeatable flag (--tag a --tag b); commas also separate values.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// importCmd runs `hop import --from FORMAT FILE`.
func importCmd(ctx context.Context, ce clientEnv, args []string) error {
	fs := newFlags("import", ce.stderr)
	newClient := ce.clientFlags(fs)
	from := fs.String("from", "", "format of FILE: "+strings.Join(client.Formats, ", "))
	dryRun := fs.Bool("dry-run", false, "print what would be created, skipped or renamed; change nothing")
	onConflict := fs.String("on-conflict", client.OnConflictSkip, "when a custom slug is taken: skip, rename or fail")
	batch := fs.Int("batch", 1000, "links per bulk request (1-1000)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	use := fmt.Sprintf("usage: hop import --from %s [--dry-run] [--on-conflict skip|rename|fail] [--batch N] [--json] FILE", strings.Join(client.Formats, "|"))
	pos, err := parseArgs(ce, fs, use, args)
	if err != nil {
		return helped(err)
	}
	if len(pos) != 1 || *from == "" {
		return usagef("%s", use)
	}
	if !slices.Contains(client.Formats, *from) {
		return usagef("import: --from must be one of %s, not %q", strings.Join(client.Formats, ", "), *from)
	}
	switch *onConflict {
	case client.OnConflictSkip, client.OnConflictRename, client.OnConflictFail:
	default:
		return usagef("import: --on-conflict must be skip, rename or fail, not %q", *onConflict)
	}
	if *batch < 1 || *batch > 1000 {
		return usagef("import: --batch must be 1 to 1000")
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		in = f
	}
	rows, bad, err := client.Read(*from, in)
	if err != nil {
		return fmt.Errorf("import %s: %w", pos[0], err)
	}

	progress, done := importProgress(ce.stderr, len(rows), *dryRun)
	sum, err := c.Import(ctx, rows, client.ImportOptions{DryRun: *dryRun, OnConflict: *onConflict, BatchSize: *batch, Progress: progress})
	done()
	for _, b := range bad {
		sum.Outcomes = append(sum.Outcomes, client.Outcome{Line: b.Line, Action: client.Failed, Reason: b.Reason})
		sum.Failed++
	}
	sort.SliceStable(sum.Outcomes, func(i, j int) bool { return sum.Outcomes[i].Line < sum.Outcomes[j].Line })
	if perr := printImport(ce.stdout, sum, *dryRun, *asJSON); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("import stopped: %w", err)
	}
	if sum.Failed > 0 {
		return fmt.Errorf("import: %d row(s) failed (listed above)", sum.Failed)
	}
	return nil
}

// importProgress shows progress on stderr: a bar on a terminal, otherwise a line at
// every tenth of the rows, which a log keeps readable.
func importProgress(stderr io.Writer, total int, dryRun bool) (progress func(int), done func()) {
	verb := "importing"
	if dryRun {
		verb = "checking"
	}
	if total == 0 {
		return nil, func() {}
	}
	if isTerminal(stderr) {
		bar := progressbar.NewOptions(total, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription(verb),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("links"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		return func(n int) { _ = bar.Add(n) }, func() { _ = bar.Finish() }
	}
	seen, next := 0, 0
	step := max(total/10, 1)
	start := time.Now()
	return func(n int) {
		seen += n
		if seen >= next || seen == total {
			fmt.Fprintf(stderr, "%s: %d/%d rows (%.1fs)\n", verb, seen, total, time.Since(start).Seconds())
			next = (seen/step + 1) * step
		}
	}, func() {}
}

func printImport(w io.Writer, s client.Summary, dryRun, asJSON bool) error {
	if asJSON {
		type outcome struct {
			Line   int    `json:"line"`
			Action string `json:"action"`
			Slug   string `json:"slug,omitempty"`
			URL    string `json:"url,omitempty"`
			Reason string `json:"reason,omitempty"`
			Note   string `json:"note,omitempty"`
		}
		out := struct {
			DryRun   bool      `json:"dry_run"`
			Created  int       `json:"created"`
			Skipped  int       `json:"skipped"`
			Renamed  int       `json:"renamed"`
			Failed   int       `json:"failed"`
			NotSent  int       `json:"not_sent"`
			Outcomes []outcome `json:"rows"`
		}{DryRun: dryRun, Created: s.Created, Skipped: s.Skipped, Renamed: s.Renamed, Failed: s.Failed, NotSent: s.NotSent, Outcomes: []outcome{}}
		for _, o := range s.Outcomes {
			if o.Action != client.Created || dryRun || o.Note != "" {
				out.Outcomes = append(out.Outcomes, outcome(o))
			}
		}
		return writeJSON(w, out)
	}
	for _, o := range s.Outcomes {
		if o.Action == client.Created && !dryRun && o.Note == "" {
			continue // the summary counts them; listing 100,000 creations helps no one
		}
		action := o.Action
		if dryRun {
			action = map[string]string{client.Created: "would create", client.Skipped: "would skip", client.Renamed: "would rename", client.Failed: "would fail"}[o.Action]
		}
		line := fmt.Sprintf("line %d: %s", o.Line, action)
		if o.Slug != "" && o.Action != client.Failed {
			line += " " + o.Slug
		}
		if o.URL != "" && o.Action == client.Created {
			line += " -> " + o.URL
		}
		why := o.Reason
		if o.Reason != "" && o.Note != "" {
			why += "; "
		}
		if why += o.Note; why != "" {
			line += ": " + why
		}
		fmt.Fprintln(w, line)
	}
	prefix := ""
	if dryRun {
		prefix = "dry run, nothing changed: would have "
	}
	notSent := ""
	if s.NotSent > 0 {
		notSent = fmt.Sprintf(", not sent %d", s.NotSent)
	}
	_, err := fmt.Fprintf(w, "%screated %d, skipped %d, renamed %d, failed %d%s\n", prefix, s.Created, s.Skipped, s.Renamed, s.Failed, notSent)
	return err
}

// exportCmd runs `hop export [--format jsonl|csv] [--output FILE]`.
func exportCmd(ctx context.Context, ce clientEnv, args []string) error {
	fs := newFlags("export", ce.stderr)
	newClient := ce.clientFlags(fs)
	format := fs.String("format", "jsonl", "jsonl (input of hop import --from hop) or csv")
	output := fs.String("output", "", "write to this file instead of stdout; it appears only once the export is complete")
	const use = "usage: hop export [--format jsonl|csv] [--output FILE]"
	pos, err := parseArgs(ce, fs, use, args)
	if err != nil {
		return helped(err)
	}
	if len(pos) != 0 {
		return usagef("%s", use)
	}
	if *format != "jsonl" && *format != "csv" {
		return usagef("export: --format must be jsonl or csv, not %q", *format)
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	var n int
	if *output == "" {
		n, err = c.Export(ctx, ce.stdout, *format, nil)
	} else {
		err = writeAtomically(*output, func(w io.Writer) (err error) {
			n, err = c.Export(ctx, w, *format, nil)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(ce.stderr, "exported %d links\n", n)
	return nil
}

// writeAtomically writes a file through write: into a new file beside it, renamed over
// path only once write and the disk are done, so that path never holds a partial
// export (an earlier complete one stays until replaced). On failure the new file is
// removed.
func writeAtomically(path string, write func(io.Writer) error) (err error) {
	var f *os.File
	for range 10 {
		// Like os.Create (mode 0666 less the umask), but never an existing file.
		f, err = os.OpenFile(path+"."+rand.Text()[:8]+".tmp", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

const linksUsage = `usage: hop links create URL [--slug S] [--tag T]... [--domain D] [--title T] [--expires RFC3339] [--max-clicks N]
       hop links list [--tag T] [--q TEXT] [--domain D] [--limit N] [--all]
       hop links get SLUG [--domain D]
       hop links delete SLUG [--domain D]
       hop links stats SLUG [--start YYYY-MM-DD] [--end YYYY-MM-DD] [--tz ZONE] [--domain D]
every command takes --url, --key (or HOP_URL, HOP_KEY) and --json`

// linksCmd runs `hop links create|list|get|delete|stats`.
func linksCmd(ctx context.Context, ce clientEnv, args []string) error {
	if len(args) == 0 {
		return usagef("%s", linksUsage)
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		_, err := fmt.Fprintln(ce.stdout, linksUsage)
		return err
	}
	fs := newFlags("links "+sub, ce.stderr)
	newClient := ce.clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	domain := fs.String("domain", "", "branded domain of the link")
	switch sub {
	case "create":
		var tags stringList
		fs.Var(&tags, "tag", "tag (repeat, or separate with commas)")
		slug := fs.String("slug", "", "custom slug")
		title := fs.String("title", "", "title")
		expires := fs.String("expires", "", "expiry time, RFC 3339 (2030-01-02T15:04:05Z)")
		maxClicks := fs.Int64("max-clicks", 0, "clicks after which the link stops redirecting (1 or more)")
		const use = "usage: hop links create URL [--slug S] [--tag T]... [--domain D] [--title T] [--expires RFC3339] [--max-clicks N]"
		pos, err := parseArgs(ce, fs, use, args)
		if err != nil {
			return helped(err)
		}
		if len(pos) != 1 {
			return usagef("%s", use)
		}
		maxSet := false
		fs.Visit(func(f *flag.Flag) { maxSet = maxSet || f.Name == "max-clicks" })
		if maxSet && *maxClicks < 1 {
			return usagef("links create: --max-clicks must be 1 or more, not %d (leave it out for no limit)", *maxClicks)
		}
		req := client.LinkRequest{URL: pos[0], Slug: *slug, Tags: tags, Domain: *domain, Title: *title}
		if *expires != "" {
			t, err := time.Parse(time.RFC3339, *expires)
			if err != nil {
				return usagef("links create: --expires must be RFC 3339, like 2030-01-02T15:04:05Z")
			}
			req.ExpiresAt = &t
		}
		if maxSet {
			req.MaxClicks = maxClicks
		}
		c, err := newClient()
		if err != nil {
			return err
		}
		l, err := c.CreateLink(ctx, req)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(ce.stdout, l)
		}
		if !isTerminal(ce.stdout) {
			_, err := fmt.Fprintln(ce.stdout, l.ShortURL) // for $(hop links create URL)
			return err
		}
		return printLink(ce.stdout, l)
	case "list":
		tag := fs.String("tag", "", "only links with this tag")
		q := fs.String("q", "", "only links whose slug or URL contains this")
		limit := fs.Int("limit", 20, "links to list (1-100), newest first")
		all := fs.Bool("all", false, "list every link, page after page (a rate limit is waited out)")
		const use = "usage: hop links list [--tag T] [--q TEXT] [--domain D] [--limit N] [--all]"
		pos, err := parseArgs(ce, fs, use, args)
		if err != nil {
			return helped(err)
		}
		if len(pos) != 0 {
			return usagef("%s", use)
		}
		if *limit < 1 || *limit > 100 {
			return usagef("links list: --limit must be 1 to 100")
		}
		c, err := newClient()
		if err != nil {
			return err
		}
		var links []client.Link
		var raw []json.RawMessage
		o := client.ListOptions{Limit: *limit, Tag: *tag, Q: *q, Domain: *domain}
		for {
			p, err := c.ListLinks(ctx, o)
			if err != nil {
				return err
			}
			links, raw = append(links, p.Links...), append(raw, p.Raw...)
			if !*all || p.NextCursor == "" {
				break
			}
			o.Cursor = p.NextCursor
		}
		if *asJSON {
			if raw == nil {
				raw = []json.RawMessage{}
			}
			return writeJSON(ce.stdout, raw)
		}
		return printLinks(ce.stdout, links)
	case "get", "delete", "stats":
		start := fs.String("start", "", "first day, YYYY-MM-DD (stats)")
		end := fs.String("end", "", "last day, YYYY-MM-DD (stats)")
		tz := fs.String("tz", "", "IANA time zone of the days (stats)")
		use := fmt.Sprintf("usage: hop links %s SLUG [--domain D]", sub)
		if sub == "stats" {
			use = "usage: hop links stats SLUG [--start YYYY-MM-DD] [--end YYYY-MM-DD] [--tz ZONE] [--domain D]"
		}
		pos, err := parseArgs(ce, fs, use, args)
		if err != nil {
			return helped(err)
		}
		if len(pos) != 1 {
			return usagef("%s", use)
		}
		if strings.TrimSpace(pos[0]) == "" {
			return usagef("links %s: SLUG is empty\n%s", sub, use)
		}
		if sub != "stats" && (*start != "" || *end != "" || *tz != "") {
			return usagef("links %s: --start, --end and --tz belong to hop links stats", sub)
		}
		c, err := newClient()
		if err != nil {
			return err
		}
		slug := pos[0]
		switch sub {
		case "get":
			l, err := c.GetLink(ctx, slug, *domain)
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(ce.stdout, l)
			}
			return printLink(ce.stdout, l)
		case "delete":
			if err := c.DeleteLink(ctx, slug, *domain); err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(ce.stdout, map[string]any{"deleted": slug})
			}
			_, err := fmt.Fprintf(ce.stdout, "deleted %s (its slug stays reserved)\n", slug)
			return err
		default:
			s, raw, err := c.LinkStats(ctx, slug, client.StatsOptions{Start: *start, End: *end, TZ: *tz, Domain: *domain})
			if err != nil {
				return err
			}
			if *asJSON {
				return writeJSON(ce.stdout, raw)
			}
			return printStats(ce.stdout, s)
		}
	}
	return usagef("hop links: unknown command %q\n%s", sub, linksUsage)
}

func printLink(w io.Writer, l client.Link) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("slug", l.Slug)
	if l.Domain != "" {
		row("domain", l.Domain)
	}
	row("short url", l.ShortURL)
	row("url", l.OriginalURL)
	if l.Title != nil {
		row("title", *l.Title)
	}
	row("status", l.Status)
	row("clicks", fmt.Sprint(l.TotalClicks))
	if l.ImportedClicks > 0 {
		row("imported clicks", fmt.Sprintf("%d (counted before the link came to hop)", l.ImportedClicks))
	}
	if len(l.Tags) > 0 {
		row("tags", strings.Join(l.Tags, ", "))
	}
	if l.ExpiresAt != nil {
		row("expires", l.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if l.MaxClicks != nil {
		row("max clicks", fmt.Sprintf("%d (%d used)", *l.MaxClicks, l.ClicksUsed))
	}
	if l.HasPassword {
		row("password", "yes")
	}
	row("redirect", fmt.Sprint(l.RedirectStatus))
	row("created", l.CreatedAt.UTC().Format(time.RFC3339))
	return tw.Flush()
}

func printLinks(w io.Writer, links []client.Link) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SLUG\tURL\tSTATUS\tCLICKS\tIMPORTED\tTAGS\tCREATED")
	for _, l := range links {
		u := l.OriginalURL
		if len(u) > 60 {
			u = u[:57] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", l.Slug, u, l.Status, l.TotalClicks, l.ImportedClicks,
			strings.Join(l.Tags, ","), l.CreatedAt.UTC().Format("2006-01-02"))
	}
	return tw.Flush()
}

func printStats(w io.Writer, s client.Stats) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\t%s to %s (%s)\n", s.Slug, s.Start, s.End, s.TZ)
	fmt.Fprintf(tw, "clicks\t%d\n", s.TotalClicks)
	fmt.Fprintf(tw, "unique visitors\t%d\n", s.UniqueVisitors)
	fmt.Fprintf(tw, "bot clicks\t%d\n", s.BotClicks)
	fmt.Fprintln(tw)
	if s.TotalClicks == 0 {
		fmt.Fprintln(tw, "no human clicks in this range")
	} else {
		fmt.Fprintln(tw, "DATE\tCLICKS\tUNIQUE")
	}
	for _, d := range s.Daily {
		if d.Clicks > 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", d.Date, d.Clicks, d.UniqueVisitors)
		}
	}
	for _, dim := range []struct {
		name string
		m    map[string]int64
	}{{"COUNTRY", s.Countries}, {"REFERER", s.Referers}, {"BROWSER", s.Browsers}, {"OS", s.OS}, {"DEVICE", s.Devices}} {
		if len(dim.m) == 0 {
			continue
		}
		keys := make([]string, 0, len(dim.m))
		for k := range dim.m {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			a, b := dim.m[keys[i]], dim.m[keys[j]]
			return a > b || a == b && keys[i] < keys[j]
		})
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "%s\tCLICKS\n", dim.name)
		for i, k := range keys {
			if i == 10 {
				break
			}
			fmt.Fprintf(tw, "%s\t%d\n", k, dim.m[k])
		}
	}
	return tw.Flush()
}
