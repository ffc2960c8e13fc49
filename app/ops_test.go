package app

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestRedirectRateLimitByClientIP(t *testing.T) {
	t.Parallel()
	t.Run("untrusted peer cannot spoof X-Forwarded-For", func(t *testing.T) {
		t.Parallel()
		h := startHop(t, func(cfg map[string]any) { cfg["rate_limit_redirect"] = "5-M" })
		slug := h.createLink(t, map[string]any{"url": "https://example.com/rl"})["slug"].(string)
		for i := range 5 {
			r := h.do(t, http.MethodGet, "/"+slug, nil, "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
			mustStatus(t, r, http.StatusFound)
			if r.Header.Get("X-RateLimit-Limit") != "5" || r.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(4-i) {
				t.Fatalf("rate limit headers: %v", r.Header)
			}
		}
		r := h.do(t, http.MethodGet, "/"+slug, nil, "X-Forwarded-For", "198.51.100.77")
		p := mustProblem(t, r, http.StatusTooManyRequests)
		if r.Header.Get("Retry-After") == "" || r.Header.Get("X-RateLimit-Reset") == "" || r.Header.Get("X-RateLimit-Remaining") != "0" {
			t.Fatalf("429 headers: %v (%v)", r.Header, p)
		}
		// A browser gets a page saying so, with the same headers.
		r = h.do(t, http.MethodGet, "/"+slug, nil, "Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
		mustStatus(t, r, http.StatusTooManyRequests)
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || !bytes.Contains(r.Body, []byte("Too many requests")) ||
			r.Header.Get("Retry-After") == "" || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("429 for a browser: %q %v: %s", ct, r.Header, r.Body)
		}
		// Health and metrics are never limited; the API has its own limit.
		for range 3 {
			mustStatus(t, h.do(t, http.MethodGet, "/health", nil), http.StatusOK)
			mustStatus(t, h.do(t, http.MethodGet, "/metrics", nil), http.StatusOK)
		}
		mustStatus(t, h.api(t, http.MethodGet, "/links/"+slug, nil), http.StatusOK)
	})
	t.Run("trusted proxy: rightmost untrusted address is the client", func(t *testing.T) {
		t.Parallel()
		h := startHop(t, func(cfg map[string]any) {
			cfg["rate_limit_redirect"] = "2-M"
			cfg["trusted_proxies"] = []string{"127.0.0.1/32", "10.0.0.0/8"}
		})
		slug := h.createLink(t, map[string]any{"url": "https://example.com/rl"})["slug"].(string)
		// Two clients behind the proxy each get their own budget; a forged leftmost
		// entry does not change who the client is.
		for _, client := range []string{"203.0.113.1", "203.0.113.2"} {
			for i := range 2 {
				xff := fmt.Sprintf("6.6.6.%d, %s, 10.1.2.3", i, client)
				mustStatus(t, h.do(t, http.MethodGet, "/"+slug, nil, "X-Forwarded-For", xff), http.StatusFound)
			}
			mustProblem(t, h.do(t, http.MethodGet, "/"+slug, nil, "X-Forwarded-For", "9.9.9.9, "+client), http.StatusTooManyRequests)
		}
	})
}

func TestAPIRateLimitPerKey(t *testing.T) {
	t.Parallel()
	h := startHop(t, func(cfg map[string]any) { cfg["rate_limit_api"] = "3-M" })
	for range 3 {
		mustStatus(t, h.api(t, http.MethodGet, "/links", nil), http.StatusOK)
	}
	r := h.api(t, http.MethodGet, "/links", nil)
	if p := mustProblem(t, r, http.StatusTooManyRequests); !strings.Contains(fmt.Sprint(p["detail"]), "more than 3 requests per minute with this API key") {
		t.Fatalf("429 detail %q", p["detail"])
	}
	// Redirects are limited separately.
	mustProblem(t, h.do(t, http.MethodGet, "/unknown-x", nil), http.StatusNotFound)
}

func TestHealthReportsComponents(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	r := h.do(t, http.MethodGet, "/health", nil)
	mustStatus(t, r, http.StatusOK)
	j := r.JSON(t)
	checks := j["checks"].(map[string]any)
	for _, c := range []string{"postgres", "redis", "ingest", "aggregator"} {
		if _, ok := checks[c]; !ok {
			t.Fatalf("health lacks %q: %s", c, r.Body)
		}
	}
	if j["status"] != "ok" {
		t.Fatalf("status %v: %s", j["status"], r.Body)
	}
	// hop health (the container health check) agrees.
	var out syncBuffer
	if err := Run(t.Context(), []string{"health", "--url", h.URL}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatalf("hop health: %v (%s)", err, out.String())
	}
	if err := Run(t.Context(), []string{"health", "--url", "http://127.0.0.1:1"}, func(string) string { return "" }, &out, &out); err == nil {
		t.Fatal("hop health succeeded with nothing listening")
	}
}

// SIGTERM under load: in-flight requests complete, the publisher flushes, the consumer
// commits, Run returns nil — and after a restart every answered redirect is counted.
func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	rdb := testenv.NewRedis(t)
	cfg := testConfig(t, db, rdb)
	h := startWith(t, db, rdb, cfg)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/term"})["slug"].(string)

	answered, stopLoad := h.loadRedirectsCounting(slug, 16)
	testenv.Eventually(t, 30*time.Second, "load under way", func() bool { return answered.Load() >= 500 })
	start := time.Now()
	if err := h.Stop(); err != nil {
		t.Fatalf("Run returned %v after SIGTERM", err)
	}
	took := time.Since(start)
	n := stopLoad()
	if n == 0 {
		t.Fatal("no redirect was answered")
	}
	t.Logf("answered %d redirects; shutdown took %s", n, took)

	// Anything still in the stream is durable in Redis; a restart ingests it.
	h2 := startWith(t, db, rdb, cfg)
	h2.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"].(float64) >= float64(n) })
	h2.waitSettled(t)
	var raw int64
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM click_logs").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	s := h2.waitStats(t, slug, func(map[string]any) bool { return true })
	if raw != n || s["total_clicks"] != float64(n) {
		t.Fatalf("answered %d, stored %d, counted %v", n, raw, s["total_clicks"])
	}
}

