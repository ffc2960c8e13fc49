package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hop-dev/hop/internal/testenv"
)

// form posts the password form of slug from client (through the trusted proxy).
func (h *instance) form(t testing.TB, slug, client, password string) response {
	t.Helper()
	return h.do(t, http.MethodPost, "/"+slug, []byte(url.Values{"password": {password}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", client)
}

// Item 1: 40 addresses guessing a 4-character password found it in ~10 s. Now
// passwords are at least 8 bytes, and wrong answers are limited per link across all
// addresses (counted in Redis, so across instances) and per address.
func TestPasswordBruteForceAcrossAddresses(t *testing.T) {
	t.Parallel()
	h := startHop(t, func(cfg map[string]any) { cfg["trusted_proxies"] = []string{"127.0.0.1/32"} })
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://example.com/", "password": "1234"}), http.StatusBadRequest)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/secret", "password": "correct horse"})["slug"].(string)
	other := h.createLink(t, map[string]any{"url": "https://example.com/other", "password": "correct horse"})["slug"].(string)

	// The password is never taken from the query string.
	r := h.do(t, http.MethodPost, "/"+slug+"?password=correct+horse", []byte(""), "Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", "192.0.2.1")
	mustStatus(t, r, http.StatusUnauthorized)

	codes := map[int]int{}
	for i := range 40 {
		r := h.form(t, slug, fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("%04d", i))
		codes[r.Status]++
		if r.Status == http.StatusTooManyRequests && r.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	// One wrong answer was the query-string attempt above.
	if codes[http.StatusUnauthorized] != 4 || codes[http.StatusTooManyRequests] != 36 {
		t.Fatalf("answers %v, want 4 × 401 then 36 × 429", codes)
	}
	mustStatus(t, h.form(t, slug, "203.0.113.9", "correct horse"), http.StatusTooManyRequests)
	r = h.form(t, other, "203.0.113.9", "correct horse")
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "https://example.com/other" {
		t.Fatalf("another link: %d %q", r.Status, r.Header.Get("Location"))
	}
}

// Item 2: a 300 MB multipart upload was spooled to /tmp and 9 MB forms held in memory.
// Only a urlencoded form of at most 4 KiB is read.
func TestPasswordFormBodyLimited(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/secret", "password": "correct horse"})["slug"].(string)
	big := []byte("password=" + strings.Repeat("x", 9<<20))
	mustProblem(t, h.do(t, http.MethodPost, "/"+slug, big, "Content-Type", "application/x-www-form-urlencoded"), http.StatusRequestEntityTooLarge)
	multipart := []byte("--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\n" + strings.Repeat("x", 1<<20) + "\r\n--b--\r\n")
	mustProblem(t, h.do(t, http.MethodPost, "/"+slug, multipart, "Content-Type", "multipart/form-data; boundary=b"), http.StatusUnsupportedMediaType)
	mustStatus(t, h.form(t, slug, "", "correct horse"), http.StatusSeeOther)
}

// Item 3: 55,745 wrong keys in 5 s, all 401 and each a PostgreSQL query. Now 20 per
// minute per address, then 429 before any lookup; a known key still works.
func TestFailedAPIKeysLimitedPerAddress(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	mustStatus(t, h.api(t, http.MethodGet, "/links", nil), http.StatusOK)
	codes := map[int]int{}
	for i := range 30 {
		codes[h.do(t, http.MethodGet, "/links", nil, "Authorization", fmt.Sprintf("Bearer hop_guess_%032d", i)).Status]++
	}
	if codes[http.StatusUnauthorized] != 20 || codes[http.StatusTooManyRequests] != 10 {
		t.Fatalf("answers %v, want 20 × 401 then 10 × 429", codes)
	}
	r := h.do(t, http.MethodGet, "/links", nil, "Authorization", "Bearer hop_guess_one_more_000000000000000000")
	mustProblem(t, r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	mustStatus(t, h.api(t, http.MethodGet, "/links", nil), http.StatusOK)
}

// Item 3: HOP_API_KEY shorter than 32 characters is refused at start, by name.
func TestShortAPIKeyRefusedAtStart(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, map[string]any{"api_key": strings.Repeat("k", 31)})
	err := Run(t.Context(), []string{"--config", path, "serve"}, func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "api_key (HOP_API_KEY)") || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("start with a 31-character key: %v", err)
	}
}

// Item 4: after a restart with a new HOP_API_KEY both keys worked. Now the old one is
// revoked at start, and the log says so.
func TestChangingAPIKeyRevokesPrevious(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	cfg := testConfig(t, db, nil)
	first := startWith(t, db, nil, cfg)
	mustStatus(t, first.api(t, http.MethodGet, "/links", nil), http.StatusOK)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	const newKey = "hop_rotated_key_0123456789abcdef0123"
	cfg["api_key"] = newKey
	second := startWith(t, db, nil, cfg)
	mustProblem(t, second.do(t, http.MethodGet, "/links", nil, "Authorization", "Bearer "+testAPIKey), http.StatusUnauthorized)
	mustStatus(t, second.do(t, http.MethodGet, "/links", nil, "Authorization", "Bearer "+newKey), http.StatusOK)
	if logs := second.logs.String(); !strings.Contains(logs, "revoked the previous bootstrap API key") || !strings.Contains(logs, testAPIKey[:8]) {
		t.Fatalf("the revocation is not logged with the old key's prefix:\n%s", logs)
	}
}

// Item 5: with the default secret, ids 1-5 encoded to the live slugs. Without
// HOP_SLUG_SECRET hop now makes a random secret at first start, keeps it in the
// database for every instance and restart, and links keep working.
func TestSlugSecretGeneratedAndStored(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	cfg := testConfig(t, db, nil)
	first := startWith(t, db, nil, cfg)
	slug := first.createLink(t, map[string]any{"url": "https://example.com/one"})["slug"].(string)
	var secret string
	if err := db.Pool.QueryRow(t.Context(), `SELECT value FROM instance_secrets WHERE name = 'slug_secret'`).Scan(&secret); err != nil {
		t.Fatal(err)
	}
	if len(secret) < 32 || secret == DevSlugSecret {
		t.Fatalf("stored secret %q", secret)
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	second := startWith(t, db, nil, cfg)
	mustStatus(t, second.do(t, http.MethodGet, "/"+slug, nil), http.StatusFound)
	var again string
	if err := db.Pool.QueryRow(t.Context(), `SELECT value FROM instance_secrets WHERE name = 'slug_secret'`).Scan(&again); err != nil || again != secret {
		t.Fatalf("secret after restart %q (%v), want the first", again, err)
	}
}

// Item 6: /health showed connection strings to anyone. Without a key it says only
// ok/degraded/down per check; with a key, the details; a wrong key is refused.
func TestHealthHidesInternalsWithoutKey(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	r := h.do(t, http.MethodGet, "/health", nil)
	mustStatus(t, r, http.StatusOK)
	body := string(r.Body)
	for _, leak := range []string{"latency_ms", "error", "details", "postgres://", "redis://", "127.0.0.1", h.DB.Name} {
		if strings.Contains(body, leak) {
			t.Fatalf("unauthenticated /health shows %q: %s", leak, body)
		}
	}
	for name, c := range r.JSON(t)["checks"].(map[string]any) {
		if len(c.(map[string]any)) != 1 {
			t.Fatalf("check %s shows more than its status: %v", name, c)
		}
	}
	detailed := h.api(t, http.MethodGet, "/health", nil)
	mustStatus(t, detailed, http.StatusOK)
	if !strings.Contains(string(detailed.Body), "latency_ms") {
		t.Fatalf("/health with a key lacks details: %s", detailed.Body)
	}
	mustProblem(t, h.do(t, http.MethodGet, "/health", nil, "Authorization", "Bearer hop_wrong_key_000000000000000000000"), http.StatusUnauthorized)
}

// Item 6: /metrics takes an optional bearer token.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	const token = "metrics-token-for-the-scraper"
	h := startHop(t, func(cfg map[string]any) { cfg["metrics_token"] = token })
	mustProblem(t, h.do(t, http.MethodGet, "/metrics", nil), http.StatusUnauthorized)
	mustProblem(t, h.do(t, http.MethodGet, "/metrics", nil, "Authorization", "Bearer nope"), http.StatusUnauthorized)
	mustProblem(t, h.do(t, http.MethodGet, "/metrics", nil, "Authorization", "Bearer "+testAPIKey), http.StatusUnauthorized)
	r := h.do(t, http.MethodGet, "/metrics", nil, "Authorization", "Bearer "+token)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), "hop_http_requests_total") {
		t.Fatalf("metrics body: %.200s", r.Body)
	}
}

// Item 6: polling /health runs its checks at most once a second.
func TestHealthRefreshedAtMostOncePerSecond(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	var runs atomic.Int64
	now := time.Unix(1_700_000_000, 0)
	var clock atomic.Int64
	h := &health{pool: db.Pool, now: func() time.Time { return now.Add(time.Duration(clock.Load())) },
		checks: map[string]check{"counted": func(context.Context) (any, error) { runs.Add(1); return nil, nil }}}
	for range 100 {
		if r := h.report(t.Context()); r.Status != "ok" {
			t.Fatalf("status %q", r.Status)
		}
	}
	clock.Store(int64(999 * time.Millisecond))
	h.report(t.Context())
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d check runs within a second, want 1", n)
	}
	clock.Store(int64(time.Second))
	h.report(t.Context())
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d check runs after a second, want 2", n)
	}
}

