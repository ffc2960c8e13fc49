package client

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// summary renders rows compactly: line, slug, url, title, created, expires, max,
// clicks, tags, domain.
func summary(rows []Row, bad []RowError) string {
	var b strings.Builder
	t := func(p *time.Time) string {
		if p == nil {
			return "-"
		}
		return p.UTC().Format(time.RFC3339)
	}
	for _, r := range rows {
		q := r.Req
		max := "-"
		if q.MaxClicks != nil {
			max = fmt.Sprint(*q.MaxClicks)
		}
		fmt.Fprintf(&b, "%d %s %s %q %s %s %s %d %s %s\n", r.Line, q.Slug, q.URL, q.Title, t(q.CreatedAt), t(q.ExpiresAt), max, q.ImportedClicks, strings.Join(q.Tags, "|"), q.Domain)
	}
	for _, e := range bad {
		fmt.Fprintf(&b, "bad %d %s\n", e.Line, e.Reason)
	}
	return b.String()
}

func TestReadSampleFiles(t *testing.T) {
	for _, tc := range []struct {
		format, file, want string
	}{
		{"csv", "hop.csv", `2 docs-home https://example.com/docs "Documentation" 2021-03-04T05:06:07Z - - 0 docs|help 
3  https://example.com/pricing "Pricing" - - 100 0 sales 
4 bad-row not a url "" - - - 0  
6 careers https://example.com/careers "Careers" 2020-01-01T00:00:00Z 2031-01-01T00:00:00Z - 0 jobs 
bad 5 created_at: "yesterday" is not a date (want RFC 3339, like 2024-01-02T15:04:05Z)
`},
		{"yourls", "yourls.csv", `2 ozh http://ozh.org/ "Ozh RICHARD" 2009-08-11T14:34:05Z - - 312  
3 yourls https://yourls.org/ "YOURLS: Your Own URL Shortener" 2009-08-11T14:34:05Z - - 1290  
4 1 https://example.org/first "First" 2010-01-02T03:04:05Z - - 7  
`},
		{"shlink", "shlink.csv", `2 abc123 https://example.net/a "Page A" 2022-05-06T07:08:09Z - - 42 news|tech 
3 xyz789 https://example.net/b "" 2022-05-07T07:08:09Z - - 0  
`},
		{"shlink", "shlink.json", `4 12C18 https://store.example.com/ "Store" 2016-08-21T13:12:33Z - 1000 328 store|promo 
17 tzZ9 https://blog.example.com/ "" 2016-08-21T13:12:33Z - - 11  
`},
		{"kutt", "kutt.json", `6 kutt-docs https://docs.example.com/kutt "Kutt docs" 2020-02-03T04:05:06Z - - 57  
32 Xy7aB https://example.com/expired "" 2021-06-07T08:09:10Z 2021-07-07T08:09:10Z - 3  
bad 19 link "secret1" is password-protected in Kutt, whose export has no password; create it by hand
`},
		{"bitly", "bitly.csv", `2 launch-2023 https://example.com/launch "Launch post" 2023-03-01T10:00:00Z - - 1204 launch|blog 
3 4qWeRtY https://example.com/untitled "Untitled" 2023-04-02T11:00:00Z - - 0  
`},
		{"hop", "hop.jsonl", `1 Xy7aB https://example.com/expired "" 2021-06-07T08:09:10Z 2021-07-07T08:09:10Z - 5  
2 kutt-docs https://docs.example.com/kutt "Kutt docs" 2020-02-03T04:05:06Z - 10 57 docs 
bad 3 link "locked" is password-protected; exports never hold passwords, so create it by hand
`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rows, bad, err := Read(tc.format, f)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(rows, bad); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestReadYOURLSWithoutHeader(t *testing.T) {
	rows, bad, err := Read("yourls", strings.NewReader("ozh,http://ozh.org/,Ozh,2009-08-11 14:34:05,127.0.0.1,312\nabc,https://a.test/,A,2010-01-01 00:00:00,::1,x\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "1 ozh http://ozh.org/ \"Ozh\" 2009-08-11T14:34:05Z - - 312  \nbad 2 clicks: \"x\" is not an integer\n"
	if got := summary(rows, bad); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// Titles other shorteners fetched from pages often span lines; they come in on one.
func TestReadPutsTitlesOnOneLine(t *testing.T) {
	rows, bad, err := Read("yourls", strings.NewReader("ozh,http://ozh.org/,\"  Ozh\r\n\t  Blog \n\",2009-08-11 14:34:05,127.0.0.1,3\n"+
		"a1,https://a.test/,\"Two  spaces kept\",2010-01-01 00:00:00,::1,1\n"))
	if err != nil || len(bad) != 0 || len(rows) != 2 {
		t.Fatalf("%d rows, %v, %v", len(rows), bad, err)
	}
	if got := rows[0].Req.Title; got != "Ozh Blog" {
		t.Errorf("title %q, want %q", got, "Ozh Blog")
	}
	if got := rows[1].Req.Title; got != "Two  spaces kept" {
		t.Errorf("title %q, want it as it was", got)
	}
}

// A file without a header whose first link mentions "keyword" keeps that link.
func TestReadYOURLSKeywordInFirstRow(t *testing.T) {
	rows, bad, err := Read("yourls", strings.NewReader("seo,https://example.com/keyword-research,Keyword research,2010-01-01 00:00:00,::1,4\n"+
		"b2,https://b.test/,B,2010-01-02 00:00:00,::1,5\n"))
	if err != nil || len(bad) != 0 || len(rows) != 2 {
		t.Fatalf("%d rows, %v, %v", len(rows), bad, err)
	}
	if r := rows[0]; r.Line != 1 || r.Req.Slug != "seo" || r.Req.URL != "https://example.com/keyword-research" {
		t.Errorf("first row: line %d, %+v", r.Line, r.Req)
	}
	rows, bad, err = Read("yourls", strings.NewReader("\"keyword\",\"url\",\"title\",\"timestamp\",\"ip\",\"clicks\"\nseo,https://example.com/,T,2010-01-01 00:00:00,::1,4\n"))
	if err != nil || len(bad) != 0 || len(rows) != 1 || rows[0].Line != 2 || rows[0].Req.Slug != "seo" {
		t.Errorf("with a quoted header: %+v, %v, %v", rows, bad, err)
	}
}

func TestReadRefusesUnreadableFiles(t *testing.T) {
	for _, tc := range []struct{ format, in, want string }{
		{"csv", "slug,title\nabc,def\n", `no "url" column`},
		{"kutt", `{"total": 0}`, "expected an array"},
		{"shlink", `[1, 2`, ""},
		{"nope", "", "unknown import format"},
	} {
		_, bad, err := Read(tc.format, strings.NewReader(tc.in))
		if tc.want == "" {
			if err == nil && len(bad) == 0 {
				t.Errorf("%s %q: neither an error nor a bad row", tc.format, tc.in)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: error %v, want one containing %q", tc.format, tc.in, err, tc.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]string{
		"2024-01-02T15:04:05Z":      "2024-01-02T15:04:05Z",
		"2024-01-02T15:04:05+02:00": "2024-01-02T13:04:05Z",
		"2024-01-02T15:04:05+0000":  "2024-01-02T15:04:05Z",
		"2024-01-02T15:04:05-0130":  "2024-01-02T16:34:05Z",
		"2024-01-02 15:04:05":       "2024-01-02T15:04:05Z",
		"2024-01-02 15:04:05 UTC":   "2024-01-02T15:04:05Z",
		"2024-01-02":                "2024-01-02T00:00:00Z",
		"01/02/2024":                "2024-01-02T00:00:00Z",
		"1700000000":                "2023-11-14T22:13:20Z",
	} {
		got, err := parseTime(in)
		if err != nil || got.Format(time.RFC3339) != want {
			t.Errorf("parseTime(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-5", "2024-13-01"} {
		if _, err := parseTime(in); err == nil {
			t.Errorf("parseTime(%q) succeeded", in)
		}
	}
}

func TestSlugOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://bit.ly/abc": "abc", "bit.ly/abc": "abc", "abc": "abc", "http://brand.test/x-y/": "x-y", "": "",
	} {
		if got := slugOf(in); got != want {
			t.Errorf("slugOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCandidateStaysWithinSlugLength(t *testing.T) {
	long := strings.Repeat("a", 64)
	if got := candidate(long, 12); len(got) != 64 || !strings.HasSuffix(got, "-12") {
		t.Errorf("candidate = %q (%d)", got, len(got))
	}
	if got := candidate("abc", 2); got != "abc-2" {
		t.Errorf("candidate = %q", got)
	}
}

func TestBatchKeyFollowsContent(t *testing.T) {
	a := []LinkRequest{{URL: "https://a.test/", Slug: "abc"}}
	b := []LinkRequest{{URL: "https://a.test/", Slug: "abd"}}
	if batchKey(a) != batchKey([]LinkRequest{{URL: "https://a.test/", Slug: "abc"}}) {
		t.Error("the same batch has two keys")
	}
	if batchKey(a) == batchKey(b) {
		t.Error("different batches share a key")
	}
}

// FuzzRead feeds every format arbitrary bytes: an import file is untrusted input.
func FuzzRead(f *testing.F) {
	files, _ := filepath.Glob("testdata/*")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("url\n\"unterminated\n"))
	f.Add([]byte(`{"data":[{"target":"https://x.test","created_at":5}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range Formats {
			rows, bad, _ := Read(format, bytes.NewReader(data))
			lines := bytes.Count(data, []byte("\n")) + 2 // yourls may add a header line
			for _, r := range rows {
				if r.Line < 1 || r.Line > lines {
					t.Fatalf("%s: row line %d outside 1..%d", format, r.Line, lines)
				}
			}
			for _, e := range bad {
				if e.Reason == "" {
					t.Fatalf("%s: bad row %d without a reason", format, e.Line)
				}
			}
		}
	})
}

// unavailable is a server that answers every request with a 503 problem; it is closed
// when t ends.
func unavailable(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"down for maintenance"}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// An import that stops (the server gone) reports every row it did not settle as
// failed, so the summary adds up and the user knows to run it again.
func TestImportStoppedReportsUnsentRows(t *testing.T) {
	srv := unavailable(t)
	rows := []Row{{Line: 2, Req: LinkRequest{URL: "https://a.test/"}}, {Line: 3, Req: LinkRequest{URL: "https://b.test/"}}}
	var retries int
	c := New(srv.URL, "k", nil)
	c.Retry = Retry{Attempts: 2, Wait: time.Millisecond, Notify: func(error, time.Duration) { retries++ }}
	s, err := c.Import(context.Background(), rows, ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "Service Unavailable: down for maintenance") {
		t.Fatalf("err %v", err)
	}
	if retries != 2 || s.Failed != 2 || s.Created+s.Skipped+s.Renamed != 0 || s.Outcomes[1].Reason != "not sent or not answered: the import stopped; run it again to resume" {
		t.Fatalf("%d retries, summary %+v", retries, s)
	}
}

// A refused connection before the server has ever answered fails at once and says
// why: no one waits 15 s to learn that hop is not running. Once it has answered, a
// refused connection is a restart, and is waited for.
func TestRefusedConnectionRetriedOnlyAfterAnAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens at addr now

	var retries int
	c := New("http://"+addr, "k", nil)
	c.Retry = Retry{Attempts: 3, Wait: time.Millisecond, Notify: func(error, time.Duration) { retries++ }}
	_, err = c.Domains(context.Background())
	if err == nil || retries != 0 || !strings.Contains(err.Error(), "nothing answers at http://"+addr) {
		t.Fatalf("%d retries, err %v", retries, err)
	}

	// A server that answers once (503), then stops listening, then comes back.
	var calls atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"domains":[]}`))
	})
	if ln, err = net.Listen("tcp", addr); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	c.Retry.Notify = func(err error, _ time.Duration) {
		if retries++; retries == 1 { // after the 503: stop listening, refuse the next try
			_ = srv.Close()
		} else if retries == 2 { // after the refusal: listen again
			if ln, err := net.Listen("tcp", addr); err == nil {
				srv = &http.Server{Handler: h}
				go func() { _ = srv.Serve(ln) }()
			}
		}
	}
	retries = 0
	if _, err = c.Domains(context.Background()); err != nil || retries != 2 {
		t.Fatalf("%d retries, err %v", retries, err)
	}
	_ = srv.Close()
}

// Progress and Retry.Notify may share a writer without a lock of their own (the CLI points
// both at stderr): Import never calls them at once, across all its workers.
func TestImportCallbacksNeverOverlap(t *testing.T) {
	srv := unavailable(t)
	rows := make([]Row, 16)
	for i := range rows {
		rows[i] = Row{Line: i + 2, Req: LinkRequest{URL: fmt.Sprintf("https://a.test/%d", i)}}
	}
	var inside, overlapped atomic.Bool
	calls, rowsDone := 0, 0 // plain ints: the race detector sees any unserialised call
	enter := func() {
		if inside.Swap(true) {
			overlapped.Store(true)
		}
		runtime.Gosched() // give another worker the chance to come in meanwhile
		calls++
		inside.Store(false)
	}
	c := New(srv.URL, "k", nil)
	c.Retry = Retry{Attempts: 3, Wait: time.Microsecond, Notify: func(error, time.Duration) { enter() }}
	_, err := c.Import(context.Background(), rows, ImportOptions{
		BatchSize: 1, Workers: 4,
		Progress: func(n int) { enter(); rowsDone += n },
	})
	if err == nil {
		t.Fatal("import against a server that always fails: no error")
	}
	if overlapped.Load() {
		t.Error("Progress or Retry.Notify was called while another call was running")
	}
	if calls == 0 || rowsDone == 0 {
		t.Errorf("%d calls, %d rows reported: the callbacks were not exercised", calls, rowsDone)
	}
}

// A stray quote never stops a CSV file: inside an unquoted field it is read as it
// stands; a quoted field that never closes costs its own row, reported, and reading
// goes on at the next line. Quoted fields by the rules (doubled quotes, a field over
// two lines) read as before.
func TestReadCSVStrayQuotes(t *testing.T) {
	in := "url,slug,title\n" +
		"https://e.test/1,s1,Big 5\" screen\n" +
		"https://e.test/2,s2,\"A \"\"quoted\"\" title\"\n" +
		"https://e.test/3,s3,\"two\nlines\"\n" +
		"https://e.test/4,s4,\"never closed\n" +
		"https://e.test/5,s5,Five\n" +
		"https://e.test/6,s6,\"x\"y\"\r\n" +
		"https://e.test/7,s7,Seven\n" +
		"https://e.test/8,s8,\"open to the end\n" +
		"https://e.test/9,s9,Nine"
	rows, bad, err := Read("csv", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	const reason = "a quoted field opened on this line is never closed properly; the row is skipped and the next line read on its own"
	want := `2 s1 https://e.test/1 "Big 5\" screen" - - - 0  
3 s2 https://e.test/2 "A \"quoted\" title" - - - 0  
4 s3 https://e.test/3 "two lines" - - - 0  
7 s5 https://e.test/5 "Five" - - - 0  
8 s6 https://e.test/6 "x\"y" - - - 0  
9 s7 https://e.test/7 "Seven" - - - 0  
11 s9 https://e.test/9 "Nine" - - - 0  
bad 6 ` + reason + `
bad 10 ` + reason + `
`
	if got := summary(rows, bad); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// The tags cell of hop's CSV export is a JSON array, so a tag may hold , ; or |; other
// CSV files keep separating tags with those. A damaged array fails its row.
func TestReadCSVTags(t *testing.T) {
	rows, bad, err := Read("csv", strings.NewReader("url,slug,tags\nhttps://e.test/1,one,\"[\"\"a\"\",1]\"\nhttps://e.test/2,two,\"[\"\"a\"\",\"\"b\"\"\"\nhttps://e.test/3,three,[draft]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Req.Slug != "three" || !slices.Equal(rows[0].Req.Tags, []string{"[draft]"}) {
		t.Errorf("rows %+v, want only three, tagged [draft]", rows)
	}
	if len(bad) != 2 || bad[0].Line != 2 || bad[1].Line != 3 || !strings.Contains(bad[0].Reason, "is not a JSON array of strings") {
		t.Errorf("bad %+v, want lines 2 and 3 refused for their tags", bad)
	}
	for cell, want := range map[string][]string{
		`["with,comma","semi;colon","pipe|bar","[x]"]`: {"with,comma", "semi;colon", "pipe|bar", "[x]"},
		`a;b|c, d`:  {"a", "b", "c", "d"},
		`[not json`: {"[not json"},
		``:          nil,
	} {
		if got, err := readTags(cell); err != nil || !slices.Equal(got, want) {
			t.Errorf("readTags(%q) = %q, %v; want %q", cell, got, err, want)
		}
		if cell != "" && cell[0] == '[' && cell != "[not json" {
			if back := exportTags(want); back != cell {
				t.Errorf("exportTags(%q) = %s, want %s", want, back, cell)
			}
		}
	}
}

// exportCSV is what `hop export --format csv` writes for ls.
func exportCSV(ls ...Link) *bytes.Buffer {
	var b bytes.Buffer
	cw := csv.NewWriter(&b)
	_ = cw.Write(exportColumns)
	for _, l := range ls {
		_ = cw.Write(exportRow(l))
	}
	cw.Flush()
	return &b
}

// Every column of `hop export --format csv` is read, with the meaning `--from hop`
// gives it: total_clicks joins imported_clicks, and a password-protected link is refused.
func TestReadCSVHopExportColumns(t *testing.T) {
	l := Link{Slug: "opts", OriginalURL: "https://e.test/o", Tags: []string{"x,y", "z"}, RedirectStatus: 301, ForwardQuery: false,
		ExpiredURL: new("https://e.test/over"), MaxClicks: new(int64(10)), TotalClicks: 3, ImportedClicks: 57,
		CreatedAt: time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC), ExpiresAt: new(time.Date(2040, 1, 2, 3, 4, 5, 0, time.UTC))}
	locked := Link{Slug: "locked", OriginalURL: "https://e.test/l", HasPassword: true, ForwardQuery: true, RedirectStatus: 302}
	rows, bad, err := Read("csv", exportCSV(l, locked))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || len(bad) != 1 {
		t.Fatalf("rows %+v, bad %+v", rows, bad)
	}
	r := rows[0].Req
	got := fmt.Sprintf("%s %s %q %s %s %d %d %d %v %s", r.URL, r.Slug, r.Tags, r.CreatedAt.Format(time.RFC3339Nano), r.ExpiresAt.Format(time.RFC3339),
		*r.MaxClicks, r.RedirectStatus, r.ImportedClicks, *r.ForwardQuery, *r.ExpiredURL)
	if want := `https://e.test/o opts ["x,y" "z"] 2024-01-02T03:04:05.123456Z 2040-01-02T03:04:05Z 10 301 60 false https://e.test/over`; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if want := `link "locked" is password-protected; exports never hold passwords, so create it by hand`; bad[0].Line != 3 || bad[0].Reason != want {
		t.Errorf("bad %+v", bad[0])
	}
}

// A limited link brings what its source used of the limit, whichever export it comes
// from; a link without a limit brings none, as the target counts its clicks itself.
func TestReadKeepsUsedClicksOnlyWithALimit(t *testing.T) {
	capped := Link{Slug: "capped", OriginalURL: "https://e.test/c", MaxClicks: new(int64(5)), ClicksUsed: 4, ForwardQuery: true, RedirectStatus: 302}
	free := Link{Slug: "free", OriginalURL: "https://e.test/f", ClicksUsed: 9, TotalClicks: 9, ForwardQuery: true, RedirectStatus: 302}
	files := map[string]io.Reader{"csv": exportCSV(capped, free)}
	for format, file := range map[string]string{"hop": "hop.jsonl", "shlink": "shlink.json"} {
		f, err := os.Open(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[format] = f
	}
	want := map[string]string{"csv": "capped:4 free:0", "hop": "Xy7aB:0 kutt-docs:3", "shlink": "12C18:328 tzZ9:0"}
	for format, r := range files {
		rows, _, err := Read(format, r)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, row := range rows {
			got = append(got, fmt.Sprintf("%s:%d", row.Req.Slug, row.Req.ClicksUsed))
		}
		if g := strings.Join(got, " "); g != want[format] {
			t.Errorf("%s: %s, want %s", format, g, want[format])
		}
	}
}

// A file of quotes that never close is not read again and again without end: past a
// bound, the rest is reported as not read, with the count of its lines.
func TestReadCSVReportsLinesNotRead(t *testing.T) {
	var b strings.Builder
	b.WriteString("url,title\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "https://e.test/%d,\"never closed %d\n", i, i)
	}
	rows, bad, err := Read("csv", strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	last := bad[len(bad)-1]
	// Every line is accounted for: read, failed, or in the count of lines not read.
	notRead := 0
	if _, err := fmt.Sscanf(last.Reason[strings.Index(last.Reason, "(")+1:], "%d lines", &notRead); err != nil {
		t.Fatalf("last bad row %+v: %v", last, err)
	}
	if !strings.HasPrefix(last.Reason, "too many quoted fields that never close") || len(rows)+len(bad)-1+notRead != 5000 ||
		!strings.HasSuffix(last.Reason, fmt.Sprintf("lines %d to 5001 (%d lines) were not read", last.Line, notRead)) {
		t.Errorf("%d rows, %d bad, the last %+v", len(rows), len(bad), last)
	}
}

// A YOURLS header is told by whole cells: a first data row whose URL or title holds
// the words keyword or url, even as whole cells beside a real URL, stays a row, and
// the columns of the file keep their meaning.
func TestReadYOURLSHeaderByWholeCells(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"keyword in a query", "abc,https://example.com/?keyword=x,Keyword tool,2010-01-01 00:00:00,::1,4\n" +
			"b2,https://b.test/?url=keyword,B,2010-01-02 00:00:00,::1,5\n",
			"1 abc https://example.com/?keyword=x \"Keyword tool\" 2010-01-01T00:00:00Z - - 4  \n" +
				"2 b2 https://b.test/?url=keyword \"B\" 2010-01-02T00:00:00Z - - 5  \n"},
		{"cells keyword and url in a data row", "keyword,https://example.com/?keyword=x,URL,2010-01-01 00:00:00,::1,4\n" +
			"b2,https://b.test/,B,2010-01-02 00:00:00,::1,5\n",
			"1 keyword https://example.com/?keyword=x \"URL\" 2010-01-01T00:00:00Z - - 4  \n" +
				"2 b2 https://b.test/ \"B\" 2010-01-02T00:00:00Z - - 5  \n"},
		{"header, CRLF, a later row with keyword", "KEYWORD,Url,title,timestamp,ip,clicks\r\n" +
			"abc,https://example.com/?keyword=x,T,2010-01-01 00:00:00,::1,4\r\n" +
			"keyword,https://b.test/keyword,url,2010-01-02 00:00:00,::1,5\r\n",
			"2 abc https://example.com/?keyword=x \"T\" 2010-01-01T00:00:00Z - - 4  \n" +
				"3 keyword https://b.test/keyword \"url\" 2010-01-02T00:00:00Z - - 5  \n"},
		{"blank lines before the header", "\n\r\nkeyword,url,title,timestamp,ip,clicks\n" +
			"abc,https://example.com/a,T,2010-01-01 00:00:00,::1,4\n",
			"4 abc https://example.com/a \"T\" 2010-01-01T00:00:00Z - - 4  \n"},
		{"blank lines before the first row", "\n\nabc,https://example.com/a,T,2010-01-01 00:00:00,::1,4\n",
			"3 abc https://example.com/a \"T\" 2010-01-01T00:00:00Z - - 4  \n"},
	} {
		rows, bad, err := Read("yourls", strings.NewReader(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := summary(rows, bad); got != tc.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.name, got, tc.want)
		}
	}
}

// A title across lines comes in on one line whatever the format carried it: a quoted
// CSV field over lines, a JSON string with \n, \r\n or a Unicode line separator.
func TestReadTitlesOnOneLineEveryFormat(t *testing.T) {
	for _, tc := range []struct{ format, in, want string }{
		{"csv", "url,slug,title\nhttps://e.test/1,s1,\"Page\ntitle\"\nhttps://e.test/2,s2,Two\n",
			"2 s1 https://e.test/1 \"Page title\" - - - 0  \n4 s2 https://e.test/2 \"Two\" - - - 0  \n"},
		{"bitly", "Link,Destination URL,Title\nbit.ly/b1,https://e.test/b,\"Bitly\r\n  title\"\n",
			"2 b1 https://e.test/b \"Bitly title\" - - - 0  \n"},
		{"shlink", `[{"shortCode":"sh1","longUrl":"https://e.test/s","title":"Shlink\ntitle"}]`,
			"1 sh1 https://e.test/s \"Shlink title\" - - - 0  \n"},
		{"kutt", `{"data":[{"address":"ku1","target":"https://e.test/k","description":"Kutt\u2028title\u2029here"}]}`,
			"1 ku1 https://e.test/k \"Kutt title here\" - - - 0  \n"},
		{"hop", `{"slug":"hop1","original_url":"https://e.test/h","title":"Hop\r\n\ttitle"}` + "\n",
			"1 hop1 https://e.test/h \"Hop title\" - - - 0  \n"},
	} {
		rows, bad, err := Read(tc.format, strings.NewReader(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.format, err)
			continue
		}
		if got := summary(rows, bad); got != tc.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tc.format, got, tc.want)
		}
	}
}

// Shlink's meta.validSince has no place in hop: the row is imported without it, with
// a note that says so; a null or empty validSince is no loss and says nothing.
func TestReadShlinkUnkeptFieldsNoted(t *testing.T) {
	in := `[
{"shortCode":"later","longUrl":"https://e.test/l","meta":{"validSince":"2099-01-02T03:04:05+00:00","validUntil":"2100-01-01T00:00:00+00:00","maxVisits":null}},
{"shortCode":"now","longUrl":"https://e.test/n","meta":{"validSince":null,"validUntil":null,"maxVisits":3}},
{"shortCode":"empty","longUrl":"https://e.test/e","meta":{"validSince":""},"deviceLongUrls":{"android":null,"ios":"","desktop":null},"crawlable":false},
{"shortCode":"dev","longUrl":"https://e.test/d","deviceLongUrls":{"ios":"https://apps.test/i","android":"https://play.test/a","desktop":null},"crawlable":true,"meta":{"validSince":"2099-01-01T00:00:00+00:00"}}
]`
	rows, bad, err := Read("shlink", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := "2 later https://e.test/l \"\" - 2100-01-01T00:00:00Z - 0  \n3 now https://e.test/n \"\" - - 3 0  \n4 empty https://e.test/e \"\" - - - 0  \n" +
		"5 dev https://e.test/d \"\" - - - 0  \n"
	if got := summary(rows, bad); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	notes := []string{rows[0].Note, rows[1].Note, rows[2].Note, rows[3].Note}
	later := "meta.validSince 2099-01-02T03:04:05+00:00 was not kept: hop links have no start date, so the link answers as soon as it is imported"
	dev := "meta.validSince 2099-01-01T00:00:00+00:00 was not kept: hop links have no start date, so the link answers as soon as it is imported; " +
		"deviceLongUrls (android, ios) were not kept: hop sends every device to longUrl; " +
		"crawlable was not kept: whether crawlers may follow hop's links is one setting for all of them (HOP_ROBOTS_ALLOW)"
	if want := []string{later, "", "", dev}; !slices.Equal(notes, want) {
		t.Errorf("notes\n%q\nwant\n%q", notes, want)
	}
}
