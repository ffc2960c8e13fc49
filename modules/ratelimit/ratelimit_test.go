package ratelimit

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/problem/problemtest"
	"github.com/hop-dev/hop/internal/testenv"
)

// newServer routes GET /:slug through l, with an error handler rendering problems the
// way the app's does.
func newServer(l *Limiter, extractor echo.IPExtractor) *echo.Echo {
	e := echo.New()
	e.IPExtractor = extractor
	e.HTTPErrorHandler = problemtest.ErrorHandler(problemtest.Describe(map[error]string{ErrLimited: "429 rate-limited"}))
	e.GET("/:slug", func(c echo.Context) error { return c.String(http.StatusOK, "ok") }, l.Middleware())
	return e
}

func get(e *echo.Echo, remoteAddr, xff string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/abc", nil)
	req.RemoteAddr = remoteAddr
	if xff != "" {
		req.Header.Set(echo.HeaderXForwardedFor, xff)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func mustNew(t *testing.T, cfg Config, rdb rueidis.Client, reg prometheus.Registerer) *Limiter {
	t.Helper()
	l, err := New(cfg, rdb, reg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// counterValue reads counter name{limiter=limiter} from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, limiter string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "limiter" && lp.GetValue() == limiter {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{limiter=%q} not found", name, limiter)
	return 0
}

func headerInt(t *testing.T, rec *httptest.ResponseRecorder, name string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(rec.Header().Get(name), 10, 64)
	if err != nil {
		t.Fatalf("header %s = %q: %v", name, rec.Header().Get(name), err)
	}
	return v
}

// countingTimeout is the Redis budget of tests that count exactly: they test the
// counting, and the default 20 ms budget can be missed on a loaded CI machine, which
// would move a request to the in-memory fallback. The fail-open tests set their own.
const countingTimeout = time.Second

func TestLimitHoldsExactly(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"redis", "memory"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			var rdb rueidis.Client
			var prefix string
			if backend == "redis" {
				r := testenv.NewRedis(t)
				rdb, prefix = r.Client, r.Prefix
			}
			reg := prometheus.NewRegistry()
			e := newServer(mustNew(t, Config{Timeout: countingTimeout, Name: "redirect", Rate: "5-M", Prefix: prefix}, rdb, reg), nil)

			start := time.Now().Unix()
			for i := range 5 {
				rec := get(e, "198.51.100.1:1234", "")
				if rec.Code != http.StatusOK {
					t.Fatalf("request %d: status %d, want 200; body %s", i+1, rec.Code, rec.Body)
				}
				if got := headerInt(t, rec, "X-RateLimit-Limit"); got != 5 {
					t.Errorf("request %d: X-RateLimit-Limit = %d, want 5", i+1, got)
				}
				if got, want := headerInt(t, rec, "X-RateLimit-Remaining"), int64(4-i); got != want {
					t.Errorf("request %d: X-RateLimit-Remaining = %d, want %d", i+1, got, want)
				}
				if reset := headerInt(t, rec, "X-RateLimit-Reset"); reset < start+59 || reset > time.Now().Unix()+60 {
					t.Errorf("request %d: X-RateLimit-Reset = %d, want about %d", i+1, reset, start+60)
				}
				if rec.Header().Get("Retry-After") != "" {
					t.Errorf("request %d: Retry-After set on an allowed request", i+1)
				}
			}

			rec := get(e, "198.51.100.1:1234", "")
			if rec.Code != http.StatusTooManyRequests {
				t.Fatalf("request 6: status %d, want 429", rec.Code)
			}
			if ct := rec.Header().Get(echo.HeaderContentType); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			var body struct {
				Type, Title, Detail string
				Status              int
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("decode problem %s: %v", rec.Body, err)
			}
			if body.Status != 429 || body.Type != "https://hop.dev/problems/rate-limited" || body.Title != "Too Many Requests" || !strings.Contains(body.Detail, "5 requests per minute") {
				t.Errorf("problem = %+v", body)
			}
			if got := headerInt(t, rec, "X-RateLimit-Remaining"); got != 0 {
				t.Errorf("429: X-RateLimit-Remaining = %d, want 0", got)
			}
			if got := headerInt(t, rec, "X-RateLimit-Limit"); got != 5 {
				t.Errorf("429: X-RateLimit-Limit = %d, want 5", got)
			}
			if ra := headerInt(t, rec, "Retry-After"); ra < 1 || ra > 60 {
				t.Errorf("Retry-After = %d, want 1..60", ra)
			}

			// Another client has its own budget.
			if rec := get(e, "198.51.100.2:1234", ""); rec.Code != http.StatusOK {
				t.Errorf("other client: status %d, want 200", rec.Code)
			}
			if got := counterValue(t, reg, "hop_ratelimit_limited_total", "redirect"); got != 1 {
				t.Errorf("hop_ratelimit_limited_total = %v, want 1", got)
			}
			if got := counterValue(t, reg, "hop_ratelimit_errors_total", "redirect"); got != 0 {
				t.Errorf("hop_ratelimit_errors_total = %v, want 0", got)
			}
		})
	}
}