// Item 6: scraping /metrics gathers at most once a second.
func TestMetricsGatheredAtMostOncePerSecond(t *testing.T) {
	t.Parallel()
	var gathers atomic.Int64
	var clock atomic.Int64
	g := &cachedGatherer{
		g: prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			gathers.Add(1)
			return nil, nil
		}),
		now: func() time.Time { return time.Unix(1_700_000_000, clock.Load()) },
	}
	for range 100 {
		if _, err := g.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	if n := gathers.Load(); n != 1 {
		t.Fatalf("%d gathers for 100 scrapes in a second, want 1", n)
	}
	clock.Store(int64(time.Second))
	_, _ = g.Gather()
	if n := gathers.Load(); n != 2 {
		t.Fatalf("%d gathers after a second, want 2", n)
	}
}

// Item 8: bad bytes in parameters were PostgreSQL errors 22021 (500 and an ERROR log
// line). Each is now a 400 problem naming the parameter.
func TestBadBytesAre400NamingTheParameter(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.createLink(t, map[string]any{"url": "https://example.com/", "slug": "abc"})
	for _, tc := range []struct{ method, path, param string }{
		{http.MethodGet, "/links?q=a%00b", "q"},
		{http.MethodGet, "/links?q=%ff%fe", "q"},
		{http.MethodGet, "/links?tag=%ff", "tag"},
		{http.MethodGet, "/links/a%00b", "slug"},
		{http.MethodPatch, "/links/a%00b", "slug"},
		{http.MethodDelete, "/links/a%FFb", "slug"},
		{http.MethodGet, "/links/a%00b/stats", "slug"},
		{http.MethodGet, "/links/a%00b/clicks.csv", "slug"},
		{http.MethodGet, "/links/abc/stats?tz=%00", "tz"},
		{http.MethodGet, "/links/abc/clicks.csv?start=0000-01-01&end=0000-01-10", "end"},
	} {
		var body any
		if tc.method == http.MethodPatch {
			body = map[string]any{"tags": []string{"x"}}
		}
		r := h.api(t, tc.method, tc.path, body)
		p := mustProblem(t, r, http.StatusBadRequest)
		if !strings.HasPrefix(p["detail"].(string), tc.param+":") {
			t.Errorf("%s %s: detail %q does not name %s", tc.method, tc.path, p["detail"], tc.param)
		}
	}
	// The dashboard shows it as a page.
	r := h.do(t, http.MethodGet, "/dashboard/links/a%00b", nil)
	if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Errorf("dashboard page with a NUL slug: %d %s", r.Status, r.Header.Get("Content-Type"))
	}
	if strings.Contains(h.logs.String(), `"level":"ERROR"`) {
		t.Fatalf("bad input logged as an error:\n%s", h.logs)
	}
}

