package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

// waitStats polls the link's stats until cond holds (the aggregator runs every 200 ms in
// tests) and returns them.
func (h *instance) waitStats(t testing.TB, slug string, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := h.api(t, http.MethodGet, "/links/"+slug+"/stats", nil)
		mustStatus(t, r, http.StatusOK)
		s := r.JSON(t)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never reached the expected state; last: %s\nlogs:\n%s", r.Body, h.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSettled waits until every click hop has answered is stored and aggregated:
// nothing waits in the stream (or its pending list) or in the local click log, and the
// aggregator has no committed click left behind. Counts read after it are final, so a
// test can assert them exactly instead of sleeping to give a double count the chance
// to show.
func (h *instance) waitSettled(t testing.TB) {
	t.Helper()
	start := time.Now()
	testenv.Eventually(t, 30*time.Second, "ingest drained and every click aggregated", func() bool {
		// /health may answer from a report up to healthEvery old: one made before the
		// caller's last clicks could say all is drained.
		if time.Since(start) <= healthEvery {
			return false
		}
		r := h.api(t, http.MethodGet, "/health", nil)
		var hr struct {
			Checks struct {
				Ingest struct {
					Details struct {
						Mode       string `json:"mode"`
						Pending    int64  `json:"pending"`
						Lag        int64  `json:"lag"`
						LogEntries uint64 `json:"log_entries"`
					} `json:"details"`
				} `json:"ingest"`
				Aggregator struct {
					Details struct {
						LagSeconds float64 `json:"lag_seconds"`
					} `json:"details"`
				} `json:"aggregator"`
			} `json:"checks"`
		}
		if json.Unmarshal(r.Body, &hr) != nil {
			return false
		}
		in, agg := hr.Checks.Ingest.Details, hr.Checks.Aggregator.Details
		drained := in.LogEntries == 0 // without Redis the local log is the stream, and Redis fields say nothing
		if in.Mode != "log" {
			drained = drained && in.Mode != "" && in.Pending == 0 && in.Lag == 0
		}
		return drained && agg.LagSeconds == 0
	})
}

// Every answered redirect is counted exactly once, humans and bots apart, HEAD not at
// all — with Redis (stream + consumer) and without it (in-process queue).
func TestClicksCountedEndToEnd(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"redis", "no-redis"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := startHop(t, func(cfg map[string]any) {
				if mode == "no-redis" {
					cfg["redis_url"] = ""
				}
			})
			slug := h.createLink(t, map[string]any{"url": "https://example.com/counted"})["slug"].(string)
			const humans, bots, heads = 120, 7, 5
			var wg sync.WaitGroup
			errs := make(chan error, humans+bots)
			for i := range humans + bots {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, _ := http.NewRequest(http.MethodGet, h.URL+"/"+slug, nil)
					req.Header.Set("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
					if i < bots {
						req.Header.Set("User-Agent", "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)")
					}
					req.Header.Set("Referer", "https://news.example.org/item")
					resp, err := noRedirect.Do(req)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusFound {
						errs <- fmt.Errorf("status %d", resp.StatusCode)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for range heads {
				mustStatus(t, h.do(t, http.MethodHead, "/"+slug, nil), http.StatusFound)
			}
			h.waitStats(t, slug, func(s map[string]any) bool {
				return s["total_clicks"].(float64)+s["bot_clicks"].(float64) >= humans+bots
			})
			h.waitSettled(t)
			s := h.waitStats(t, slug, func(map[string]any) bool { return true })
			if s["total_clicks"] != float64(humans) || s["bot_clicks"] != float64(bots) {
				t.Fatalf("counted %v humans and %v bots, want %d and %d", s["total_clicks"], s["bot_clicks"], humans, bots)
			}
			if refs := s["referers"].(map[string]any); refs["news.example.org"] != float64(humans) {
				t.Fatalf("referers %v", refs)
			}
			var raw int
			if err := h.DB.Pool.QueryRow(t.Context(), "SELECT count(*) FROM click_logs").Scan(&raw); err != nil {
				t.Fatal(err)
			}
			if raw != humans+bots {
				t.Fatalf("%d raw clicks stored, want %d", raw, humans+bots)
			}
			l := h.api(t, http.MethodGet, "/links/"+slug, nil).JSON(t)
			if l["total_clicks"] != float64(humans) {
				t.Fatalf("links.total_clicks %v, want %d", l["total_clicks"], humans)
			}
			// The full client IP never reaches PostgreSQL.
			var full int
			if err := h.DB.Pool.QueryRow(t.Context(), "SELECT count(*) FROM click_logs WHERE ip = '127.0.0.1'").Scan(&full); err != nil {
				t.Fatal(err)
			}
			if full != 0 {
				t.Fatalf("%d rows store a full IP", full)
			}
		})
	}
}

// A link with max_clicks stops redirecting at once when the limit is reached, bots
// counting like people, while its stats still keep the two apart.
func TestMaxClicks(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/limited", "max_clicks": 3})["slug"].(string)
	for _, ua := range []string{"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"} {
		mustStatus(t, h.do(t, http.MethodGet, "/"+slug, nil, "User-Agent", ua), http.StatusFound)
	}
	mustProblem(t, h.do(t, http.MethodGet, "/"+slug, nil, "User-Agent", "curl/8.5.0"), http.StatusGone)
	h.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"] == float64(2) && s["bot_clicks"] == float64(1) })
}

// A limit set on a link that already has clicks counts them all, those the aggregator
// has not counted yet included: here it is held back by a long interval, so every
// click so far is stored and none counted when the limit comes.
func TestLimitSetLaterCountsClicksNotYetAggregated(t *testing.T) {
	t.Parallel()
	h := startHop(t, func(cfg map[string]any) { cfg["aggregate_interval"] = "1h" })
	slug := h.createLink(t, map[string]any{"url": "https://example.com/later"})["slug"].(string)
	for i := range 6 {
		ua := "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
		if i%3 == 0 {
			ua = "curl/8.5.0"
		}
		mustStatus(t, h.do(t, http.MethodGet, "/"+slug, nil, "User-Agent", ua), http.StatusFound)
	}
	testenv.Eventually(t, 30*time.Second, "the 6 clicks stored", func() bool {
		return count(t, h.DB, "SELECT count(*) FROM click_logs") == 6
	})
	if n := count(t, h.DB, "SELECT total_clicks FROM links"); n != 0 {
		t.Fatalf("%d clicks counted already; the test needs them uncounted", n)
	}
	l := h.api(t, http.MethodPatch, "/links/"+slug, map[string]any{"max_clicks": 8})
	mustStatus(t, l, http.StatusOK)
	if got := l.JSON(t); got["clicks_used"] != float64(6) || got["status"] != "active" {
		t.Fatalf("after setting the limit: %s; want clicks_used 6, active", l.Body)
	}
	for range 2 {
		mustStatus(t, h.do(t, http.MethodGet, "/"+slug, nil), http.StatusFound)
	}
	mustProblem(t, h.do(t, http.MethodGet, "/"+slug, nil), http.StatusGone)
}
