package redirect

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/crypto/bcrypt"

	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/links"
)

// What browsers send, and what programs do.
const (
	chromeAccept = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
	curlAccept   = "*/*"
)

func TestForwardQuery(t *testing.T) {
	t.Parallel()
	cases := []struct{ target, incoming, want string }{
		{"https://t.example/p", "", "https://t.example/p"},
		{"https://t.example/p", "utm_source=x", "https://t.example/p?utm_source=x"},
		{"https://t.example/p?a=1", "a=2&b=3", "https://t.example/p?a=1&b=3"},
		{"https://t.example/p?a=1#frag", "b=2", "https://t.example/p?a=1&b=2#frag"},
		{"https://t.example/p#f?x=1", "b=2", "https://t.example/p?b=2#f?x=1"},
		{"https://t.example/p?", "b=2", "https://t.example/p?b=2"},
		{"https://t.example/p?utm_source=own", "utm%5Fsource=x&k", "https://t.example/p?utm_source=own&k"},
		{"https://t.example/p?a+b=1", "a%20b=2&c=3", "https://t.example/p?a+b=1&c=3"},
		{"https://t.example/p", "a=1&a=2&&b", "https://t.example/p?a=1&a=2&b"},
		{"https://t.example/p", "q=<x>\"é|", "https://t.example/p?q=%3Cx%3E%22%C3%A9%7C"},
		{"https://t.example/p?x", "x=1&y", "https://t.example/p?x&y"},
	}
	for _, c := range cases {
		if got := forwardQuery(c.target, c.incoming); got != c.want {
			t.Errorf("forwardQuery(%q, %q) = %q, want %q", c.target, c.incoming, got, c.want)
		}
	}
}

func FuzzForwardQuery(f *testing.F) {
	f.Add("https://t.example/p?a=1#f", "a=2&b=3")
	f.Add("https://t.example/", "%zz=1&&=&x")
	f.Fuzz(func(t *testing.T, target, incoming string) {
		if _, err := url.Parse(target); err != nil || strings.ContainsAny(target, " \t\r\n") {
			return
		}
		got := forwardQuery(target, incoming)
		base, _, _ := strings.Cut(target, "#")
		base, own, _ := strings.Cut(base, "?")
		if !strings.HasPrefix(got, base) {
			t.Fatalf("%q lost the target's base %q", got, base)
		}
		if own != "" && !strings.HasPrefix(got[len(base):], "?"+own) {
			t.Fatalf("%q lost the target's query %q", got, own)
		}
		added := got[len(base):]
		if i := strings.IndexByte(target, '#'); i >= 0 {
			if !strings.HasSuffix(got, target[i:]) {
				t.Fatalf("%q lost the fragment of %q", got, target)
			}
			added = strings.TrimSuffix(added, target[i:])
		}
		added = strings.TrimPrefix(strings.TrimPrefix(added, "?"+own), "?")
		for i := 0; i < len(added); i++ {
			if !queryByteOK(added[i]) && added[i] != '%' {
				t.Fatalf("%q forwards the raw byte %q", got, added[i])
			}
		}
	})
}

func BenchmarkForwardQuery(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = forwardQuery("https://example.com/landing?ref=hop#pricing", "utm_source=newsletter&utm_medium=email&utm_campaign=spring&ref=x")
	}
}

func TestPrefersHTML(t *testing.T) {
	t.Parallel()
	cases := map[string]bool{
		chromeAccept: true,
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": true,
		"TEXT/HTML":                           true,
		"text/*":                              true,
		"application/json;q=0.5, text/html":   true,
		"":                                    false,
		curlAccept:                            false,
		"application/json":                    false,
		"application/problem+json":            false,
		"text/html;q=0.5, application/json":   false,
		"text/html, application/problem+json": false,
		"text/html;q=0":                       false,
		"text/html;q=abc":                     false,
		"text/html;q=NaN":                     false,
		"image/png":                           false,
		"text/html;level=1;q=0.9, */*;q=0.1":  true,
		",,;;text/html":                       false,
	}
	for accept, want := range cases {
		if got := prefersHTML(accept); got != want {
			t.Errorf("prefersHTML(%q) = %v, want %v", accept, got, want)
		}
	}
}