// lockLinksTable stalls every query on the instance's links table until the test ends.
func lockLinksTable(t *testing.T, db *testenv.DB) (waiting func() int) {
	t.Helper()
	tx, err := db.Pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(t.Context(), `LOCK TABLE links IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return func() int {
		var n int
		if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%links%' AND query NOT ILIKE '%LOCK TABLE%'`).Scan(&n); err != nil {
			t.Error(err)
		}
		return n
	}
}

// Item 8: a client that disconnects mid-request is not a 500 and not an ERROR line
// (200 dropped requests made 182 of them). The redirect's own case is
// TestRedirectLookupStopsWhenClientLeaves in modules/redirect.
func TestClientDisconnectIsNotAnError(t *testing.T) {
	t.Parallel()
	h := startHop(t, func(cfg map[string]any) { cfg["redis_url"] = "" })
	h.createLink(t, map[string]any{"url": "https://example.com/", "slug": "abc"})
	waiting := lockLinksTable(t, h.DB)
	const dropped = 5
	for range dropped {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/links", nil)
		req.Header.Set("Authorization", "Bearer "+h.Key)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := noRedirect.Do(req); err == nil {
				resp.Body.Close()
				t.Errorf("answered %d while PostgreSQL was stalled", resp.StatusCode)
			}
		}()
		testenv.Eventually(t, 20*time.Second, "the request to wait in PostgreSQL", func() bool { return waiting() == 1 })
		cancel()
		<-done
		testenv.Eventually(t, 20*time.Second, "the abandoned query to be cancelled", func() bool { return waiting() == 0 })
	}
	var exposition string
	testenv.Eventually(t, 10*time.Second, "the dropped requests to be counted", func() bool {
		exposition = string(h.do(t, http.MethodGet, "/metrics", nil).Body)
		return metricValue(exposition, `hop_http_requests_total{method="GET",route="/links",status="499"}`) == fmt.Sprint(dropped)
	})
	// hop_redirects_total lists a zero 500 series from the start; only requests count here.
	for _, line := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(line, "hop_http_requests_total{") && strings.Contains(line, `status="500"`) {
			t.Fatalf("a dropped request counted as a 500: %s", line)
		}
	}
	if strings.Contains(h.logs.String(), `"level":"ERROR"`) {
		t.Fatalf("a dropped request logged an error:\n%s", h.logs)
	}
}

