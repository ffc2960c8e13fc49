package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/hop-dev/hop/internal/browsertest"
)

// dashPages are the dashboard's pages for a link with this slug, for the width checks.
func dashPages(slug string) []string {
	return []string{"/dashboard", "/dashboard/new", "/dashboard/links/" + slug, "/dashboard/links/" + slug + "/edit",
		"/dashboard/links/" + slug + "/delete", "/dashboard/no-such-page", "/dashboard/links/no-such-link"}
}

// humanGet follows a short link once as a browser would be counted (a desktop
// Firefox user agent), without following the redirect, and returns the status.
func humanGet(t *testing.T, h *instance, slug string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/"+slug, nil)
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The dashboard as a person uses it, in headless Chromium at 1280 px: sign in with a
// wrong key and the right one; create a link with every option, edit every option,
// follow it for real and see the clicks; search and filter by tag; a used-up link's
// badge and QR placeholder; delete with a confirmation; a forged form refused; sign
// out. Then every page at 390 px fits the screen, its chart text is at least 11 px and
// keyboard focus is visible. No page logs a console error or a CSP violation.
func TestDashboardInChromium(t *testing.T) {
	t.Parallel()
	// No base_url: the dashboard must show short URLs on the origin it is visited on.
	h := startHop(t, func(cfg map[string]any) { delete(cfg, "base_url") })
	b := browsertest.New(t)
	text := func(sel string) string {
		t.Helper()
		return strings.TrimSpace(browsertest.Value(t, b, chromedp.Text(chromedp.CSS(sel))))
	}
	b.Run(t, chromedp.EmulateViewport(1280, 900))

	// Sign in: signed out, the dashboard asks for a key; a wrong one is refused.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="api_key"]`), "hop_wrong_key_0000000000000"),
		chromedp.Click(chromedp.CSS(`.login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".login .error")))
	if msg := text(".login .error"); msg != "This API key is not valid or has been revoked." {
		t.Fatalf("wrong key: %q", msg)
	}
	b.Run(t, chromedp.SendKeys(chromedp.CSS(`input[name="api_key"]`), h.Key),
		chromedp.Click(chromedp.CSS(`.login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("new-link")))

	// Create with every option.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/new"), chromedp.WaitVisible(chromedp.CSS(".link-form")),
		chromedp.SendKeys(chromedp.CSS(`.link-form input[name="url"]`), "https://example.com/spring?ref=dash"),
		chromedp.SendKeys(chromedp.CSS(`.link-form input[name="tags"]`), "launch, mail"),
		chromedp.SetValue(chromedp.CSS(`.link-form input[name="expires_at"]`), "2031-05-06T07:08"),
		chromedp.SendKeys(chromedp.CSS(`.link-form input[name="max_clicks"]`), "5"),
		chromedp.SendKeys(chromedp.CSS(`.link-form input[name="expired_url"]`), "https://example.com/over"),
		chromedp.SetValue(chromedp.CSS(`.link-form select[name="redirect_status"]`), "307"),
		chromedp.Click(chromedp.CSS(`.link-form input[type="checkbox"][name="forward_query"]`)),
		chromedp.SendKeys(chromedp.CSS(`.link-form input[name="slug"]`), "Wl0O-spring"),
		chromedp.SendKeys(chromedp.CSS(`.link-form input[name="password"]`), "correct horse"),
		chromedp.Click(chromedp.CSS(`.link-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	const slug = "Wl0O-spring"
	if n := text(".notice"); n != "Link created." {
		t.Fatalf("after create: %q", n)
	}
	l := h.api(t, http.MethodGet, "/links/"+slug, nil).JSON(t)
	want := map[string]any{"original_url": "https://example.com/spring?ref=dash", "expires_at": "2031-05-06T07:08:00Z",
		"max_clicks": 5.0, "expired_url": "https://example.com/over", "redirect_status": 307.0, "forward_query": false,
		"has_password": true, "status": "active"}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("created %s = %v, want %v", k, l[k], v)
		}
	}
	if tags := fmt.Sprint(l["tags"]); tags != "[launch mail]" {
		t.Errorf("created tags %s", tags)
	}
	if v := browsertest.Value(t, b, chromedp.Value(chromedp.ID("short-url"))); v != h.URL+"/"+slug {
		t.Errorf("short URL shown as %q, want the visited origin's %q", v, h.URL+"/"+slug)
	}
	if s := text(`[data-field="limit"]`); s != "0 of 5 used" {
		t.Errorf("limit shown as %q", s)
	}
	if s := text(".title-row .badge"); s != "active" {
		t.Errorf("badge %q", s)
	}
	if font := browsertest.Value(t, b, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("h1.slug")).fontFamily`)); !strings.Contains(font, "Mono") {
		t.Errorf("slug font %q is not a monospace face", font)
	}
	// Both QR downloads answer images.
	for format, ctype := range map[string]string{"": "image/png", "?format=svg": "image/svg+xml"} {
		r := h.do(t, http.MethodGet, "/"+slug+"/qr"+format, nil)
		if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), ctype) {
			t.Errorf("QR %q: %d %s", format, r.Status, r.Header.Get("Content-Type"))
		}
	}

	// Edit every option: new target and tags, no expiry, a bigger limit, no password,
	// 301, query forwarding back on, no expired_url.
	b.Run(t, chromedp.Click(chromedp.CSS(`a[href$="/edit"]`)), chromedp.WaitVisible(chromedp.CSS(".link-form")))
	if v := browsertest.Value(t, b, chromedp.Value(chromedp.CSS(`.link-form input[name="expires_at"]`))); v != "2031-05-06T07:08" {
		t.Errorf("edit form shows expiry %q", v)
	}
	b.Run(t,
		chromedp.SetValue(chromedp.CSS(`.link-form input[name="url"]`), "https://example.com/summer"),
		chromedp.SetValue(chromedp.CSS(`.link-form input[name="tags"]`), "launch"),
		chromedp.Clear(chromedp.CSS(`.link-form input[name="expires_at"]`)),
		chromedp.SetValue(chromedp.CSS(`.link-form input[name="max_clicks"]`), "100"),
		chromedp.Clear(chromedp.CSS(`.link-form input[name="expired_url"]`)),
		chromedp.SetValue(chromedp.CSS(`.link-form select[name="redirect_status"]`), "301"),
		chromedp.Click(chromedp.CSS(`.link-form input[type="checkbox"][name="forward_query"]`)),
		chromedp.Click(chromedp.CSS(`.link-form input[name="remove_password"]`)),
		chromedp.Click(chromedp.CSS(`.link-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	if n := text(".notice"); n != "Changes saved." {
		t.Fatalf("after edit: %q", n)
	}
	l = h.api(t, http.MethodGet, "/links/"+slug, nil).JSON(t)
	want = map[string]any{"original_url": "https://example.com/summer", "expires_at": nil, "max_clicks": 100.0,
		"expired_url": nil, "redirect_status": 301.0, "forward_query": true, "has_password": false}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("edited %s = %v, want %v", k, l[k], v)
		}
	}
	if tags := fmt.Sprint(l["tags"]); tags != "[launch]" {
		t.Errorf("edited tags %s", tags)
	}

	// Real redirects, then the link page with their clicks.
	for range 3 {
		if s := humanGet(t, h, slug); s != http.StatusMovedPermanently {
			t.Fatalf("redirect answered %d", s)
		}
	}
	h.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"].(float64) == 3 })
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/links/"+slug), chromedp.WaitVisible(chromedp.CSS(`[data-total="clicks"]`)))
	for sel, want := range map[string]string{`[data-total="clicks"]`: "3", `[data-total="link-clicks"]`: "3", `[data-field="limit"]`: "3 of 100 used"} {
		if got := text(sel); got != want {
			t.Errorf("link page %s shows %q, want %q", sel, got, want)
		}
	}
	// The last 24 hours, on the link page and the overview: 24 bars, the three clicks in
	// the last one (the current hour).
	for _, p := range []string{"/dashboard/links/" + slug, "/dashboard"} {
		b.Run(t, chromedp.Navigate(h.URL+p), chromedp.WaitVisible(chromedp.CSS(".hourly svg.wide")))
		bars := browsertest.Value(t, b, chromedp.Evaluate[[]string](`[...document.querySelectorAll(".hourly svg.wide rect.bar title")].map(e => e.textContent)`))
		if len(bars) != 24 || !strings.Contains(bars[23], ": 3 clicks, 0 bot clicks") {
			t.Errorf("%s: hourly bars %q, want 24 with the 3 clicks in the last", p, bars)
		}
	}

	// A second link from the overview's quick form; then search and tag filter.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard"), chromedp.WaitVisible(chromedp.ID("new-link")),
		chromedp.SendKeys(chromedp.CSS(`#new-link input[name="url"]`), "https://example.org/other"),
		chromedp.SendKeys(chromedp.CSS(`#new-link input[name="slug"]`), "other-link"),
		chromedp.SendKeys(chromedp.CSS(`#new-link input[name="tags"]`), "misc"),
		chromedp.Click(chromedp.CSS(`#new-link button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	listed := func() string {
		t.Helper()
		return browsertest.Value(t, b, chromedp.Evaluate[string](`[...document.querySelectorAll("table.links a.slug")].map(a => a.textContent).join(" ")`))
	}
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS("table.links")),
		chromedp.SendKeys(chromedp.CSS(`form.filters input[name="q"]`), "spring"),
		chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form.filters a[href="/dashboard"]`)))
	if got := listed(); got != slug {
		t.Errorf("search for spring lists %q", got)
	}
	if w := browsertest.Value(t, b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 1280 {
		t.Errorf("the overview is %d px wide on a 1280 px screen", w)
	}
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(`table.links a.tag[href="/dashboard?tag=misc"]`)),
		chromedp.Click(chromedp.CSS(`table.links a.tag[href="/dashboard?tag=misc"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form.filters a[href="/dashboard"]`)))
	if got := listed(); got != "other-link" {
		t.Errorf("tag misc lists %q", got)
	}

	// A used-up link: its badge, and a placeholder instead of a QR code.
	used := h.createLink(t, map[string]any{"url": "https://example.com/once", "slug": "once-only", "max_clicks": 1})["slug"].(string)
	if s := humanGet(t, h, used); s != http.StatusFound {
		t.Fatalf("first click answered %d", s)
	}
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/links/"+used), chromedp.WaitVisible(chromedp.CSS(".qr-placeholder")))
	if s := text(".title-row .badge"); s != "limit reached" {
		t.Errorf("used-up badge %q", s)
	}
	if n := browsertest.Value(t, b, chromedp.Evaluate[int](`document.querySelectorAll("img.qr").length`)); n != 0 {
		t.Errorf("a used-up link shows %d QR images", n)
	}

	// A forged form (a stale CSRF token) is refused and changes nothing.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/links/other-link/delete"), chromedp.WaitVisible(chromedp.CSS("button.danger")),
		chromedp.SetValue(chromedp.CSS(`form.actions input[name="csrf"]`), "forged"),
		chromedp.Click(chromedp.CSS("button.danger")),
		chromedp.WaitVisible(chromedp.CSS(".error-page")))
	if h1 := text(".error-page h1"); h1 != "403 · Forbidden" {
		t.Errorf("forged form answered %q", h1)
	}
	mustStatus(t, h.api(t, http.MethodGet, "/links/other-link", nil), http.StatusOK)

	// Delete, confirmed: the link is gone from the list and its slug answers 410.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/links/other-link"), chromedp.WaitVisible(chromedp.CSS(`a[href$="/delete"]`)),
		chromedp.Click(chromedp.CSS(`a[href$="/delete"]`)), chromedp.WaitVisible(chromedp.CSS("button.danger")),
		chromedp.Click(chromedp.CSS("button.danger")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if n := text(".notice"); n != "Link other-link deleted." {
		t.Errorf("after delete: %q", n)
	}
	if strings.Contains(listed(), "other-link") {
		t.Error("the deleted link is still listed")
	}
	mustStatus(t, h.api(t, http.MethodGet, "/links/other-link", nil), http.StatusGone)

	// At 1280 and 390 px every page fits the screen, even with a long target and many
	// tags, and charts keep 11 px text; then keyboard focus is visible.
	h.createLink(t, map[string]any{"url": "https://example.com/" + strings.Repeat("a-very-long-path-segment/", 12) + "?q=" + strings.Repeat("x", 80),
		"slug": "long-one", "tags": []string{"newsletter", "campaign-2026", "partners", "social", "launch"}, "max_clicks": 100000})
	for _, vw := range []struct {
		width int
		opts  []chromedp.EmulateViewportOption
	}{{1280, nil}, {390, []chromedp.EmulateViewportOption{chromedp.EmulateMobile}}} {
		b.Run(t, chromedp.EmulateViewport(int64(vw.width), 844, vw.opts...))
		for _, p := range append(dashPages(slug), "/dashboard/links/"+used, "/dashboard/links/long-one") {
			b.Run(t, chromedp.Navigate(h.URL+p), chromedp.WaitVisible(chromedp.CSS("h1")))
			w := browsertest.Value(t, b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
			if w > vw.width {
				t.Errorf("%s is %d px wide on a %d px screen", p, w, vw.width)
			}
			// The smallest chart text as drawn: font-size times the SVG's scale.
			px := browsertest.Value(t, b, chromedp.Evaluate[float64](`Math.min(1000, ...[...document.querySelectorAll(".chart svg")].filter(s => s.getBoundingClientRect().width > 0).map(s => s.getBoundingClientRect().width / s.viewBox.baseVal.width * parseFloat(s.getAttribute("font-size"))))`))
			if px < 11 {
				t.Errorf("%s draws chart text at %.1f px on a %d px screen", p, px, vw.width)
			}
			t.Logf("%d px: %s is %d px wide; smallest chart text %.1f px (1000: no chart)", vw.width, p, w, px)
		}
	}
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS("h1")), chromedp.KeyEvent(kb.Tab))
	focus := browsertest.Value(t, b, chromedp.Evaluate[string](`(e => e.className + " " + getComputedStyle(e).outlineStyle + " " + getComputedStyle(e).outlineWidth)(document.activeElement)`))
	if focus != "skip solid 3px" {
		t.Errorf("the first Tab focuses %q, want the skip link with a visible outline", focus)
	}

	// Sign out: the dashboard asks for a key again.
	b.Run(t, chromedp.Click(chromedp.CSS(".logout button")), chromedp.WaitVisible(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.Navigate(h.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(`input[name="api_key"]`)))
	if w := browsertest.Value(t, b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("the sign-in page is %d px wide on a 390 px screen", w)
	}

	if p := b.Problems(); len(p) != 0 {
		t.Fatalf("console errors or CSP violations:\n%s", strings.Join(p, "\n"))
	}
}
