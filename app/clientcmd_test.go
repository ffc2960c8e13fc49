package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/apikey"
	"github.com/jackc/pgx/v5"
)

// cli runs one hop command against h as a user would, with HOP_URL and HOP_KEY set.
func (h *instance) cli(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"HOP_URL": h.URL, "HOP_KEY": h.Key}
	err = Run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustCLI is cli that fails the test unless the command succeeds.
func (h *instance) mustCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, errOut, err := h.cli(t, args...)
	if err != nil {
		t.Fatalf("hop %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func sample(name string) string { return filepath.Join("..", "modules", "client", "testdata", name) }

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// linkCount is the number of links in h's database, deleted ones included.
func (h *instance) linkCount(t testing.TB) int {
	t.Helper()
	var n int
	if err := h.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM links`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func wantExit(t testing.TB, err error, code int) {
	t.Helper()
	if got := ExitCode(err); got != code {
		t.Fatalf("exit code %d (err %v), want %d", got, err, code)
	}
}

func TestImportSampleFiles(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	for _, tc := range []struct {
		format, file string
		want         string // stdout, with <slug> for a generated slug
		exit         int
	}{
		{"csv", "hop.csv", "line 4: failed: url must not contain whitespace or control characters\n" +
			"line 5: failed: created_at: \"yesterday\" is not a date (want RFC 3339, like 2024-01-02T15:04:05Z)\n" +
			"created 3, skipped 0, renamed 0, failed 2\n", 1},
		{"yourls", "yourls.csv", "line 4: renamed <slug>: slug 1 is not usable in hop (slug must be 3 to 64 characters long); now <slug>\n" +
			"created 2, skipped 0, renamed 1, failed 0\n", 0},
		{"shlink", "shlink.csv", "created 2, skipped 0, renamed 0, failed 0\n", 0},
		{"shlink", "shlink.json", "created 2, skipped 0, renamed 0, failed 0\n", 0},
		{"kutt", "kutt.json", "line 19: failed: link \"secret1\" is password-protected in Kutt, whose export has no password; create it by hand\n" +
			"created 2, skipped 0, renamed 0, failed 1\n", 1},
		{"bitly", "bitly.csv", "created 2, skipped 0, renamed 0, failed 0\n", 0},
	} {
		out, errOut, err := h.cli(t, "import", "--from", tc.format, "--on-conflict", "rename", sample(tc.file))
		wantExit(t, err, tc.exit)
		want := regexp.QuoteMeta(tc.want)
		want = strings.ReplaceAll(want, "<slug>", "[A-Za-z0-9]{6,}")
		if !regexp.MustCompile("^" + want + "$").MatchString(out) {
			t.Errorf("%s: stdout\n%s\nwant\n%s\nstderr:\n%s", tc.file, out, tc.want, errOut)
		}
		if !strings.Contains(errOut, "importing: ") {
			t.Errorf("%s: no progress lines on stderr: %q", tc.file, errOut)
		}
	}
	if n := h.linkCount(t); n != 14 {
		t.Errorf("%d links, want 14", n)
	}
	for slug, want := range map[string]string{
		// slug: original_url title created_at imported_clicks total_clicks status tags
		"docs-home":   "https://example.com/docs Documentation 2021-03-04T05:06:07Z 0 0 active [docs help]",
		"ozh":         "http://ozh.org/ Ozh RICHARD 2009-08-11T14:34:05Z 312 0 active []",
		"abc123":      "https://example.net/a Page A 2022-05-06T07:08:09Z 42 0 active [news tech]",
		"12C18":       "https://store.example.com/ Store 2016-08-21T13:12:33Z 328 0 active [store promo]",
		"Xy7aB":       "https://example.com/expired <nil> 2021-06-07T08:09:10Z 3 0 expired []",
		"launch-2023": "https://example.com/launch Launch post 2023-03-01T10:00:00Z 1204 0 active [launch blog]",
		"4qWeRtY":     "https://example.com/untitled Untitled 2023-04-02T11:00:00Z 0 0 active []",
	} {
		l := h.api(t, http.MethodGet, "/links/"+slug, nil)
		mustStatus(t, l, http.StatusOK)
		m := l.JSON(t)
		got := fmt.Sprintf("%v %v %v %v %v %v %v", m["original_url"], m["title"], m["created_at"], m["imported_clicks"], m["total_clicks"], m["status"], m["tags"])
		if got != want {
			t.Errorf("%s: %s, want %s", slug, got, want)
		}
	}
}

func TestImportDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.createLink(t, map[string]any{"url": "https://example.com/old", "slug": "taken"})
	file := writeFile(t, "dry.csv", "url,slug\nhttps://example.com/a,taken\nhttps://example.com/b,fresh1\nhttps://example.com/c,\nftp://example.com/d,\nhttps://example.com/e,fresh1\n")

	out, _, err := h.cli(t, "import", "--from", "csv", "--dry-run", file)
	wantExit(t, err, 1)
	want := `line 2: would skip taken: slug taken is taken
line 3: would create fresh1 -> https://example.com/b
line 4: would create -> https://example.com/c
line 5: would fail: url scheme "ftp" is not allowed; use http or https
line 6: would skip fresh1: slug fresh1 is taken
dry run, nothing changed: would have created 2, skipped 2, renamed 0, failed 1
`
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}
	out, _, err = h.cli(t, "import", "--from", "csv", "--dry-run", "--on-conflict", "rename", "--json", file)
	wantExit(t, err, 1)
	var sum struct {
		DryRun                            bool `json:"dry_run"`
		Created, Skipped, Renamed, Failed int
		Rows                              []struct {
			Line                 int
			Action, Slug, Reason string
		}
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !sum.DryRun || sum.Created != 2 || sum.Renamed != 2 || sum.Failed != 1 || sum.Skipped != 0 || len(sum.Rows) != 5 {
		t.Errorf("summary %+v", sum)
	}
	if r := sum.Rows[0]; r.Action != "renamed" || r.Slug != "taken-2" {
		t.Errorf("row 2: %+v, want renamed to taken-2", r)
	}
	if n := h.linkCount(t); n != 1 {
		t.Errorf("a dry run left %d links, want the 1 there was", n)
	}
}

func TestImportConflictPolicies(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	for _, s := range []string{"skip-taken", "ren-taken", "ren-taken-2", "fail-taken"} {
		h.createLink(t, map[string]any{"url": "https://example.com/existing/" + s, "slug": s})
	}

	t.Run("skip", func(t *testing.T) {
		file := writeFile(t, "skip.csv", "url,slug\nhttps://example.com/new,skip-taken\nhttps://example.com/new2,skip-new\n")
		out := h.mustCLI(t, "import", "--from", "csv", file)
		if want := "line 2: skipped skip-taken: slug skip-taken is taken\ncreated 1, skipped 1, renamed 0, failed 0\n"; out != want {
			t.Errorf("stdout\n%s\nwant\n%s", out, want)
		}
		if l := h.api(t, http.MethodGet, "/links/skip-taken", nil).JSON(t); l["original_url"] != "https://example.com/existing/skip-taken" {
			t.Errorf("the existing link changed: %v", l)
		}
	})
	t.Run("rename", func(t *testing.T) {
		file := writeFile(t, "ren.csv", "url,slug\nhttps://example.com/renamed,ren-taken\n")
		out := h.mustCLI(t, "import", "--from", "csv", "--on-conflict", "rename", file)
		if want := "line 2: renamed ren-taken-3: slug ren-taken is taken; now ren-taken-3\ncreated 0, skipped 0, renamed 1, failed 0\n"; out != want {
			t.Errorf("stdout\n%s\nwant\n%s", out, want)
		}
		if l := h.api(t, http.MethodGet, "/links/ren-taken-3", nil).JSON(t); l["original_url"] != "https://example.com/renamed" {
			t.Errorf("ren-taken-3 is %v", l)
		}
		// Once the server has forgotten the batch (its key expired), a re-run still
		// finds the renamed link and creates nothing.
		if _, err := h.DB.Pool.Exec(context.Background(), `DELETE FROM idempotency_keys`); err != nil {
			t.Fatal(err)
		}
		before := h.linkCount(t)
		out = h.mustCLI(t, "import", "--from", "csv", "--on-conflict", "rename", file)
		if want := "line 2: skipped ren-taken-3: already imported as ren-taken-3\ncreated 0, skipped 1, renamed 0, failed 0\n"; out != want {
			t.Errorf("re-run stdout\n%s\nwant\n%s", out, want)
		}
		if n := h.linkCount(t); n != before {
			t.Errorf("re-run made %d links, want %d", n, before)
		}
	})
	t.Run("fail", func(t *testing.T) {
		file := writeFile(t, "fail.csv", "url,slug\nhttps://example.com/f1,fail-new-1\nhttps://example.com/f2,fail-taken\nhttps://example.com/f3,fail-new-2\n")
		out, _, err := h.cli(t, "import", "--from", "csv", "--on-conflict", "fail", "--batch", "1", file)
		wantExit(t, err, 1)
		want := "line 3: failed: slug fail-taken is taken\n" +
			"line 4: not sent fail-new-2: an earlier row's slug was taken (--on-conflict fail)\n" +
			"created 1, skipped 0, renamed 0, failed 1, not sent 1\n"
		if out != want {
			t.Errorf("stdout\n%s\nwant\n%s", out, want)
		}
		mustProblem(t, h.api(t, http.MethodGet, "/links/fail-new-2", nil), http.StatusNotFound)
	})
}

// Under --on-conflict fail the batches after the first conflict are never sent: their
// rows are reported not sent, never skipped, and every row read is counted once. Run
// again with --on-conflict skip, the batches done are answered from the server's
// record and the rest are sent.
func TestImportFailPolicyCountsEveryRow(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.createLink(t, map[string]any{"url": "https://example.com/existing", "slug": "stop-taken"})
	// Batches of 2: lines 2-3, 4-5 (the conflict), then 7-8; line 6 fails as it is read.
	file := writeFile(t, "stop.csv", "url,slug,created_at\n"+
		"https://example.com/s1,stop-1,\n"+
		"https://example.com/s2,,\n"+
		"https://example.com/s3,stop-taken,\n"+
		"https://example.com/s4,stop-2,\n"+
		"https://example.com/s5,stop-x,yesterday\n"+
		"https://example.com/s6,stop-3,\n"+
		"https://example.com/s7,,\n")

	out, _, err := h.cli(t, "import", "--from", "csv", "--on-conflict", "fail", "--batch", "2", file)
	wantExit(t, err, 1)
	want := "line 4: failed: slug stop-taken is taken\n" +
		"line 6: failed: created_at: \"yesterday\" is not a date (want RFC 3339, like 2024-01-02T15:04:05Z)\n" +
		"line 7: not sent stop-3: an earlier row's slug was taken (--on-conflict fail)\n" +
		"line 8: not sent: an earlier row's slug was taken (--on-conflict fail)\n" +
		"created 3, skipped 0, renamed 0, failed 2, not sent 2\n"
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}
	if n := h.linkCount(t); n != 4 {
		t.Errorf("%d links, want 4: the one there was and the 3 of the batches sent", n)
	}
	mustProblem(t, h.api(t, http.MethodGet, "/links/stop-3", nil), http.StatusNotFound)

	out, _, err = h.cli(t, "import", "--from", "csv", "--on-conflict", "skip", "--batch", "2", "--json", file)
	wantExit(t, err, 1) // line 6 still fails
	var sum struct {
		Created, Skipped, Renamed, Failed int
		NotSent                           int `json:"not_sent"`
		Rows                              []struct {
			Line           int
			Action, Reason string
		}
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if sum.Created != 2 || sum.Skipped != 4 || sum.Renamed != 0 || sum.Failed != 1 || sum.NotSent != 0 || len(sum.Rows) != 5 {
		t.Errorf("re-run with skip: %s", out)
	}
	if r := sum.Rows[2]; r.Line != 4 || r.Action != "skipped" || r.Reason != "slug stop-taken is taken" {
		t.Errorf("re-run, line 4: %+v", r)
	}
	if n := h.linkCount(t); n != 6 {
		t.Errorf("%d links after the re-run, want 6", n)
	}
}

// Shlink's validSince has no place in hop: the link is imported without it, and the
// row says so, in a dry run too; a row whose link is not made says nothing of it.
func TestImportShlinkValidSinceReported(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.createLink(t, map[string]any{"url": "https://example.com/other", "slug": "vs-taken"})
	file := writeFile(t, "shlink.json", `[
{"shortCode":"vs-later","longUrl":"https://example.com/later","meta":{"validSince":"2099-01-02T03:04:05+00:00","validUntil":null,"maxVisits":null}},
{"shortCode":"vs-none","longUrl":"https://example.com/none","meta":{"validSince":null,"validUntil":null,"maxVisits":null}},
{"shortCode":"vs-taken","longUrl":"https://example.com/taken","meta":{"validSince":"2099-01-02T03:04:05+00:00"}}
]`)
	const note = "meta.validSince 2099-01-02T03:04:05+00:00 was not kept: hop links have no start date, so the link answers as soon as it is imported"

	out, _, err := h.cli(t, "import", "--from", "shlink", "--dry-run", "--json", file)
	wantExit(t, err, 0)
	var sum struct {
		Rows []struct {
			Line                       int
			Action, Slug, Reason, Note string
		}
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := fmt.Sprintf("%+v", sum.Rows)
	if want := "[{Line:2 Action:created Slug:vs-later Reason: Note:" + note + "} {Line:3 Action:created Slug:vs-none Reason: Note:} " +
		"{Line:4 Action:skipped Slug:vs-taken Reason:slug vs-taken is taken Note:}]"; got != want {
		t.Errorf("dry run rows\n%s\nwant\n%s", got, want)
	}

	out, _, err = h.cli(t, "import", "--from", "shlink", "--on-conflict", "rename", file)
	wantExit(t, err, 0)
	want := "line 2: created vs-later -> https://example.com/later: " + note + "\n" +
		"line 4: renamed vs-taken-2: slug vs-taken is taken; now vs-taken-2; " + note + "\n" +
		"created 2, skipped 0, renamed 1, failed 0\n"
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}
	if r := h.do(t, http.MethodGet, "/vs-later", nil); r.Status != http.StatusFound || r.Header.Get("Location") != "https://example.com/later" {
		t.Errorf("vs-later answers %d %s, want a redirect at once", r.Status, r.Header.Get("Location"))
	}
}

// A title over several lines, as other shorteners store fetched page titles, is
// imported on one line, not refused.
func TestImportMultiLineTitles(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	for _, tc := range []struct{ format, file, slug, title string }{
		{"csv", "url,slug,title\nhttps://example.com/ml1,ml-one,\"First line\nsecond line\"\n", "ml-one", "First line second line"},
		{"shlink", `[{"shortCode":"ml-two","longUrl":"https://example.com/ml2","title":"Title\r\n\twith a tab"}]`, "ml-two", "Title with a tab"},
	} {
		out := h.mustCLI(t, "import", "--from", tc.format, writeFile(t, tc.slug, tc.file))
		if out != "created 1, skipped 0, renamed 0, failed 0\n" {
			t.Errorf("%s: %s", tc.format, out)
		}
		if l := h.api(t, http.MethodGet, "/links/"+tc.slug, nil).JSON(t); l["title"] != tc.title {
			t.Errorf("%s: title %q, want %q", tc.slug, l["title"], tc.title)
		}
	}
}

// A slug asked for before it existed is cached as unknown, on every instance; once a
// bulk create (an import) makes it, it redirects at once.
func TestImportedSlugRedirectsAtOnce(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	other := startWith(t, h.DB, h.Redis, testConfig(t, h.DB, h.Redis))
	for _, in := range []*instance{h, other} {
		mustProblem(t, in.do(t, http.MethodGet, "/was-unknown", nil), http.StatusNotFound)
	}
	file := writeFile(t, "neg.csv", "url,slug\nhttps://example.com/known,was-unknown\n")
	h.mustCLI(t, "import", "--from", "csv", file)
	r := h.do(t, http.MethodGet, "/was-unknown", nil)
	if r.Status != http.StatusFound || r.Header.Get("Location") != "https://example.com/known" {
		t.Fatalf("the importing instance answers %d %s", r.Status, r.Header.Get("Location"))
	}
	testenv.Eventually(t, 5*time.Second, "the other instance to see the new link", func() bool {
		return other.do(t, http.MethodGet, "/was-unknown", nil).Status == http.StatusFound
	})
}

func TestImportRerunCreatesNothing(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	var b strings.Builder
	b.WriteString("url,slug,tags\n")
	for i := range 250 {
		slug := ""
		if i%2 == 0 {
			slug = fmt.Sprintf("rerun-%03d", i)
		}
		fmt.Fprintf(&b, "https://example.com/rerun/%d,%s,r\n", i, slug)
	}
	file := writeFile(t, "rerun.csv", b.String())
	// An import interrupted after its first two batches: the same rows, sent the same way.
	head := strings.Join(strings.SplitAfter(b.String(), "\n")[:201], "")
	if out := h.mustCLI(t, "import", "--from", "csv", "--batch", "100", writeFile(t, "head.csv", head)); out != "created 200, skipped 0, renamed 0, failed 0\n" {
		t.Fatalf("interrupted run: %s", out)
	}
	// Resumed: the two batches sent before are answered from the server's records.
	out := h.mustCLI(t, "import", "--from", "csv", "--batch", "100", file)
	if !strings.HasSuffix(out, "created 50, skipped 200, renamed 0, failed 0\n") {
		t.Fatalf("resumed run: %s", out)
	}
	out = h.mustCLI(t, "import", "--from", "csv", "--batch", "100", file)
	if !strings.HasSuffix(out, "created 0, skipped 250, renamed 0, failed 0\n") ||
		!regexp.MustCompile(`(?m)^line 3: skipped [A-Za-z0-9]{6,}: already imported \(the server replayed its earlier answer\)$`).MatchString(out) {
		t.Errorf("re-run:\n%s", out)
	}
	if n := h.linkCount(t); n != 250 {
		t.Errorf("%d links after the re-run, want 250", n)
	}
}

// listLinks is every live link of h by slug, as the API shows it.
func listLinks(t testing.TB, h *instance) map[string]map[string]any {
	t.Helper()
	r := h.api(t, http.MethodGet, "/links?limit=100", nil)
	mustStatus(t, r, http.StatusOK)
	var body struct{ Links []map[string]any }
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for _, l := range body.Links {
		out[l["slug"].(string)] = l
	}
	return out
}

// An export, as JSON lines or as CSV, imported into another hop gives the same links:
// every option, the tags (whatever they hold), and the clicks of the source as imported
// clicks.
func TestExportImportRoundTrip(t *testing.T) {
	t.Parallel()
	a := startHop(t, nil)
	if out, _, err := a.cli(t, "import", "--from", "kutt", sample("kutt.json")); !strings.HasSuffix(out, "created 2, skipped 0, renamed 0, failed 1\n") {
		t.Fatalf("import into a: %v\n%s", err, out)
	}
	a.createLink(t, map[string]any{"url": "https://example.com/opts", "slug": "opts", "tags": []string{"x", "with,comma", "semi;colon", "pipe|bar", `"quoted" [x]`},
		"max_clicks": 10, "redirect_status": 301, "forward_query": false, "expired_url": "https://example.com/over", "expires_at": "2040-01-02T03:04:05Z", "title": `Big 5" screen`})
	a.createLink(t, map[string]any{"url": "https://example.com/plain"})
	// A limited link arrives with what it used of its limit; one used up stays used up.
	a.createLink(t, map[string]any{"url": "https://example.com/capped", "slug": "capped", "max_clicks": 1})
	ua := "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
	for slug, status := range map[string]int{"kutt-docs": http.StatusFound, "opts": http.StatusMovedPermanently, "capped": http.StatusFound} {
		mustStatus(t, a.do(t, http.MethodGet, "/"+slug, nil, "User-Agent", ua), status)
	}
	testenv.Eventually(t, 20*time.Second, "the clicks to be aggregated", func() bool {
		return a.api(t, http.MethodGet, "/links/kutt-docs", nil).JSON(t)["total_clicks"] == float64(1) &&
			a.api(t, http.MethodGet, "/links/opts", nil).JSON(t)["total_clicks"] == float64(1) &&
			a.api(t, http.MethodGet, "/links/capped", nil).JSON(t)["total_clicks"] == float64(1)
	})
	la := listLinks(t, a)
	if len(la) != 5 || la["capped"]["status"] != "limit_reached" || la["opts"]["clicks_used"] != float64(1) {
		t.Fatalf("a has %d links, capped %v, opts %v", len(la), la["capped"], la["opts"])
	}

	for _, format := range []string{"jsonl", "csv"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			b := startHop(t, nil)
			from := map[string]string{"jsonl": "hop", "csv": "csv"}[format]
			exported := a.mustCLI(t, "export", "--format", format)
			file := writeFile(t, "a."+format, exported)
			if out := b.mustCLI(t, "import", "--from", from, file); out != "created 5, skipped 0, renamed 0, failed 0\n" {
				t.Fatalf("import into b: %s\nexport:\n%s", out, exported)
			}
			lb := listLinks(t, b)
			if len(lb) != 5 {
				t.Fatalf("b has %d links, want 5", len(lb))
			}
			for slug, x := range la {
				y, ok := lb[slug]
				if !ok {
					t.Errorf("%s is missing from b", slug)
					continue
				}
				f := []string{"original_url", "title", "tags", "created_at", "expires_at", "max_clicks", "redirect_status", "forward_query", "expired_url", "status", "domain"}
				if x["max_clicks"] != nil {
					f = append(f, "clicks_used")
				}
				for _, f := range f {
					if fmt.Sprint(x[f]) != fmt.Sprint(y[f]) {
						t.Errorf("%s.%s: a %v, b %v", slug, f, x[f], y[f])
					}
				}
				wantImported := x["total_clicks"].(float64) + x["imported_clicks"].(float64)
				if y["imported_clicks"] != wantImported || y["total_clicks"] != float64(0) {
					t.Errorf("%s: b has imported_clicks %v and total_clicks %v, want %v and 0", slug, y["imported_clicks"], y["total_clicks"], wantImported)
				}
			}
			if got := lb["kutt-docs"]["imported_clicks"]; got != float64(58) {
				t.Errorf("kutt-docs imported_clicks in b = %v, want 57 from Kutt + 1 click in a", got)
			}
			if got := fmt.Sprintf("%q", lb["opts"]["tags"]); got != `["x" "with,comma" "semi;colon" "pipe|bar" "\"quoted\" [x]"]` {
				t.Errorf("opts tags in b: %s", got)
			}
			mustProblem(t, b.do(t, http.MethodGet, "/capped", nil), http.StatusGone)
			// A second import into b is answered from its idempotency records.
			if out := b.mustCLI(t, "import", "--from", from, file); !strings.HasSuffix(out, "created 0, skipped 5, renamed 0, failed 0\n") {
				t.Errorf("second import into b: %s", out)
			}
		})
	}

	csvOut := a.mustCLI(t, "export", "--format", "csv")
	lines := strings.Split(strings.TrimSpace(csvOut), "\n")
	if len(lines) != 6 || lines[0] != "url,slug,domain,title,tags,created_at,expires_at,max_clicks,imported_clicks,total_clicks,status,redirect_status,forward_query,expired_url,has_password,clicks_used,short_url" {
		t.Errorf("CSV export:\n%s", csvOut)
	}
	// Tags are a JSON array; links on the default domain name none.
	if !strings.Contains(csvOut, `https://example.com/opts,opts,,"Big 5"" screen","[""x"",""with,comma"",""semi;colon"",""pipe|bar"",""\""quoted\"" [x]""]",`) {
		t.Errorf("CSV export lacks the opts row:\n%s", csvOut)
	}
}