// Three instances on one database and Redis behave as one service.
func TestMultipleInstances(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	rdb := testenv.NewRedis(t)
	var hs []*instance
	for i := range 3 {
		cfg := testConfig(t, db, rdb)
		cfg["rate_limit_redirect"] = "50-M"
		cfg["trusted_proxies"] = []string{"127.0.0.1/32"} // the limit section below poses as fresh clients
		cfg["consumer_name"] = fmt.Sprintf("instance-%d", i)
		hs = append(hs, startWith(t, db, rdb, cfg))
	}
	a, b, c := hs[0], hs[1], hs[2]
	slug := a.createLink(t, map[string]any{"url": "https://example.com/v1"})["slug"].(string)
	// Requests with Go's user agent are bot clicks; every one answered 302 is counted.
	bots := 0
	botGet := func(h *instance) response {
		r := h.do(t, http.MethodGet, "/"+slug, nil)
		if r.Status == http.StatusFound {
			bots++
		}
		return r
	}
	for _, h := range hs {
		if r := botGet(h); r.Status != http.StatusFound || r.Header.Get("Location") != "https://example.com/v1" {
			t.Fatalf("%s: %d %s", h.URL, r.Status, r.Header.Get("Location"))
		}
	}
	mustStatus(t, b.api(t, http.MethodPatch, "/links/"+slug, map[string]any{"url": "https://example.com/v2"}), http.StatusOK)
	for _, h := range hs {
		testenv.Eventually(t, 10*time.Second, "the change to reach every instance", func() bool {
			return botGet(h).Header.Get("Location") == "https://example.com/v2"
		})
	}

	// Clicks spread over all instances are counted once, by one aggregator.
	const perInstance = 10
	for _, h := range hs {
		for range perInstance {
			mustStatus(t, h.do(t, http.MethodGet, "/"+slug, nil, "User-Agent", "Mozilla/5.0 (X11; Linux) Firefox/121.0", "X-Forwarded-For", "198.51.100.7"), http.StatusFound)
		}
	}
	c.waitStats(t, slug, func(s map[string]any) bool {
		return s["total_clicks"].(float64)+s["bot_clicks"].(float64) >= float64(3*perInstance+bots)
	})
	for _, h := range hs {
		h.waitSettled(t)
	}
	s := c.waitStats(t, slug, func(map[string]any) bool { return true })
	if s["total_clicks"] != float64(3*perInstance) || s["bot_clicks"] != float64(bots) {
		t.Fatalf("counted %v humans, %v bots; want %d and %d", s["total_clicks"], s["bot_clicks"], 3*perInstance, bots)
	}

	mustStatus(t, c.api(t, http.MethodDelete, "/links/"+slug, nil), http.StatusNoContent)
	for _, h := range hs {
		testenv.Eventually(t, 10*time.Second, "the change to reach every instance", func() bool { return h.do(t, http.MethodGet, "/"+slug, nil).Status == http.StatusGone })
	}

	// The redirect limit (50 per minute per client) is shared by all instances: a fresh
	// client spends some across all three, reads what is left from one, then spends more
	// than that across all three. The limiter fails open: a Redis call slower than 20 ms
	// (a loaded test machine) is counted in that instance's memory instead, and then the
	// count is rightly not shared. Such an attempt proves nothing either way, so it is
	// repeated as another client; an attempt without fallbacks must be exact.
	fallbacks := func() (n float64) {
		for _, h := range hs {
			v, _ := strconv.ParseFloat(metricValue(string(h.do(t, http.MethodGet, "/metrics", nil).Body), `hop_ratelimit_fallback_total{limiter="redirect"}`), 64)
			n += v
		}
		return n
	}
	for attempt := 1; ; attempt++ {
		ip := fmt.Sprintf("203.0.113.%d", attempt)
		before := fallbacks()
		for i := range 3 * perInstance {
			hs[i%3].do(t, http.MethodGet, "/"+slug, nil, "X-Forwarded-For", ip)
		}
		r := a.do(t, http.MethodGet, "/"+slug, nil, "X-Forwarded-For", ip)
		left, err := strconv.Atoi(r.Header.Get("X-RateLimit-Remaining"))
		if err != nil {
			t.Fatalf("X-RateLimit-Remaining %q: %v", r.Header.Get("X-RateLimit-Remaining"), err)
		}
		allowed := 0
		for i := range left + 6 {
			if hs[i%3].do(t, http.MethodGet, "/"+slug, nil, "X-Forwarded-For", ip).Status != http.StatusTooManyRequests {
				allowed++
			}
		}
		if fallbacks() != before {
			if attempt == 5 {
				t.Fatal("the rate limiter fell back to memory in all 5 attempts: Redis too slow to test sharing")
			}
			continue
		}
		if want := 50 - 3*perInstance - 1; left != want {
			t.Fatalf("remaining %d after %d redirects across instances, want %d: the count is not shared", left, 3*perInstance+1, want)
		}
		if allowed != left {
			t.Fatalf("%d more redirects allowed across instances, want %d", allowed, left)
		}
		break
	}
}

// The stats handler holds rollups within 3/8 of the soft memory limit, so an operator
// who raises GOMEMLIMIT holds more links.
func TestHeldStatsBytesFollowsMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	for _, c := range []struct{ limit, want int64 }{
		{64 << 20, 24 << 20},
		{512 << 20, 192 << 20},
		{math.MaxInt64, 0}, // no limit: the handler's default
	} {
		debug.SetMemoryLimit(c.limit)
		if got := heldStatsBytes(); int64(got) != c.want {
			t.Errorf("limit %d: %d bytes, want %d", c.limit, got, c.want)
		}
	}
}