func TestInstancesShareRedisCount(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	reg := prometheus.NewRegistry() // shared, as if both registered in one process
	cfg := Config{Timeout: countingTimeout, Name: "redirect", Rate: "4-M", Prefix: r.Prefix}
	a := newServer(mustNew(t, cfg, r.Client, reg), nil)
	b := newServer(mustNew(t, cfg, r.Client, reg), nil)

	allowed := 0
	for i := range 10 {
		e := a
		if i%2 == 1 {
			e = b
		}
		switch rec := get(e, "198.51.100.1:1234", ""); rec.Code {
		case http.StatusOK:
			allowed++
		case http.StatusTooManyRequests:
		default:
			t.Fatalf("request %d: status %d", i+1, rec.Code)
		}
	}
	if allowed != 4 {
		t.Errorf("allowed %d of 10 requests across two instances, want 4", allowed)
	}
	if got := counterValue(t, reg, "hop_ratelimit_limited_total", "redirect"); got != 6 {
		t.Errorf("hop_ratelimit_limited_total = %v, want 6", got)
	}
}

// A limit changed to another period starts from zero: the count of the old window,
// a minute's here, is not read against the new per-second limit. Instances counting
// over the same period still share one count, whatever their limits. The 429 says what
// it counts against.
func TestNewPeriodStartsAfresh(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	allowed := func(e *echo.Echo, n int) (ok int, last *httptest.ResponseRecorder) {
		for range n {
			last = get(e, "198.51.100.1:1234", "")
			if last.Code == http.StatusOK {
				ok++
			}
		}
		return ok, last
	}
	minute := newServer(mustNew(t, Config{Timeout: countingTimeout, Name: "api", Rate: "30-M", Prefix: r.Prefix}, r.Client, nil), nil)
	if ok, _ := allowed(minute, 25); ok != 25 {
		t.Fatalf("%d of 25 allowed at 30-M", ok)
	}
	second := newServer(mustNew(t, Config{Timeout: countingTimeout, Name: "api", Rate: "5-S", Prefix: r.Prefix, Counted: "with this API key"}, r.Client, nil), nil)
	ok, last := allowed(second, 6)
	if ok != 5 {
		t.Errorf("%d of 6 allowed at 5-S after 25 in the minute's window, want 5", ok)
	}
	if detail := last.Body.String(); !strings.Contains(detail, "more than 5 requests per second with this API key") {
		t.Errorf("429 detail %s", detail)
	}
	sameMinute := newServer(mustNew(t, Config{Timeout: countingTimeout, Name: "api", Rate: "27-M", Prefix: r.Prefix}, r.Client, nil), nil)
	if ok, _ := allowed(sameMinute, 3); ok != 2 {
		t.Errorf("%d of 3 allowed at 27-M after 25 counted at 30-M, want 2: one minute's count is shared", ok)
	}
}