// Importing an export into a hop with another base URL puts the links of the source's
// default domain on the target's default domain, and keeps branded domains the target
// also has.
func TestExportToAnotherHop(t *testing.T) {
	t.Parallel()
	a := startHop(t, nil) // default domain hop.test
	mustStatus(t, a.api(t, http.MethodPost, "/domains", map[string]any{"host": "brand.example"}), http.StatusCreated)
	for i := range 3 {
		a.createLink(t, map[string]any{"url": fmt.Sprintf("https://example.com/d/%d", i), "slug": fmt.Sprintf("def-%d", i)})
	}
	for i := range 2 {
		a.createLink(t, map[string]any{"url": fmt.Sprintf("https://example.com/b/%d", i), "slug": fmt.Sprintf("brand-%d", i), "domain": "brand.example"})
	}

	for _, format := range []string{"jsonl", "csv"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			exported := a.mustCLI(t, "export", "--format", format)
			if strings.Contains(exported, "hop.test,") || strings.Contains(exported, `"domain":"hop.test"`) || strings.Count(exported, "brand.example") < 2 {
				t.Errorf("export names the default domain, or not the branded one:\n%s", exported)
			}
			b := startHop(t, func(cfg map[string]any) { cfg["base_url"] = "http://127.0.0.1:8089" })
			mustStatus(t, b.api(t, http.MethodPost, "/domains", map[string]any{"host": "brand.example"}), http.StatusCreated)
			from := map[string]string{"jsonl": "hop", "csv": "csv"}[format]
			if out := b.mustCLI(t, "import", "--from", from, writeFile(t, "a."+format, exported)); out != "created 5, skipped 0, renamed 0, failed 0\n" {
				t.Fatalf("import into b: %s", out)
			}
			for i := range 3 {
				l := b.api(t, http.MethodGet, fmt.Sprintf("/links/def-%d", i), nil)
				mustStatus(t, l, http.StatusOK)
				if m := l.JSON(t); m["domain"] != "127.0.0.1" || m["short_url"] != fmt.Sprintf("http://127.0.0.1:8089/def-%d", i) {
					t.Errorf("def-%d on b: domain %v, short_url %v", i, m["domain"], m["short_url"])
				}
			}
			for i := range 2 {
				l := b.api(t, http.MethodGet, fmt.Sprintf("/links/brand-%d?domain=brand.example", i), nil)
				mustStatus(t, l, http.StatusOK)
				if m := l.JSON(t); m["domain"] != "brand.example" || m["original_url"] != fmt.Sprintf("https://example.com/b/%d", i) {
					t.Errorf("brand-%d on b: %v", i, m)
				}
			}
		})
	}
}

