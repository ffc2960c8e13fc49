package client

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
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
	s, err := New(srv.URL, "k", nil).Import(context.Background(), rows, ImportOptions{Retries: 2, RetryWait: time.Millisecond, OnRetry: func(error) { retries++ }})
	if err == nil || !strings.Contains(err.Error(), "Service Unavailable: down for maintenance") {
		t.Fatalf("err %v", err)
	}
	if retries != 2 || s.Failed != 2 || s.Created+s.Skipped+s.Renamed != 0 || s.Outcomes[1].Reason != "not sent or not answered: the import stopped; run it again to resume" {
		t.Fatalf("%d retries, summary %+v", retries, s)
	}
}

// Progress and OnRetry may share a writer without a lock of their own (the CLI points
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
	_, err := New(srv.URL, "k", nil).Import(context.Background(), rows, ImportOptions{
		BatchSize: 1, Workers: 4, Retries: 3, RetryWait: time.Microsecond,
		Progress: func(n int) { enter(); rowsDone += n },
		OnRetry:  func(error) { enter() },
	})
	if err == nil {
		t.Fatal("import against a server that always fails: no error")
	}
	if overlapped.Load() {
		t.Error("Progress or OnRetry was called while another call was running")
	}
	if calls == 0 || rowsDone == 0 {
		t.Errorf("%d calls, %d rows reported: the callbacks were not exercised", calls, rowsDone)
	}
}
