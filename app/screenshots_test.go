package app

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/hop-dev/hop/internal/browsertest"
)

// demoLinks are the seeded demo instance's links: slug, target, tags and how popular
// each is (clicks on an average day).
var demoLinks = []struct {
	slug, url string
	tags      []string
	daily     float64
}{
	{"spring-sale", "https://shop.example.com/collections/spring?utm_campaign=spring", []string{"launch", "shop"}, 420},
	{"get-started", "https://docs.example.com/getting-started/installation", []string{"docs"}, 260},
	{"WiIwev", "https://blog.example.com/2026/11/how-we-cut-our-cloud-bill-in-half", []string{"blog"}, 180},
	{"podcast-42", "https://podcast.example.com/episodes/42-building-in-public", []string{"podcast"}, 95},
	{"careers", "https://jobs.example.com/openings?team=engineering", []string{"hiring"}, 60},
	{"newsletter-nov", "https://newsletter.example.com/issues/november-2026", []string{"newsletter", "mail"}, 140},
	{"webinar", "https://events.example.com/webinars/scaling-postgres", []string{"events"}, 45},
	{"O0lI-promo", "https://shop.example.com/promo/black-friday", []string{"shop"}, 40},
	{"status", "https://status.example.com", nil, 12},
	{"press-kit", "https://example.com/press/hop-press-kit.zip", []string{"press"}, 8},
}

// demoShares are the breakdowns' values and weights, roughly what a real audience has.
var demoShares = map[string][]struct {
	value  string
	weight float64
}{
	"country": {{"US", 34}, {"DE", 14}, {"GB", 11}, {"FR", 8}, {"IN", 8}, {"BR", 6}, {"CA", 5}, {"NL", 4}, {"JP", 4}, {"ES", 3}, {"SE", 3}},
	"referer": {{"(direct)", 38}, {"news.ycombinator.com", 17}, {"t.co", 12}, {"www.linkedin.com", 9}, {"mail.google.com", 8}, {"www.reddit.com", 7}, {"duckduckgo.com", 5}, {"www.bing.com", 4}},
	"browser": {{"Chrome", 52}, {"Safari", 27}, {"Firefox", 9}, {"Edge", 7}, {"Samsung Internet", 5}},
	"os":      {{"Android", 34}, {"iOS", 27}, {"Windows", 21}, {"macOS", 13}, {"Linux", 5}},
	"device":  {{"mobile", 58}, {"desktop", 38}, {"tablet", 4}},
}