func FuzzPrefersHTML(f *testing.F) {
	f.Add(chromeAccept)
	f.Add("text/html;q=0.5, application/json;q=0.6")
	f.Fuzz(func(t *testing.T, accept string) {
		if prefersHTML(accept) && !strings.Contains(strings.ToLower(accept), "text/") {
			t.Fatalf("%q prefers HTML without naming text/", accept)
		}
	})
}

// visitors is a redirect handler on its own database, with the app's Echo wiring.
type visitors struct {
	e   *echo.Echo
	h   *Handler
	pub *countingPublisher
	db  *testenv.DB
}

func newVisitors(t *testing.T, cfg Config, withRedis bool) visitors {
	if cfg.Describe == nil {
		cfg.Describe = testDescribe
	}
	t.Helper()
	db := testenv.NewDB(t)
	store, err := links.NewStore(db.Pool, "s", 6)
	if err != nil {
		t.Fatal(err)
	}
	v := visitors{pub: &countingPublisher{}, db: db}
	v.h, v.e = newInstance(t, cfg, store, v.pub, withRedis)
	return v
}

// newInstance is one more redirect handler (an instance of hop) on store's database.
func newInstance(t *testing.T, cfg Config, store *links.Store, pub Publisher, withRedis bool) (*Handler, *echo.Echo) {
	t.Helper()
	var h *Handler
	var err error
	if withRedis {
		if cfg.RedisPrefix == "" {
			r := testenv.NewRedis(t)
			cfg.RedisPrefix = r.Prefix
		}
		h, _ = instanceWithClient(t, store, cfg.RedisPrefix)
		h.fallbacks, h.robots = cfg.Fallbacks, robotsTxt(cfg.RobotsAllow)
		h.pub = pub
	} else {
		h, err = New(cfg, nil, store, pub, prometheus.NewRegistry(), testLogger())
		if err != nil {
			t.Fatal(err)
		}
	}
	e := newEcho()
	h.Register(e)
	return h, e
}

// link inserts a link with extra column values, e.g. "max_clicks": 10.
func (v visitors) link(t *testing.T, slug, target string, extra map[string]any) {
	t.Helper()
	cols, args := []string{"slug", "original_url"}, []any{slug, target}
	ph := []string{"$1", "$2"}
	for k, val := range extra {
		cols = append(cols, k)
		args = append(args, val)
		ph = append(ph, "$"+string(rune('0'+len(args))))
	}
	if _, err := v.db.Pool.Exec(context.Background(), "INSERT INTO links ("+strings.Join(cols, ", ")+") VALUES ("+strings.Join(ph, ", ")+")", args...); err != nil {
		t.Fatal(err)
	}
}

func do(e *echo.Echo, method, path, accept string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func problemType(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var p struct{ Type string }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("not a problem: %q", rec.Body)
	}
	return strings.TrimPrefix(p.Type, "https://hop.dev/problems/")
}