// A stray quote in a CSV row costs at most that row: every other row of the file is
// created, the quote read as it stands.
func TestImportCSVStrayQuote(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	var b strings.Builder
	b.WriteString("url,slug,title\n")
	for i := range 5000 {
		line := i + 2
		switch line {
		case 51:
			fmt.Fprintf(&b, "https://example.com/q/%d,q-%d,Big 5\" screen\n", i, i)
		case 2501:
			fmt.Fprintf(&b, "https://example.com/q/%d,q-%d,\"Big 5 screen\n", i, i) // a quote that never closes
		default:
			fmt.Fprintf(&b, "https://example.com/q/%d,q-%d,Row %d\n", i, i, i)
		}
	}
	out, errOut, err := h.cli(t, "import", "--from", "csv", writeFile(t, "quotes.csv", b.String()))
	wantExit(t, err, 1)
	want := "line 2501: failed: a quoted field opened on this line is never closed properly; the row is skipped and the next line read on its own\n" +
		"created 4999, skipped 0, renamed 0, failed 1\n"
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s\nstderr:\n%s", out, want, errOut)
	}
	if n := h.linkCount(t); n != 4999 {
		t.Errorf("%d links, want 4999", n)
	}
	if l := h.api(t, http.MethodGet, "/links/q-49", nil).JSON(t); l["title"] != `Big 5" screen` {
		t.Errorf("line 51's title is %v", l["title"])
	}
	if l := h.api(t, http.MethodGet, "/links/q-4998", nil).JSON(t); l["title"] != "Row 4998" {
		t.Errorf("the last line's link: %v", l)
	}
}