// TestScreenshots writes the dashboard's screenshots for the docs from a seeded demo
// instance: `make screenshots` runs it with HOP_SCREENSHOTS set to docs/screenshots.
// It is a tool, not a check, so without that variable it has nothing to do.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("HOP_SCREENSHOTS")
	if dir == "" {
		t.Skip("set HOP_SCREENSHOTS=DIR (make screenshots) to write the dashboard's screenshots")
	}
	h := startHop(t, func(cfg map[string]any) { cfg["base_url"] = "https://hop.example" })
	seedDemo(t, h)

	b := browsertest.New(t)
	shot := func(name, path, waitFor string, width, height int64, dark bool) {
		t.Helper()
		scheme := "light"
		if dark {
			scheme = "dark"
		}
		opts := []chromedp.EmulateViewportOption{}
		if width < 600 {
			opts = append(opts, chromedp.EmulateMobile)
		}
		b.Run(t, chromedp.EmulateViewport(width, height, opts...),
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
				return err
			}),
			chromedp.Navigate(h.URL+path), chromedp.WaitVisible(chromedp.CSS(waitFor)))
		png := browsertest.Value(t, b, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d KiB)", filepath.Join(dir, name+".png"), len(png)>>10)
	}
	b.Run(t, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(h.URL+"/dashboard/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="api_key"]`), h.Key),
		chromedp.Click(chromedp.CSS(`.login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("new-link")))
	shot("overview", "/dashboard", "#new-link", 1280, 800, false)
	shot("link", "/dashboard/links/spring-sale", ".breakdowns", 1280, 800, false)
	shot("create", "/dashboard/new", ".link-form", 1280, 800, false)
	shot("mobile", "/dashboard/links/WiIwev", ".breakdowns", 390, 844, false)
	shot("dark", "/dashboard", "#new-link", 1280, 800, true)
	if p := b.Problems(); len(p) != 0 {
		t.Fatalf("console errors or CSP violations: %v", p)
	}
}

// seedDemo creates the demo links through the API and writes 30 days of rollups for
// them, as the aggregator would have: a weekly rhythm, a launch peak, some noise.
func seedDemo(t *testing.T, h *instance) {
	t.Helper()
	ctx := context.Background()
	for _, l := range demoLinks {
		body := map[string]any{"url": l.url, "slug": l.slug, "tags": l.tags}
		switch l.slug {
		case "webinar":
			body["max_clicks"] = 5000
		case "O0lI-promo":
			body["max_clicks"] = 500
		case "podcast-42":
			body["password"] = "listen-closely"
		}
		h.createLink(t, body)
	}
	rng := rand.New(rand.NewPCG(20, 26))
	today := time.Now().UTC().Truncate(24 * time.Hour)
	tx, err := h.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, l := range demoLinks {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT id FROM links WHERE slug = $1`, l.slug).Scan(&id); err != nil {
			t.Fatal(err)
		}
		var total, bots int64
		for d := 29; d >= 0; d-- {
			day := today.AddDate(0, 0, -d)
			f := 1.0
			switch day.Weekday() {
			case time.Saturday, time.Sunday:
				f = 0.55
			}
			if l.slug == "spring-sale" && d >= 8 && d <= 11 {
				f *= 2.6 // the launch
			}
			if d == 0 {
				f *= 0.6 // today is not over
			}
			clicks := int64(l.daily * f * (0.75 + 0.5*rng.Float64()))
			if l.slug == "O0lI-promo" && d < 6 {
				clicks = 0 // used up
			}
			uniques, botClicks := clicks*7/10, clicks/25
			total += clicks
			bots += botClicks
			if _, err := tx.Exec(ctx, `INSERT INTO daily_stats (link_id, day, clicks, unique_visitors, bot_clicks) VALUES ($1, $2, $3, $4, $5)`,
				id, day, clicks, uniques, botClicks); err != nil {
				t.Fatal(err)
			}
			for dim, shares := range demoShares {
				var sum float64
				for _, s := range shares {
					sum += s.weight
				}
				for _, s := range shares {
					n := int64(float64(clicks) * s.weight / sum * (0.8 + 0.4*rng.Float64()))
					if n == 0 {
						continue
					}
					if _, err := tx.Exec(ctx, `INSERT INTO dimension_stats (link_id, day, dimension, value, clicks) VALUES ($1, $2, $3, $4, $5)`,
						id, day, dim, s.value, n); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		// The last 24 hours, for the hourly charts: quiet nights, busy afternoons (UTC).
		now := time.Now().UTC().Truncate(time.Hour)
		for hb := 23; hb >= 0; hb-- {
			hour := now.Add(-time.Duration(hb) * time.Hour)
			f := 0.3 + 1.4*math.Max(0, math.Sin(math.Pi*float64(hour.Hour()-6)/16))
			clicks := int64(l.daily / 24 * f * (0.7 + 0.6*rng.Float64()))
			if l.slug == "O0lI-promo" || clicks == 0 {
				continue
			}
			if _, err := tx.Exec(ctx, `INSERT INTO hourly_stats (link_id, hour, clicks, bot_clicks) VALUES ($1, $2, $3, $4)`,
				id, hour, clicks, clicks/25); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE links SET total_clicks = $2::bigint,
			clicks_used = CASE WHEN max_clicks IS NULL THEN clicks_used ELSE least(max_clicks, $2::bigint + $3::bigint) END WHERE id = $1`, id, total, bots); err != nil {
			t.Fatal(err)
		}
	}
	// One link that has expired, for its badge.
	if _, err := tx.Exec(ctx, `UPDATE links SET expires_at = now() - interval '2 days' WHERE slug = 'press-kit'`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, h.api(t, http.MethodGet, "/links/spring-sale", nil), http.StatusOK)
}