// checkPage asserts a visitor page: HTML, no script, no external asset, a CSP whose
// style hash is the page's own stylesheet, and the given heading.
func checkPage(t *testing.T, rec *httptest.ResponseRecorder, status int, heading string) {
	t.Helper()
	body := rec.Body.String()
	if rec.Code != status || rec.Header().Get("Content-Type") != "text/html; charset=UTF-8" {
		t.Fatalf("%d %q, want %d HTML: %s", rec.Code, rec.Header().Get("Content-Type"), status, body)
	}
	if !strings.Contains(body, "<h1>"+heading+"</h1>") {
		t.Fatalf("page lacks heading %q: %s", heading, body)
	}
	for _, bad := range []string{"<script", "src=", "<link", "style=", "http://", "https://"} {
		if strings.Contains(body, bad) && !(bad == "https://" && strings.Contains(body, "Continue to the link")) {
			t.Fatalf("page contains %q: %s", bad, body)
		}
	}
	m := regexp.MustCompile(`(?s)<style>(.*)</style>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("page without its stylesheet: %s", body)
	}
	sum := sha256.Sum256([]byte(m[1]))
	wantCSP := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	h := rec.Header()
	if h.Get("Content-Security-Policy") != wantCSP || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("Referrer-Policy") != "same-origin" || h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v, want CSP %q and the rest", h, wantCSP)
	}
}

// Browsers get hop's pages with the right status; programs keep their problems.
func TestVisitorPagesAndProblems(t *testing.T) {
	t.Parallel()
	v := newVisitors(t, Config{Describe: testDescribe}, false)
	v.link(t, "gone1", "https://t.example/", map[string]any{"deleted_at": "2024-01-01T00:00:00Z"})
	v.link(t, "old1", "https://t.example/", map[string]any{"expires_at": "2024-01-01T00:00:00Z"})
	v.link(t, "used1", "https://t.example/", map[string]any{"max_clicks": 2, "clicks_used": 2})
	cases := []struct {
		path    string
		status  int
		heading string
		problem string
	}{
		{"/nope1", 404, "Link not found", "link-not-found"},
		{"/bad.slug", 404, "Link not found", "link-not-found"},
		{"/nope1/", 404, "Link not found", "link-not-found"},
		{"/gone1", 410, "Link removed", "link-gone"},
		{"/old1", 410, "Link expired", "link-expired"},
		{"/used1", 410, "Link no longer available", "link-limit-reached"},
		{"/used1/", 410, "Link no longer available", "link-limit-reached"},
	}
	for _, c := range cases {
		checkPage(t, do(v.e, http.MethodGet, c.path, chromeAccept), c.status, c.heading)
		for _, accept := range []string{"", curlAccept, "application/json"} {
			rec := do(v.e, http.MethodGet, c.path, accept)
			if rec.Code != c.status || problemType(t, rec) != c.problem {
				t.Fatalf("%s (Accept %q): %d %s, want %d %s", c.path, accept, rec.Code, rec.Body, c.status, c.problem)
			}
		}
		if rec := do(v.e, http.MethodHead, c.path, chromeAccept); rec.Code != c.status || rec.Body.Len() != 0 {
			t.Fatalf("HEAD %s: %d with %d bytes", c.path, rec.Code, rec.Body.Len())
		}
	}
	for _, accept := range []string{chromeAccept, curlAccept} {
		checkPage(t, do(v.e, http.MethodGet, "/", accept), 200, "This is a hop short-link host")
	}
	if n := v.pub.n.Load(); n != 0 {
		t.Fatalf("%d clicks published for pages", n)
	}
	if got := testutil.ToFloat64(v.h.metrics.redirects.WithLabelValues("410")); got != 4*5 {
		t.Fatalf("hop_redirects_total{status=410} = %v, want 20", got)
	}
}

// Fallback redirects and expired_url are 302s that no link counts as a click.
func TestFallbackRedirects(t *testing.T) {
	t.Parallel()
	fb := Fallbacks{Root: "https://home.example/", NotFound: "https://home.example/404", Expired: "https://home.example/expired"}
	v := newVisitors(t, Config{Describe: testDescribe, Fallbacks: fb}, false)
	v.link(t, "gone1", "https://t.example/", map[string]any{"deleted_at": "2024-01-01T00:00:00Z"})
	v.link(t, "old1", "https://t.example/", map[string]any{"expires_at": "2024-01-01T00:00:00Z"})
	v.link(t, "old2", "https://t.example/", map[string]any{"expires_at": "2024-01-01T00:00:00Z", "expired_url": "https://own.example/over"})
	v.link(t, "used1", "https://t.example/", map[string]any{"max_clicks": 1, "clicks_used": 1, "expired_url": "https://own.example/used"})
	v.link(t, "used2", "https://t.example/", map[string]any{"max_clicks": 1, "clicks_used": 1})
	cases := map[string]string{
		"/":          fb.Root,
		"/nope1":     fb.NotFound,
		"/bad.slug":  fb.NotFound,
		"/gone1":     fb.Expired,
		"/old1":      fb.Expired,
		"/old2?x=1":  "https://own.example/over",
		"/used1":     "https://own.example/used",
		"/used2/":    fb.Expired,
		"/used1?q=1": "https://own.example/used",
	}
	for path, want := range cases {
		for _, accept := range []string{chromeAccept, curlAccept} {
			rec := do(v.e, http.MethodGet, path, accept)
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != want || rec.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("%s: %d %v, want 302 to %s", path, rec.Code, rec.Header(), want)
			}
		}
	}
	if n := v.pub.n.Load(); n != 0 {
		t.Fatalf("%d clicks published for fallback redirects", n)
	}
	if got := testutil.ToFloat64(v.h.metrics.redirects.WithLabelValues("302")); got != float64(2*len(cases)) {
		t.Fatalf("hop_redirects_total{status=302} = %v, want %d", got, 2*len(cases))
	}
	var used int64
	if err := v.db.Pool.QueryRow(context.Background(), `SELECT sum(clicks_used) FROM links`).Scan(&used); err != nil || used != 2 {
		t.Fatalf("clicks_used summed to %d (%v), want the 2 set up", used, err)
	}
	// Without fallbacks, / is hop's page and a link's expired_url still applies.
	plain := newVisitors(t, Config{Describe: testDescribe}, false)
	plain.link(t, "used1", "https://t.example/", map[string]any{"max_clicks": 1, "clicks_used": 1, "expired_url": "https://own.example/used"})
	if rec := do(plain.e, http.MethodGet, "/used1", curlAccept); rec.Code != 302 || rec.Header().Get("Location") != "https://own.example/used" {
		t.Fatalf("expired_url without fallbacks: %d %v", rec.Code, rec.Header())
	}
}

func TestQueryForwarding(t *testing.T) {
	t.Parallel()
	for _, withRedis := range []bool{false, true} {
		v := newVisitors(t, Config{Describe: testDescribe}, withRedis)
		v.link(t, "fwd1", "https://t.example/land?a=1#top", nil)
		v.link(t, "keep1", "https://t.example/keep?a=1", map[string]any{"forward_query": false})
		cases := []struct{ method, path, want string }{
			{http.MethodGet, "/fwd1", "https://t.example/land?a=1#top"},
			{http.MethodGet, "/fwd1?a=2&utm_source=news&utm_medium=mail", "https://t.example/land?a=1&utm_source=news&utm_medium=mail#top"},
			{http.MethodGet, "/fwd1/?utm_campaign=x", "https://t.example/land?a=1&utm_campaign=x#top"},
			{http.MethodGet, "/fwd1/", "https://t.example/land?a=1#top"},
			{http.MethodHead, "/fwd1?b=2", "https://t.example/land?a=1&b=2#top"},
			{http.MethodGet, "/keep1?utm_source=news", "https://t.example/keep?a=1"},
		}
		for _, c := range cases {
			rec := do(v.e, c.method, c.path, chromeAccept)
			if rec.Code != http.StatusFound || rec.Header().Get("Location") != c.want {
				t.Fatalf("redis=%v %s %s: %d %q, want 302 %q", withRedis, c.method, c.path, rec.Code, rec.Header().Get("Location"), c.want)
			}
		}
		if n := v.pub.n.Load(); n != 5 {
			t.Fatalf("redis=%v: %d clicks for 5 GETs and a HEAD", withRedis, n)
		}
	}
}

// The click limit holds exactly under concurrency, for bots as for people, on one
// instance and across two, with and without Redis.
func TestExactClickLimit(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name      string
		redis     bool
		instances int
	}{{"redis", true, 1}, {"no-redis", false, 1}, {"two-instances-redis", true, 2}, {"two-instances-no-redis", false, 2}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Describe: testDescribe}
			if mode.redis {
				cfg.RedisPrefix = testenv.NewRedis(t).Prefix
			}
			v := newVisitors(t, cfg, mode.redis)
			v.link(t, "lim10", "https://t.example/", map[string]any{"max_clicks": 10})
			routers := []*echo.Echo{v.e}
			if mode.instances == 2 {
				store, err := links.NewStore(v.db.Pool, "s", 6)
				if err != nil {
					t.Fatal(err)
				}
				_, e2 := newInstance(t, cfg, store, v.pub, mode.redis)
				routers = append(routers, e2)
			}
			// Warm every instance's cache, so all 50 race on the cached link.
			for _, e := range routers {
				if rec := do(e, http.MethodHead, "/lim10", ""); rec.Code != 302 {
					t.Fatalf("warm-up HEAD: %d", rec.Code)
				}
			}
			codes := fire(routers, "/lim10", 50)
			if codes[302] != 10 || codes[410] != 40 || len(codes) != 2 {
				t.Fatalf("50 concurrent requests on max_clicks 10 answered %v, want 10×302 and 40×410", codes)
			}
			if n := v.pub.n.Load(); n != 10 {
				t.Fatalf("%d clicks published, want 10", n)
			}
			var used int64
			if err := v.db.Pool.QueryRow(context.Background(), `SELECT clicks_used FROM links WHERE slug = 'lim10'`).Scan(&used); err != nil || used != 10 {
				t.Fatalf("clicks_used = %d (%v), want 10", used, err)
			}
			t.Logf("%s: %d×302, %d×410", mode.name, codes[302], codes[410])
		})
	}
}

// fire sends n concurrent GETs at path, spread over routers, half of them as curl (a
// bot), and counts the statuses.
func fire(routers []*echo.Echo, path string, n int) map[int]int {
	start := make(chan struct{})
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, path, nil)
			if i%2 == 0 {
				req.Header.Set("User-Agent", "curl/8.5.0")
			} else {
				req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0")
			}
			rec := httptest.NewRecorder()
			<-start
			routers[i%len(routers)].ServeHTTP(rec, req)
			mu.Lock()
			codes[rec.Code]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return codes
}

// A limited link whose limit cannot be checked is refused with 503, never followed.
func TestClickLimitUnavailable(t *testing.T) {
	t.Parallel()
	v := newVisitors(t, Config{Describe: testDescribe}, false)
	v.link(t, "lim1", "https://t.example/", map[string]any{"max_clicks": 5})
	closed := testenv.NewDB(t)
	down, err := links.NewStore(closed.Pool, "s", 6)
	if err != nil {
		t.Fatal(err)
	}
	closed.Pool.Close()
	good, _ := links.NewStore(v.db.Pool, "s", 6)
	h, err := New(Config{Describe: testDescribe}, nil, splitStore{good, down}, v.pub, prometheus.NewRegistry(), testLogger())
	if err != nil {
		t.Fatal(err)
	}
	e := newEcho()
	h.Register(e)
	if rec := do(e, http.MethodGet, "/lim1", curlAccept); rec.Code != 503 || problemType(t, rec) != "click-limit-unavailable" {
		t.Fatalf("limit check failing: %d %s", rec.Code, rec.Body)
	}
	checkPage(t, do(e, http.MethodGet, "/lim1", chromeAccept), 503, "Something went wrong")
	if n := v.pub.n.Load(); n != 0 {
		t.Fatalf("%d clicks published while the limit could not be checked", n)
	}
}

// splitStore finds links in one database and takes clicks in another (a closed one).
type splitStore struct{ find, take *links.Store }

func (s splitStore) FindInDomain(ctx context.Context, domainID int64, slug string) (links.Link, error) {
	return s.find.FindInDomain(ctx, domainID, slug)
}
func (s splitStore) TakeClick(ctx context.Context, id int64) (bool, error) {
	return s.take.TakeClick(ctx, id)
}

func TestPasswordPages(t *testing.T) {
	t.Parallel()
	v := newVisitors(t, Config{Describe: testDescribe}, false)
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	v.link(t, "pw1", "https://t.example/secret?a=1", map[string]any{"password_hash": string(hash)})

	rec := do(v.e, http.MethodGet, "/pw1?utm_source=x&a=2", chromeAccept)
	checkPage(t, rec, 200, "This link is protected")
	if !strings.Contains(rec.Body.String(), `action="/pw1?utm_source=x&amp;a=2"`) {
		t.Fatalf("the form does not post back with the query: %s", rec.Body)
	}
	post := func(pw, accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/pw1?utm_source=x&a=2", strings.NewReader(url.Values{"password": {pw}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		v.e.ServeHTTP(rec, req)
		return rec
	}
	rec = post("wrong password", chromeAccept)
	checkPage(t, rec, 401, "This link is protected")
	if !strings.Contains(rec.Body.String(), `<p class="error" role="alert">Wrong password. Try again.</p>`) {
		t.Fatalf("no wrong-password message: %s", rec.Body)
	}
	rec = post("correct horse", chromeAccept)
	checkPage(t, rec, 200, "Opening the link…")
	if !strings.Contains(rec.Body.String(), `<meta http-equiv="refresh" content="0; url=https://t.example/secret?a=1&amp;utm_source=x">`) {
		t.Fatalf("no refresh to the target: %s", rec.Body)
	}
	rec = post("correct horse", curlAccept)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "https://t.example/secret?a=1&utm_source=x" {
		t.Fatalf("program after the password: %d %v", rec.Code, rec.Header())
	}
	if n := v.pub.n.Load(); n != 2 {
		t.Fatalf("%d clicks for two right passwords", n)
	}
}

// robots.txt and favicon.ico come from hop; neither is a click or a redirect answer.
func TestRobotsAndFavicon(t *testing.T) {
	t.Parallel()
	deny := newVisitors(t, Config{Describe: testDescribe}, false)
	allow := newVisitors(t, Config{Describe: testDescribe, RobotsAllow: true}, false)
	rec := do(deny.e, http.MethodGet, "/robots.txt", "")
	if rec.Code != 200 || rec.Body.String() != "User-agent: *\nDisallow: /\n" || rec.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("default robots.txt: %d %q", rec.Code, rec.Body)
	}
	rec = do(allow.e, http.MethodGet, "/robots.txt", "")
	body := rec.Body.String()
	for _, want := range []string{"Disallow: /dashboard$\n", "Disallow: /dashboard/\n", "Disallow: /links$\n", "Disallow: /links/\n", "Disallow: /stats$\n", "Disallow: /openapi.json$\n", "Allow: /\n"} {
		if !strings.Contains(body, want) {
			t.Fatalf("allowing robots.txt lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "Disallow: /\n") {
		t.Fatalf("allowing robots.txt disallows everything:\n%s", body)
	}
	rec = do(deny.e, http.MethodGet, "/favicon.ico", "")
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/x-icon" || !strings.HasPrefix(rec.Body.String(), "\x00\x00\x01\x00") {
		t.Fatalf("favicon: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, v := range []visitors{deny, allow} {
		if n := testutil.CollectAndCount(v.h.metrics.redirects); n != 0 {
			// Series exist from start; none may have been incremented.
			var total float64
			for _, s := range []string{"301", "302", "303", "307", "308", "404", "410", "500", "503"} {
				total += testutil.ToFloat64(v.h.metrics.redirects.WithLabelValues(s))
			}
			if total != 0 {
				t.Fatalf("robots.txt or favicon.ico counted as %v redirect answers", total)
			}
		}
		if v.pub.n.Load() != 0 {
			t.Fatal("robots.txt or favicon.ico counted as a click")
		}
	}
}