// Under a low API rate limit, export and links list --all wait as the 429s ask and
// finish with every link; an export that cannot finish leaves no file under its name.
func TestExportWaitsOutRateLimit(t *testing.T) {
	t.Parallel()
	var rows strings.Builder
	rows.WriteString("url\n")
	for i := range 450 {
		fmt.Fprintf(&rows, "https://example.com/rl/%d\n", i)
	}
	file := writeFile(t, "rl.csv", rows.String())

	t.Run("waits", func(t *testing.T) {
		t.Parallel()
		h := startHop(t, func(cfg map[string]any) { cfg["rate_limit_api"] = "1-S" })
		if out := h.mustCLI(t, "import", "--from", "csv", file); out != "created 450, skipped 0, renamed 0, failed 0\n" {
			t.Fatalf("import: %s", out)
		}
		// One request a second: the export's six (domains, five pages) cannot all pass
		// without a 429.
		path := filepath.Join(t.TempDir(), "links.jsonl")
		_, errOut, err := h.cli(t, "export", "--output", path)
		if err != nil {
			t.Fatalf("export: %v\n%s", err, errOut)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(data, []byte("\n")); n != 450 || !strings.Contains(errOut, "exported 450 links\n") {
			t.Errorf("export wrote %d lines; stderr:\n%s", n, errOut)
		}
		if !strings.Contains(errOut, "hop: the server is rate-limiting this API key (429); waiting ") {
			t.Errorf("stderr does not say it waited:\n%s", errOut)
		}
		out, errOut, err := h.cli(t, "links", "list", "--all", "--limit", "100", "--json")
		var all []map[string]any
		if err != nil || json.Unmarshal([]byte(out), &all) != nil || len(all) != 450 {
			t.Errorf("links list --all: %v, %d links\nstderr:\n%s", err, len(all), errOut)
		}
	})

	t.Run("gives up", func(t *testing.T) {
		t.Parallel()
		// Three requests an hour: the import, the domains and the first page pass; the
		// second page's Retry-After is far beyond what the client waits.
		h := startHop(t, func(cfg map[string]any) { cfg["rate_limit_api"] = "3-H" })
		if out := h.mustCLI(t, "import", "--from", "csv", file); out != "created 450, skipped 0, renamed 0, failed 0\n" {
			t.Fatalf("import: %s", out)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "links.jsonl")
		if err := os.WriteFile(path, []byte("an earlier export\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := h.cli(t, "export", "--output", path)
		wantExit(t, err, 1)
		if err == nil || !strings.Contains(err.Error(), "allowed for one request") || !strings.Contains(err.Error(), "Too Many Requests") {
			t.Errorf("export: %v\nstderr:\n%s", err, errOut)
		}
		// A new file is never left half-written: the earlier export stays, nothing else.
		_, _, err = h.cli(t, "export", "--format", "csv", "--output", filepath.Join(dir, "new.csv"))
		wantExit(t, err, 1)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(path); len(entries) != 1 || string(data) != "an earlier export\n" {
			t.Errorf("%d files in the directory (want 1); %s holds %q", len(entries), path, data)
		}
	})
}

// -h and --help print the command's usage once, to stdout, and succeed.
func TestClientHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"links", "--help"}, {"links", "-h"}, {"import", "--help"}, {"import", "-h"}, {"export", "--help"},
		{"links", "create", "--help"}, {"links", "create", "https://x.test", "-h"}, {"links", "list", "--help"},
		{"links", "get", "--help"}, {"links", "delete", "-h"}, {"links", "stats", "--help"},
	} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
		name := strings.Join(args, " ")
		if err != nil || errOut.Len() != 0 || strings.Count(out.String(), "usage: hop "+args[0]) != 1 {
			t.Errorf("hop %s: err %v\nstdout:\n%s\nstderr:\n%s", name, err, &out, &errOut)
		}
		if len(args) > 2 && !strings.Contains(out.String(), "hop links "+args[1]) {
			t.Errorf("hop %s: not the usage of links %s:\n%s", name, args[1], &out)
		}
	}
	// hop's own usage: once, to stdout, when asked for; to stderr after a bad flag.
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
		if err != nil || errOut.Len() != 0 || strings.Count(out.String(), "Usage:") != 1 {
			t.Errorf("hop %s: err %v\nstdout:\n%s\nstderr:\n%s", args[0], err, &out, &errOut)
		}
	}
	// A server command's usage, before any configuration is read: no database is
	// created and no PostgreSQL is started for it.
	dir := t.TempDir()
	env := map[string]string{"DATABASE_URL": testenv.WithDatabase(testenv.AdminURL(), "hop_help_never_created"),
		"HOP_CREATE_DATABASE": "true", "HOP_DATA_DIR": filepath.Join(dir, "data")}
	for _, args := range [][]string{{"serve", "--help"}, {"migrate", "-h"}, {"apikey", "create", "--help"}, {"domain", "--help"},
		{"health", "--help"}, {"backup", "-help"}, {"restore", "--help"}} {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
		if err != nil || errOut.Len() != 0 || strings.Count(out.String(), "Usage:") != 1 || !strings.Contains(out.String(), "] "+args[0]) &&
			!strings.Contains(out.String(), "[serve]") {
			t.Errorf("hop %s: err %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, &out, &errOut)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a usage wrote %d files", len(entries))
	}
	admin, err := pgx.Connect(context.Background(), testenv.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var exists bool
	if err := admin.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'hop_help_never_created')`).Scan(&exists); err != nil || exists {
		t.Errorf("a usage created a database (%v)", err)
		_, _ = admin.Exec(context.Background(), `DROP DATABASE IF EXISTS hop_help_never_created WITH (FORCE)`)
	}
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"--nope"}, func(string) string { return "" }, &out, &errOut); !errors.Is(err, errUsage) ||
		out.Len() != 0 || strings.Count(errOut.String(), "Usage:") != 1 {
		t.Errorf("hop --nope: err %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
}

func TestLinksCommands(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)

	out := h.mustCLI(t, "links", "create", "https://example.com/cli", "--slug", "cli-one", "--tag", "a", "--tag", "b,c", "--max-clicks", "5", "--title", "CLI", "--json")
	var l map[string]any
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if l["slug"] != "cli-one" || fmt.Sprint(l["tags"]) != "[a b c]" || l["max_clicks"] != float64(5) || l["title"] != "CLI" {
		t.Errorf("created %v", l)
	}
	// Without --json and not on a terminal, create prints the short URL alone.
	if out := h.mustCLI(t, "links", "create", "https://example.com/cli2"); !regexp.MustCompile(`^https://hop\.test/[A-Za-z0-9]{6,}\n$`).MatchString(out) {
		t.Errorf("create printed %q", out)
	}

	out = h.mustCLI(t, "links", "list", "--tag", "a")
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 2 || !strings.HasPrefix(rows[0], "SLUG") || !regexp.MustCompile(`^cli-one\s+https://example.com/cli\s+active\s+0\s+0\s+a,b,c\s+\d{4}-\d\d-\d\d$`).MatchString(rows[1]) {
		t.Errorf("list:\n%s", out)
	}
	out = h.mustCLI(t, "links", "list", "--json")
	var all []map[string]any
	if err := json.Unmarshal([]byte(out), &all); err != nil || len(all) != 2 {
		t.Errorf("list --json: %v, %d links: %s", err, len(all), out)
	}

	out = h.mustCLI(t, "links", "get", "cli-one")
	for _, want := range []string{`(?m)^slug\s+cli-one$`, `(?m)^url\s+https://example.com/cli$`, `(?m)^max clicks\s+5 \(0 used\)$`, `(?m)^tags\s+a, b, c$`, `(?m)^title\s+CLI$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("get does not match %s:\n%s", want, out)
		}
	}
	out = h.mustCLI(t, "links", "get", "cli-one", "--json")
	if err := json.Unmarshal([]byte(out), &l); err != nil || l["original_url"] != "https://example.com/cli" {
		t.Errorf("get --json: %v %s", err, out)
	}

	out = h.mustCLI(t, "links", "stats", "cli-one", "--start", "2026-01-01", "--end", "2026-01-31", "--json")
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil || st["slug"] != "cli-one" || st["total_clicks"] != float64(0) || st["start"] != "2026-01-01" {
		t.Errorf("stats --json: %v %s", err, out)
	}
	out = h.mustCLI(t, "links", "stats", "cli-one", "--start", "2026-01-01", "--end", "2026-01-31", "--tz", "Europe/Paris")
	// No human clicks: said in words, not as an empty table.
	if !regexp.MustCompile(`^cli-one\s+2026-01-01 to 2026-01-31 \(Europe/Paris\)\nclicks\s+0\n(.*\n){3}no human clicks in this range\n`).MatchString(out) ||
		strings.Contains(out, "DATE") {
		t.Errorf("stats:\n%s", out)
	}

	if out := h.mustCLI(t, "links", "delete", "cli-one"); out != "deleted cli-one (its slug stays reserved)\n" {
		t.Errorf("delete: %q", out)
	}
	_, _, err := h.cli(t, "links", "get", "cli-one")
	wantExit(t, err, 1)
	if err == nil || err.Error() != "Gone: this link was deleted" {
		t.Errorf("get after delete: %v, want the problem's title and detail", err)
	}
	_, _, err = h.cli(t, "links", "create", "https://example.com/x", "--slug", "cli-one")
	if err == nil || !strings.HasPrefix(err.Error(), "Conflict: this slug is taken") {
		t.Errorf("create on a deleted slug: %v", err)
	}

	for _, args := range [][]string{
		{"links"}, {"links", "frob"}, {"links", "get"}, {"links", "get", "a", "b"}, {"links", "list", "--limit", "0"},
		{"links", "create", "https://x.test", "--expires", "tomorrow"}, {"links", "get", "x", "--nope"},
		{"import", "--from", "nope", "f"}, {"import", "f"}, {"import", "--from", "csv", "--on-conflict", "maybe", "f"}, {"export", "--format", "xml"},
		{"links", "create", "https://x.test", "--max-clicks", "0"}, {"links", "create", "https://x.test", "--max-clicks=-1"},
		{"links", "get", ""}, {"links", "delete", " "}, {"links", "stats", ""},
	} {
		_, _, err := h.cli(t, args...)
		if ExitCode(err) != 2 {
			t.Errorf("hop %s: exit %d (%v), want 2", strings.Join(args, " "), ExitCode(err), err)
		}
	}
	// A limit of 0 clicks is refused, never sent as none.
	before := h.linkCount(t)
	if _, _, err := h.cli(t, "links", "create", "https://x.test", "--max-clicks", "0"); err == nil ||
		err.Error() != "links create: --max-clicks must be 1 or more, not 0 (leave it out for no limit)" {
		t.Errorf("--max-clicks 0: %v", err)
	}
	if n := h.linkCount(t); n != before {
		t.Errorf("a refused create made a link: %d links, want %d", n, before)
	}
	// No key at all is a usage error too.
	err = Run(context.Background(), []string{"links", "list"}, func(string) string { return "" }, io.Discard, io.Discard)
	wantExit(t, err, 2)
	// So is a server URL no request could reach: refused at once, never retried.
	for _, u := range []string{"not-a-url", "127.0.0.1:8080", "ftp://127.0.0.1:8080", "http://", "http://127.0.0.1:99999", h.URL + "?x=1"} {
		env := map[string]string{"HOP_URL": u, "HOP_KEY": h.Key}
		var errOut bytes.Buffer
		err := Run(context.Background(), []string{"links", "list"}, func(k string) string { return env[k] }, io.Discard, &errOut)
		if ExitCode(err) != 2 || !strings.Contains(err.Error(), "--url (or HOP_URL)") || errOut.Len() != 0 {
			t.Errorf("HOP_URL=%s: exit %d (%v), stderr %q; want 2 at once", u, ExitCode(err), err, errOut.String())
		}
	}
	// A wrong key is the server's 401, shown with its title.
	_, _, err = h.cli(t, "links", "list", "--key", "hop_wrong_key_0123456789abcdef01234567")
	if ExitCode(err) != 1 || err == nil || !strings.HasPrefix(err.Error(), "Unauthorized") {
		t.Errorf("wrong key: %v", err)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	body := map[string]any{"url": "https://example.com/idem", "tags": []string{"i"}}

	first := h.api(t, http.MethodPost, "/links", body, "Idempotency-Key", "k-1")
	mustStatus(t, first, http.StatusCreated)
	if first.Header.Get("Idempotent-Replayed") != "" {
		t.Error("a first answer is marked replayed")
	}
	again := h.api(t, http.MethodPost, "/links", body, "Idempotency-Key", "k-1")
	mustStatus(t, again, http.StatusCreated)
	if !bytes.Equal(again.Body, first.Body) || again.Header.Get("Idempotent-Replayed") != "true" || again.Header.Get("Location") != first.Header.Get("Location") {
		t.Errorf("replay differs: %s %v\nfirst: %s %v", again.Body, again.Header, first.Body, first.Header)
	}
	if n := h.linkCount(t); n != 1 {
		t.Errorf("%d links, want 1", n)
	}

	p := mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://example.com/other"}, "Idempotency-Key", "k-1"), http.StatusUnprocessableEntity)
	if !strings.Contains(p["detail"].(string), "different request") {
		t.Errorf("mismatch problem: %v", p)
	}
	// The same key on another route is another request, so also a mismatch.
	mustProblem(t, h.api(t, http.MethodPost, "/links/bulk", map[string]any{"links": []any{body}}, "Idempotency-Key", "k-1"), http.StatusUnprocessableEntity)
	mustProblem(t, h.api(t, http.MethodPost, "/links", body, "Idempotency-Key", strings.Repeat("x", 256)), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodPost, "/links", body, "Idempotency-Key", "caf\u00e9"), http.StatusBadRequest)

	// Failed requests are replayed too: the answer, not only successes, is the record.
	bad := h.api(t, http.MethodPost, "/links", map[string]any{"url": "nope"}, "Idempotency-Key", "k-bad")
	mustProblem(t, bad, http.StatusBadRequest)
	if r := h.api(t, http.MethodPost, "/links", map[string]any{"url": "nope"}, "Idempotency-Key", "k-bad"); r.Header.Get("Idempotent-Replayed") != "true" || r.Status != 400 {
		t.Errorf("failed request not replayed: %d %v", r.Status, r.Header)
	}

	// Keys belong to an API key: another key's k-1 is a new request.
	_, key2, err := apikey.NewStore(h.DB.Pool, slog.New(slog.DiscardHandler)).Create(context.Background(), "second")
	if err != nil {
		t.Fatal(err)
	}
	r := h.do(t, http.MethodPost, "/links", body, "Authorization", "Bearer "+key2, "Idempotency-Key", "k-1")
	mustStatus(t, r, http.StatusCreated)
	if r.Header.Get("Idempotent-Replayed") != "" || h.linkCount(t) != 2 {
		t.Errorf("another API key's request was replayed: %v, %d links", r.Header, h.linkCount(t))
	}

	// Bulk: replayed whole, nothing created twice.
	bulk := map[string]any{"links": []any{map[string]any{"url": "https://example.com/b1"}, map[string]any{"url": "https://example.com/b2", "slug": "bulk-idem"}}}
	b1 := h.api(t, http.MethodPost, "/links/bulk", bulk, "Idempotency-Key", "bulk-1")
	mustStatus(t, b1, http.StatusCreated)
	b2 := h.api(t, http.MethodPost, "/links/bulk", bulk, "Idempotency-Key", "bulk-1")
	mustStatus(t, b2, http.StatusCreated)
	if !bytes.Equal(b1.Body, b2.Body) || b2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("bulk replay differs:\n%s\n%s", b1.Body, b2.Body)
	}
	if n := h.linkCount(t); n != 4 {
		t.Errorf("%d links after the bulk replay, want 4", n)
	}
}

// TestIdempotencyKeyConcurrentDuplicates sends one request many times at once: exactly
// one creates; the others are answered with its answer, or told to retry while it runs.
func TestIdempotencyKeyConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	var links []any
	for i := range 200 {
		links = append(links, map[string]any{"url": fmt.Sprintf("https://example.com/c/%d", i)})
	}
	body, _ := json.Marshal(map[string]any{"links": links})
	const n = 8
	var wg sync.WaitGroup
	results := make([]response, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = h.api(t, http.MethodPost, "/links/bulk", body, "Idempotency-Key", "race")
		})
	}
	close(start)
	wg.Wait()
	fresh, replayed, busy := 0, 0, 0
	var created []byte
	for _, r := range results {
		switch {
		case r.Status == http.StatusCreated && r.Header.Get("Idempotent-Replayed") == "true":
			replayed++
		case r.Status == http.StatusCreated:
			fresh++
			created = r.Body
		case r.Status == http.StatusConflict:
			busy++
			if r.Header.Get("Retry-After") != "1" {
				t.Errorf("409 without Retry-After: %v", r.Header)
			}
		default:
			t.Errorf("answer %d: %s", r.Status, r.Body)
		}
	}
	if fresh != 1 || fresh+replayed+busy != n {
		t.Errorf("%d created, %d replayed, %d told to retry; want exactly 1 created", fresh, replayed, busy)
	}
	for _, r := range results {
		if r.Header.Get("Idempotent-Replayed") == "true" && !bytes.Equal(r.Body, created) {
			t.Error("a replay differs from the first answer")
		}
	}
	if c := h.linkCount(t); c != 200 {
		t.Errorf("%d links, want 200", c)
	}
}