func TestOffPassesEverything(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	for _, rate := range []string{"off", "OFF", " off "} {
		e := newServer(mustNew(t, Config{Timeout: countingTimeout, Name: "redirect", Rate: rate, Prefix: r.Prefix}, r.Client, nil), nil)
		for i := range 50 {
			rec := get(e, "198.51.100.1:1234", "")
			if rec.Code != http.StatusOK {
				t.Fatalf("rate %q request %d: status %d, want 200", rate, i+1, rec.Code)
			}
			if h := rec.Header().Get("X-RateLimit-Limit"); h != "" {
				t.Fatalf("rate %q: X-RateLimit-Limit = %q on a disabled limiter", rate, h)
			}
		}
	}
	keys, err := r.Client.Do(context.Background(), r.Client.B().Keys().Pattern(r.Prefix+"*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("disabled limiter wrote keys %v", keys)
	}
}

func TestCustomKey(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	l := mustNew(t, Config{Timeout: countingTimeout, Name: "api", Rate: "2-M", Prefix: r.Prefix, Key: func(c echo.Context) string {
		return c.Request().Header.Get("X-Key-Id")
	}}, r.Client, nil)
	e := newServer(l, nil)
	send := func(keyID, addr string) int {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = addr
		if keyID != "" {
			req.Header.Set("X-Key-Id", keyID)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code
	}
	// Same key from different addresses shares one budget.
	for i, want := range []int{200, 200, 429} {
		if got := send("k1", fmt.Sprintf("198.51.100.%d:1", i+1)); got != want {
			t.Errorf("k1 request %d: status %d, want %d", i+1, got, want)
		}
	}
	if got := send("k2", "198.51.100.1:1"); got != 200 {
		t.Errorf("k2: status %d, want 200", got)
	}
	// No key: counted by client IP.
	for i, want := range []int{200, 200, 429} {
		if got := send("", "198.51.100.50:1"); got != want {
			t.Errorf("keyless request %d: status %d, want %d", i+1, got, want)
		}
	}
}

// TestKeyByClientIP checks the limiter keys on Echo's IPExtractor: X-Forwarded-For
// counts only when the peer is a trusted proxy, and then its rightmost untrusted
// address is the client.
func TestKeyByClientIP(t *testing.T) {
	t.Parallel()
	r := testenv.NewRedis(t)
	_, trusted, err := net.ParseCIDR("203.0.113.0/24")
	if err != nil {
		t.Fatal(err)
	}
	l := mustNew(t, Config{Timeout: countingTimeout, Name: "redirect", Rate: "1-M", Prefix: r.Prefix}, r.Client, nil)
	e := newServer(l, echo.ExtractIPFromXFFHeader(echo.TrustIPRange(trusted)))

	steps := []struct {
		name       string
		remoteAddr string
		xff        string
		want       int
	}{
		{"untrusted peer, first request", "198.51.100.7:4000", "192.0.2.1", 200},
		{"untrusted peer spoofs another XFF", "198.51.100.7:4001", "192.0.2.2", 429},
		{"untrusted peer spoofs a trusted-looking chain", "198.51.100.7:4002", "192.0.2.3, 203.0.113.9", 429},
		{"spoofed address itself is untouched", "192.0.2.2:4000", "", 200},
		{"trusted proxy forwards a client", "203.0.113.10:5000", "6.6.6.6, 198.51.100.20", 200},
		{"client-supplied leftmost entry is ignored", "203.0.113.11:5000", "7.7.7.7, 198.51.100.20", 429},
		{"same client connecting directly", "198.51.100.20:6000", "", 429},
		{"another client behind the proxy", "203.0.113.10:5001", "198.51.100.21", 200},
		{"trusted hops are skipped", "203.0.113.10:5002", "198.51.100.30, 203.0.113.99", 200},
		{"same client through two proxies", "203.0.113.12:5000", "198.51.100.30, 203.0.113.98", 429},
	}
	for _, s := range steps {
		if rec := get(e, s.remoteAddr, s.xff); rec.Code != s.want {
			t.Errorf("%s (peer %s, XFF %q): status %d, want %d", s.name, s.remoteAddr, s.xff, rec.Code, s.want)
		}
	}

	ctx := context.Background()
	for _, ip := range []string{"198.51.100.7", "192.0.2.2", "198.51.100.20", "198.51.100.21", "198.51.100.30"} {
		n, err := r.Client.Do(ctx, r.Client.B().Exists().Key(r.Prefix+"redirect:60s:"+ip).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("no counter for client %s", ip)
		}
	}
	for _, ip := range []string{"192.0.2.1", "192.0.2.3", "6.6.6.6", "7.7.7.7", "203.0.113.10"} {
		n, err := r.Client.Do(ctx, r.Client.B().Exists().Key(r.Prefix+"redirect:60s:"+ip).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("counter keyed on %s, an address the client chose or a proxy", ip)
		}
	}
}

func TestFailOpenWhenRedisDies(t *testing.T) {
	t.Parallel()
	srv := testenv.StartPrivateRedis(t)
	rdb := srv.Client(t)
	reg := prometheus.NewRegistry()
	e := newServer(mustNew(t, Config{Timeout: countingTimeout, Name: "redirect", Rate: "3-M"}, rdb, reg), nil)

	for i := range 2 {
		if rec := get(e, "198.51.100.1:1", ""); rec.Code != http.StatusOK {
			t.Fatalf("request %d with Redis up: status %d", i+1, rec.Code)
		}
	}
	srv.Kill() // and waits until it has ended

	// Redis is gone: requests go through and are counted in memory, so the limit
	// still holds per instance (3 more, then 429), and nothing fails with 5xx.
	for i, want := range []int{200, 200, 200, 429} {
		start := time.Now()
		rec := get(e, "198.51.100.1:1", "")
		if rec.Code != want {
			t.Errorf("request %d with Redis down: status %d, want %d; body %s", i+1, rec.Code, want, rec.Body)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("request %d with Redis down took %s", i+1, d)
		}
		if rec.Header().Get("X-RateLimit-Limit") != "3" {
			t.Errorf("request %d with Redis down: X-RateLimit-Limit = %q, want 3", i+1, rec.Header().Get("X-RateLimit-Limit"))
		}
	}
	if got := counterValue(t, reg, "hop_ratelimit_errors_total", "redirect"); got < 1 {
		t.Errorf("hop_ratelimit_errors_total = %v, want at least 1", got)
	}
	if got := counterValue(t, reg, "hop_ratelimit_fallback_total", "redirect"); got != 4 {
		t.Errorf("hop_ratelimit_fallback_total = %v, want 4", got)
	}
}

func TestFailOpenWhenRedisIsSlow(t *testing.T) {
	t.Parallel()
	srv := testenv.StartPrivateRedis(t)
	rdb := srv.Client(t)
	reg := prometheus.NewRegistry()
	e := newServer(mustNew(t, Config{Name: "api", Rate: "3-M", Timeout: 20 * time.Millisecond}, rdb, reg), nil)

	if rec := get(e, "198.51.100.1:1", ""); rec.Code != http.StatusOK {
		t.Fatalf("status %d with Redis up", rec.Code)
	}
	// Another connection pauses every client for 5 s: the limiter must not wait. The
	// bound sits halfway between the 20 ms timeout and the pause: far from both, so a
	// loaded machine's scheduling delays pass, and waiting for Redis always fails.
	const pause = 5 * time.Second
	admin := srv.Client(t)
	t.Cleanup(srv.Kill) // first: closing a client would wait for the paused server
	if err := admin.Do(context.Background(), admin.B().ClientPause().Timeout(pause.Milliseconds()).All().Build()).Error(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	start := time.Now()
	rec := get(e, "198.51.100.1:1", "")
	if d := time.Since(start); d > pause/2 {
		t.Errorf("request with Redis paused for %s took %s, want about the 20 ms timeout (at most %s)", pause, d, pause/2)
	}
	if rec.Code != http.StatusOK {
		t.Errorf("status %d with Redis paused, want 200", rec.Code)
	}
	if got := counterValue(t, reg, "hop_ratelimit_errors_total", "api"); got != 1 {
		t.Errorf("hop_ratelimit_errors_total = %v, want 1", got)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Name: "", Rate: "10-S"},
		{Name: "redirect", Rate: "10/S"},
		{Name: "redirect", Rate: ""},
		{Name: "redirect", Rate: "10-S", Timeout: -time.Second},
	} {
		if _, err := New(cfg, nil, nil, nil); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		limit  int64
		period time.Duration
		ok     bool
	}{
		{"10-S", 10, time.Second, true},
		{"600-M", 600, time.Minute, true},
		{"1000-H", 1000, time.Hour, true},
		{"5-D", 5, 24 * time.Hour, true},
		{"10-s", 10, time.Second, true},
		{" 10-S ", 10, time.Second, true},
		{"off", 0, 0, true},
		{"Off", 0, 0, true},
		{"", 0, 0, false},
		{"10", 0, 0, false},
		{"10-", 0, 0, false},
		{"-S", 0, 0, false},
		{"10-X", 0, 0, false},
		{"10-MS", 0, 0, false},
		{"0-S", 0, 0, false},
		{"-1-S", 0, 0, false},
		{"ten-S", 0, 0, false},
		{"10-S-1", 0, 0, false},
		{"1.5-S", 0, 0, false},
		{"99999999999999999999-S", 0, 0, false},
		{"disabled", 0, 0, false},
	}
	for _, tt := range tests {
		rate, err := ParseRate(tt.in)
		if tt.ok != (err == nil) {
			t.Errorf("ParseRate(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(strings.TrimSpace(tt.in))) || !strings.Contains(err.Error(), "10-S") {
				t.Errorf("ParseRate(%q) error %q should quote the input and show the format", tt.in, err)
			}
			continue
		}
		if rate.Limit != tt.limit || rate.Period != tt.period {
			t.Errorf("ParseRate(%q) = %d per %s, want %d per %s", tt.in, rate.Limit, rate.Period, tt.limit, tt.period)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"10-S", "600-M", "off", "", "0-S", "-1-S", "1-s-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rate, err := ParseRate(s)
		if err != nil {
			return
		}
		if rate.Limit == 0 && rate.Period == 0 {
			return // off
		}
		if rate.Limit < 1 {
			t.Errorf("ParseRate(%q) accepted limit %d", s, rate.Limit)
		}
		switch rate.Period {
		case time.Second, time.Minute, time.Hour, 24 * time.Hour:
		default:
			t.Errorf("ParseRate(%q) accepted period %s", s, rate.Period)
		}
	})
}