// Item 9: a link to hop itself made a redirect loop (9 clicks for one curl -L).
func TestLinkToHopItselfRefused(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil) // base_url https://hop.test
	for _, u := range []string{"https://hop.test/abc", "http://HOP.TEST:8080/x"} {
		p := mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": u}), http.StatusBadRequest)
		if !strings.Contains(p["detail"].(string), "this hop itself") {
			t.Fatalf("%s: %v", u, p["detail"])
		}
	}
}

// Item 11: 4,000 idle keep-alive connections took 60 MB. HOP_MAX_CONNECTIONS caps
// them: past the cap a new connection is not served until one closes.
func TestMaxConnectionsCap(t *testing.T) {
	t.Parallel()
	h := startHop(t, func(cfg map[string]any) { cfg["max_connections"] = 2 })
	http.DefaultTransport.(*http.Transport).CloseIdleConnections() // startHop's health probe
	addr := strings.TrimPrefix(h.URL, "http://")
	open := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	ask := func(c net.Conn, r *bufio.Reader, wait time.Duration) error {
		if _, err := io.WriteString(c, "GET /robots.txt HTTP/1.1\r\nHost: hop\r\n\r\n"); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	c1, r1 := open()
	c2, r2 := open()
	for _, cr := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c1, r1}, {c2, r2}} {
		if err := ask(cr.c, cr.r, 20*time.Second); err != nil {
			t.Fatalf("a connection within the cap: %v", err)
		}
	}
	c3, r3 := open()
	if err := ask(c3, r3, 500*time.Millisecond); err == nil {
		t.Fatal("a third connection was served with max_connections 2")
	}
	c1.Close()
	_ = c3.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(r3, nil)
	if err != nil {
		t.Fatalf("the waiting connection was not served once a slot freed: %v", err)
	}
	resp.Body.Close()
}
