package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

const browserAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// logsOnFailure shows an instance's logs when the test fails.
func logsOnFailure(t *testing.T, hs ...*instance) {
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range hs {
				t.Logf("logs of %s:\n%s", h.URL, h.logs)
			}
		}
	})
}

// A browser meets hop's pages, a program its problems, and with fallbacks configured
// both are sent on without a click being counted.
func TestVisitorPagesAndFallbacks(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	gone := h.createLink(t, map[string]any{"url": "https://example.com/gone"})["slug"].(string)
	mustStatus(t, h.api(t, http.MethodDelete, "/links/"+gone, nil), http.StatusNoContent)
	used := h.createLink(t, map[string]any{"url": "https://example.com/used", "max_clicks": 1})["slug"].(string)
	mustStatus(t, h.do(t, http.MethodGet, "/"+used, nil), http.StatusFound)

	for path, want := range map[string]struct {
		status  int
		heading string
	}{
		"/":               {200, "This is a hop short-link host"},
		"/no-such-link":   {404, "Link not found"},
		"/no-such-link/":  {404, "Link not found"},
		"/" + gone:        {410, "Link removed"},
		"/" + used:        {410, "Link no longer available"},
		"/" + used + "/":  {410, "Link no longer available"},
		"/not.a.slug.css": {404, "Link not found"},
	} {
		r := h.do(t, http.MethodGet, path, nil, "Accept", browserAccept)
		mustStatus(t, r, want.status)
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.Body), "<h1>"+want.heading+"</h1>") ||
			!strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'none'") || strings.Contains(string(r.Body), "<script") {
			t.Fatalf("%s for a browser: %v\n%s", path, r.Header, r.Body)
		}
		if path != "/" {
			mustProblem(t, h.do(t, http.MethodGet, path, nil), want.status)
		}
	}

	// The same links with fallbacks: 302s, no clicks.
	db := testenv.NewDB(t)
	cfg := testConfig(t, db, nil)
	cfg["root_redirect"] = "https://home.example/"
	cfg["not_found_redirect"] = "https://home.example/404"
	cfg["expired_redirect"] = "https://home.example/expired"
	f := startWith(t, db, nil, cfg)
	used = f.createLink(t, map[string]any{"url": "https://example.com/used", "max_clicks": 1})["slug"].(string)
	own := f.createLink(t, map[string]any{"url": "https://example.com/own", "max_clicks": 1, "expired_url": "https://own.example/later"})["slug"].(string)
	mustStatus(t, f.do(t, http.MethodGet, "/"+used, nil, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0"), http.StatusFound)
	mustStatus(t, f.do(t, http.MethodGet, "/"+own, nil, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0"), http.StatusFound)
	for path, want := range map[string]string{
		"/":             "https://home.example/",
		"/no-such-link": "https://home.example/404",
		"/" + used:      "https://home.example/expired",
		"/" + own:       "https://own.example/later",
	} {
		for _, accept := range []string{browserAccept, ""} {
			r := f.do(t, http.MethodGet, path, nil, "Accept", accept, "User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0")
			if r.Status != http.StatusFound || r.Header.Get("Location") != want {
				t.Fatalf("%s: %d %q, want 302 to %s", path, r.Status, r.Header.Get("Location"), want)
			}
		}
	}
	f.waitSettled(t) // the fallbacks' clicks, had any been captured, would be counted now
	for _, slug := range []string{used, own} {
		s := f.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"] == float64(1) })
		if s["bot_clicks"] != float64(0) {
			t.Fatalf("%s: fallback redirects counted as clicks: %v", slug, s)
		}
	}
	metrics := string(f.do(t, http.MethodGet, "/metrics", nil).Body)
	if got := metricValue(metrics, `hop_redirects_total{status="302"}`); got != "10" { // 2 clicks + 4 paths × 2 fallbacks
		t.Fatalf(`hop_redirects_total{status="302"} = %s, want 10`, got)
	}
}

func TestRobotsAndFaviconEndToEnd(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	allow := startHop(t, func(cfg map[string]any) { cfg["robots_allow"] = true })
	r := h.do(t, http.MethodGet, "/robots.txt", nil)
	mustStatus(t, r, http.StatusOK)
	if string(r.Body) != "User-agent: *\nDisallow: /\n" {
		t.Fatalf("robots.txt: %q", r.Body)
	}
	r = allow.do(t, http.MethodGet, "/robots.txt", nil)
	if !strings.Contains(string(r.Body), "Disallow: /dashboard/\n") || !strings.Contains(string(r.Body), "Disallow: /links$\n") || !strings.HasSuffix(string(r.Body), "Allow: /\n") {
		t.Fatalf("robots.txt with HOP_ROBOTS_ALLOW: %q", r.Body)
	}
	r = h.do(t, http.MethodGet, "/favicon.ico", nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "image/x-icon" || len(r.Body) < 100 {
		t.Fatalf("favicon.ico: %d %v", r.Status, r.Header)
	}
	metrics := string(h.do(t, http.MethodGet, "/metrics", nil).Body)
	for series, want := range map[string]string{
		`hop_http_requests_total{method="GET",route="/robots.txt",status="200"}`:  "1",
		`hop_http_requests_total{method="GET",route="/favicon.ico",status="200"}`: "1",
		`hop_redirects_total{status="404"}`:                                       "0",
	} {
		if got := metricValue(metrics, series); got != want {
			t.Fatalf("%s = %q, want %s:\n%s", series, got, want, grepLines(metrics, "hop_"))
		}
	}
}

// The link JSON's visitor fields, their validation, and the status filter; a status is
// never stale after redirects or edits.
func TestLinkVisitorFields(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	logsOnFailure(t, h)
	l := h.createLink(t, map[string]any{"url": "https://example.com/a"})
	first := l["slug"].(string)
	if l["status"] != "active" || l["clicks_used"] != float64(0) || l["forward_query"] != true || l["expired_url"] != nil {
		t.Fatalf("defaults: %v", l)
	}
	l = h.createLink(t, map[string]any{"url": "https://example.com/b", "forward_query": false, "expired_url": "https://example.com/over", "max_clicks": 2})
	slug := l["slug"].(string)
	if l["forward_query"] != false || l["expired_url"] != "https://example.com/over" || l["max_clicks"] != float64(2) {
		t.Fatalf("create: %v", l)
	}
	for _, bad := range []map[string]any{
		{"url": "https://example.com/", "expired_url": "javascript:alert(1)"},
		{"url": "https://example.com/", "expired_url": "/relative"},
		{"url": "https://example.com/", "expired_url": "https://HOP.test/back-to-hop"}, // a loop
		{"url": "https://example.com/", "forward_query": "yes"},
	} {
		p := mustProblem(t, h.api(t, http.MethodPost, "/links", bad), http.StatusBadRequest)
		if d := p["detail"].(string); !strings.Contains(d, "expired_url") && !strings.Contains(d, "forward_query") {
			t.Fatalf("%v: detail %q does not name the field", bad, d)
		}
	}
	mustProblem(t, h.api(t, http.MethodPatch, "/links/"+slug, `{"forward_query": null}`), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodPatch, "/links/"+slug, `{"expired_url": "ftp://x.example"}`), http.StatusBadRequest)

	// forward_query false: the query stays behind.
	r := h.do(t, http.MethodGet, "/"+slug+"?utm_source=x", nil)
	if r.Status != 302 || r.Header.Get("Location") != "https://example.com/b" {
		t.Fatalf("forward_query false: %d %q", r.Status, r.Header.Get("Location"))
	}
	mustStatus(t, h.do(t, http.MethodGet, "/"+slug, nil), http.StatusFound)
	got := h.api(t, http.MethodGet, "/links/"+slug, nil).JSON(t)
	if got["status"] != "limit_reached" || got["clicks_used"] != float64(2) {
		t.Fatalf("after 2 of 2 clicks: %v", got)
	}
	r = h.do(t, http.MethodGet, "/"+slug, nil)
	if r.Status != 302 || r.Header.Get("Location") != "https://example.com/over" {
		t.Fatalf("used up with expired_url: %d %q", r.Status, r.Header.Get("Location"))
	}

	statusList := func(status string) []string {
		r := h.api(t, http.MethodGet, "/links?status="+status, nil)
		mustStatus(t, r, http.StatusOK)
		var out []string
		for _, l := range r.JSON(t)["links"].([]any) {
			out = append(out, l.(map[string]any)["slug"].(string))
		}
		return out
	}
	if got := statusList("limit_reached"); len(got) != 1 || got[0] != slug {
		t.Fatalf("?status=limit_reached: %v", got)
	}
	if got := statusList("active"); len(got) != 1 || got[0] != first {
		t.Fatalf("?status=active: %v, want only %s", got, first)
	}
	// No assertion depends on how fast the test runs: the link is only ever checked
	// once it has expired.
	exp := h.createLink(t, map[string]any{"url": "https://example.com/e", "expires_at": time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)})["slug"].(string)
	testenv.Eventually(t, 10*time.Second, "the link to expire", func() bool {
		got := statusList("expired")
		return len(got) == 1 && got[0] == exp
	})
	if g := h.api(t, http.MethodGet, "/links/"+exp, nil).JSON(t); g["status"] != "expired" {
		t.Fatalf("expired link: %v", g)
	}
	mustProblem(t, h.api(t, http.MethodGet, "/links?status=gone", nil), http.StatusBadRequest)

	// Raising the limit takes effect at once, in the API and on the redirect.
	p := h.api(t, http.MethodPatch, "/links/"+slug, map[string]any{"max_clicks": 3, "forward_query": true, "expired_url": nil})
	mustStatus(t, p, http.StatusOK)
	if j := p.JSON(t); j["status"] != "active" || j["clicks_used"] != float64(2) || j["expired_url"] != nil || j["forward_query"] != true {
		t.Fatalf("after PATCH: %v", j)
	}
	r = h.do(t, http.MethodGet, "/"+slug+"?utm_source=x", nil)
	if r.Status != 302 || r.Header.Get("Location") != "https://example.com/b?utm_source=x" {
		t.Fatalf("after raising the limit: %d %q", r.Status, r.Header.Get("Location"))
	}
	mustProblem(t, h.do(t, http.MethodGet, "/"+slug, nil), http.StatusGone)

	// A limit set on a link that had none starts from its recorded clicks, bots included.
	free := h.createLink(t, map[string]any{"url": "https://example.com/free"})["slug"].(string)
	for _, ua := range []string{"Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0", "curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0"} {
		mustStatus(t, h.do(t, http.MethodGet, "/"+free, nil, "User-Agent", ua), http.StatusFound)
	}
	h.waitStats(t, free, func(s map[string]any) bool { return s["total_clicks"] == float64(2) && s["bot_clicks"] == float64(1) })
	if g := h.api(t, http.MethodGet, "/links/"+free, nil).JSON(t); g["clicks_used"] != float64(3) {
		t.Fatalf("an unlimited link's clicks_used: %v", g)
	}
	p = h.api(t, http.MethodPatch, "/links/"+free, map[string]any{"max_clicks": 4})
	if j := p.JSON(t); j["clicks_used"] != float64(3) || j["status"] != "active" {
		t.Fatalf("limit set after 3 clicks: %v", j)
	}
	mustStatus(t, h.do(t, http.MethodGet, "/"+free, nil), http.StatusFound)
	mustProblem(t, h.do(t, http.MethodGet, "/"+free, nil), http.StatusGone)
}

// A link imported with clicks_used keeps what its source used of max_clicks: it gets
// only the rest, and one used up arrives used up. clicks_used comes only with a limit.
func TestImportedLinkKeepsItsUsedClicks(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	l := h.createLink(t, map[string]any{"url": "https://example.com/part", "max_clicks": 3, "clicks_used": 2})
	part := l["slug"].(string)
	if l["status"] != "active" || l["clicks_used"] != float64(2) {
		t.Fatalf("2 of 3 used: %v", l)
	}
	mustStatus(t, h.do(t, http.MethodGet, "/"+part, nil), http.StatusFound)
	mustProblem(t, h.do(t, http.MethodGet, "/"+part, nil), http.StatusGone)
	if g := h.api(t, http.MethodGet, "/links/"+part, nil).JSON(t); g["status"] != "limit_reached" || g["clicks_used"] != float64(3) {
		t.Fatalf("after the one click left: %v", g)
	}

	// A limit removed and set again starts from what the source used plus hop's clicks.
	again := h.createLink(t, map[string]any{"url": "https://example.com/again", "max_clicks": 10, "clicks_used": 8})["slug"].(string)
	mustStatus(t, h.do(t, http.MethodGet, "/"+again, nil), http.StatusFound)
	if j := h.api(t, http.MethodPatch, "/links/"+again, map[string]any{"max_clicks": nil}).JSON(t); j["status"] != "active" {
		t.Fatalf("limit removed: %v", j)
	}
	h.waitStats(t, again, func(s map[string]any) bool { return s["total_clicks"].(float64)+s["bot_clicks"].(float64) == 1 })
	if g := h.api(t, http.MethodGet, "/links/"+again, nil).JSON(t); g["clicks_used"] != float64(9) {
		t.Fatalf("without a limit, clicks_used %v, want 8 from the source + 1", g["clicks_used"])
	}
	if j := h.api(t, http.MethodPatch, "/links/"+again, map[string]any{"max_clicks": 10}).JSON(t); j["clicks_used"] != float64(9) || j["status"] != "active" {
		t.Fatalf("limit set again: %v", j)
	}
	mustStatus(t, h.do(t, http.MethodGet, "/"+again, nil), http.StatusFound)
	mustProblem(t, h.do(t, http.MethodGet, "/"+again, nil), http.StatusGone)

	r := h.api(t, http.MethodPost, "/links/bulk", map[string]any{"links": []any{
		map[string]any{"url": "https://example.com/over", "max_clicks": 2, "clicks_used": 5},
		map[string]any{"url": "https://example.com/zero", "clicks_used": 0},
	}})
	mustStatus(t, r, http.StatusCreated)
	var bulk struct {
		Results []struct{ Link map[string]any }
	}
	if err := json.Unmarshal(r.Body, &bulk); err != nil || len(bulk.Results) != 2 {
		t.Fatalf("bulk: %v %s", err, r.Body)
	}
	if o := bulk.Results[0].Link; o["status"] != "limit_reached" || o["clicks_used"] != float64(5) {
		t.Fatalf("5 used of 2: %v", o)
	}
	mustProblem(t, h.do(t, http.MethodGet, "/"+bulk.Results[0].Link["slug"].(string), nil), http.StatusGone)
	if z := bulk.Results[1].Link; z["status"] != "active" || z["clicks_used"] != float64(0) {
		t.Fatalf("clicks_used 0 without a limit: %v", z)
	}

	for _, bad := range []map[string]any{
		{"url": "https://example.com/", "clicks_used": 1},
		{"url": "https://example.com/", "max_clicks": 2, "clicks_used": -1},
		{"url": "https://example.com/", "max_clicks": 2, "clicks_used": int64(1) << 53},
	} {
		p := mustProblem(t, h.api(t, http.MethodPost, "/links", bad), http.StatusBadRequest)
		if d := p["detail"].(string); !strings.Contains(d, "clicks_used") {
			t.Fatalf("%v: detail %q does not name clicks_used", bad, d)
		}
	}
	// Counts an export could not add to without overflowing are refused.
	p := mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://example.com/", "imported_clicks": int64(1) << 53}), http.StatusBadRequest)
	if d := p["detail"].(string); d != "imported_clicks must be at most 9007199254740991" {
		t.Fatalf("imported_clicks 2^53: %q", d)
	}
	if n := h.linkCount(t); n != 4 {
		t.Fatalf("%d links, want 4: a refused create stores nothing", n)
	}
}

// The acceptance test: 50 concurrent requests on a max_clicks 10 link give
// exactly 10 redirects and 40 answers of 410, with and without Redis, across two
// instances of hop on one database; the stats still keep humans and bots apart.
func TestExactClickLimitAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, withRedis := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis=%v", withRedis), func(t *testing.T) {
			t.Parallel()
			db := testenv.NewDB(t)
			var rdb *testenv.Redis
			if withRedis {
				rdb = testenv.NewRedis(t)
			}
			var hs []*instance
			for i := range 2 {
				cfg := testConfig(t, db, rdb)
				cfg["consumer_name"] = fmt.Sprintf("instance-%d", i)
				hs = append(hs, startWith(t, db, rdb, cfg))
			}
			logsOnFailure(t, hs...)
			slug := hs[0].createLink(t, map[string]any{"url": "https://example.com/limited", "max_clicks": 10})["slug"].(string)
			for _, h := range hs { // every instance has the link cached before the race
				mustStatus(t, h.do(t, http.MethodHead, "/"+slug, nil), http.StatusFound)
			}

			start := make(chan struct{})
			var mu sync.Mutex
			codes := map[int]int{}
			humans := 0
			var wg sync.WaitGroup
			for i := range 50 {
				wg.Go(func() {
					ua := "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0"
					if i%2 == 1 {
						ua = "curl/8.5.0"
					}
					<-start
					r := hs[i%2].do(t, http.MethodGet, "/"+slug, nil, "User-Agent", ua)
					mu.Lock()
					defer mu.Unlock()
					codes[r.Status]++
					if r.Status == http.StatusFound && i%2 == 0 {
						humans++
					}
				})
			}
			close(start)
			wg.Wait()
			t.Logf("50 concurrent requests over 2 instances (redis=%v): %d×302, %d×410", withRedis, codes[302], codes[410])
			if codes[302] != 10 || codes[410] != 40 || len(codes) != 2 {
				t.Fatalf("answered %v, want 10×302 and 40×410", codes)
			}
			s := hs[1].waitStats(t, slug, func(s map[string]any) bool {
				return s["total_clicks"].(float64)+s["bot_clicks"].(float64) == 10
			})
			if s["total_clicks"] != float64(humans) || s["bot_clicks"] != float64(10-humans) {
				t.Fatalf("stats %v humans and %v bots, want %d and %d", s["total_clicks"], s["bot_clicks"], humans, 10-humans)
			}
			if j := hs[1].api(t, http.MethodGet, "/links/"+slug, nil).JSON(t); j["clicks_used"] != float64(10) || j["status"] != "limit_reached" {
				t.Fatalf("link after the race: %v", j)
			}
		})
	}
}
