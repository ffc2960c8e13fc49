package app

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hop-dev/hop/internal/browsertest"
)

// Branded domains in the dashboard as a person uses them, in headless Chromium
// against a real hop: add a domain, create a link on it with a slug the default domain
// also has, filter the list by domain, open each link's page (each shows its own
// target and QR code), edit the domain's fallbacks, try to remove it while it has
// links (refused with the API's message), then delete its link and remove it. Every
// domain page fits 1280 and 390 px screens, and no page logs a console error or a
// CSP violation.
func TestDomainPagesInChromium(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.createLink(t, map[string]any{"url": "https://example.com/default-target", "slug": "same"})
	b := browsertest.New(t)
	text := func(sel string) string {
		t.Helper()
		return strings.TrimSpace(browsertest.Value(t, b, chromedp.Text(chromedp.CSS(sel))))
	}
	listed := func() string {
		t.Helper()
		return browsertest.Value(t, b, chromedp.Evaluate[string](`[...document.querySelectorAll("table.links tbody tr")].map(r => r.querySelector("a.slug").textContent + "@" + r.querySelector('td[data-label="Domain"]').textContent).join(" ")`))
	}
	b.Run(t, chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(h.URL+"/dashboard/login"), chromedp.WaitVisible(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="api_key"]`), h.Key),
		chromedp.Submit(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.WaitVisible(chromedp.ID("new-link")))
	// With only the default domain there is nothing to pick.
	if n := browsertest.Value(t, b, chromedp.Evaluate[int](`document.querySelectorAll('select[name="domain"]').length`)); n != 0 {
		t.Errorf("the overview offers %d domain selects with one domain", n)
	}

	// Add a domain from the navigation.
	b.Run(t, chromedp.Click(chromedp.CSS(`.top nav a[href="/dashboard/domains"]`)), chromedp.WaitVisible(chromedp.CSS("table.domains")))
	if s := text(`table.domains td[data-label="Host"]`); s != "hop.test default" {
		t.Errorf("the default domain is listed as %q", s)
	}
	b.Run(t, chromedp.Click(chromedp.CSS(`a[href="/dashboard/domains/new"]`)), chromedp.WaitVisible(chromedp.CSS(`.domain-form input[name="host"]`)),
		chromedp.SendKeys(chromedp.CSS(`.domain-form input[name="host"]`), "Go.Example.com"),
		chromedp.SendKeys(chromedp.CSS(`.domain-form input[name="not_found_redirect"]`), "https://example.com/nf"),
		chromedp.Click(chromedp.CSS(`.domain-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	if s := text(".notice"); !strings.HasPrefix(s, "Domain go.example.com added.") {
		t.Errorf("after add: %q", s)
	}
	d := h.api(t, http.MethodGet, "/domains/go.example.com", nil).JSON(t)
	if d["base_url"] != "https://go.example.com" || d["not_found_redirect"] != "https://example.com/nf" {
		t.Errorf("added through the dashboard: %v", d)
	}

	// A link on it with the default domain's slug, from the create form's picker.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/new"), chromedp.WaitVisible(chromedp.CSS(`.link-form select[name="domain"]`)))
	if v := browsertest.Value(t, b, chromedp.Value(chromedp.CSS(`.link-form select[name="domain"]`))); v != "" {
		t.Errorf("the picker preselects %q, want the default domain", v)
	}
	b.Run(t, chromedp.SetValue(chromedp.CSS(`.link-form select[name="domain"]`), "go.example.com"),
		chromedp.SendKeys(chromedp.CSS(`.link-form input[name="url"]`), "https://example.com/branded-target"),
		chromedp.SendKeys(chromedp.CSS(`.link-form input[name="slug"]`), "same"),
		chromedp.Click(chromedp.CSS(`.link-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	if v := browsertest.Value(t, b, chromedp.Value(chromedp.ID("short-url"))); v != "https://go.example.com/same" {
		t.Errorf("the new link's short URL is %q", v)
	}
	if l := h.api(t, http.MethodGet, "/links/same?domain=go.example.com", nil).JSON(t); l["original_url"] != "https://example.com/branded-target" {
		t.Errorf("created on the domain: %v", l)
	}

	// The list names each link's domain and filters by it.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(`form.filters select[name="domain"]`)))
	if got := listed(); got != "same@go.example.com same@hop.test" {
		t.Errorf("the list shows %q", got)
	}
	for _, c := range []struct{ domain, want, target string }{
		{"go.example.com", "same@go.example.com", "https://example.com/branded-target"},
		{"hop.test", "same@hop.test", "https://example.com/default-target"},
	} {
		b.Run(t, chromedp.Navigate(h.URL+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(`form.filters select[name="domain"]`)),
			chromedp.SetValue(chromedp.CSS(`form.filters select[name="domain"]`), c.domain),
			chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.CSS(`form.filters a[href="/dashboard"]`)))
		if got := listed(); got != c.want {
			t.Errorf("filtered by %s: %q", c.domain, got)
		}
		// Each link's page, opened from the filtered list, is its own: its target, its
		// short URL's QR code drawn, and its links carrying its domain.
		b.Run(t, chromedp.Click(chromedp.CSS(`table.links a.slug`)), chromedp.WaitVisible(chromedp.CSS(".link-info .target a")),
			chromedp.Poll[chromedp.Void](`(i => i && i.complete && i.naturalWidth > 0)(document.querySelector("img.qr"))`))
		if got := text(".link-info .target a"); got != c.target {
			t.Errorf("%s's page shows target %q, want %q", c.domain, got, c.target)
		}
		edit := browsertest.Value(t, b, chromedp.Evaluate[string](`document.querySelector('a[href*="/edit"]').getAttribute("href")`))
		if want := map[bool]string{true: "/dashboard/links/same/edit?domain=go.example.com", false: "/dashboard/links/same/edit"}[c.domain == "go.example.com"]; edit != want {
			t.Errorf("%s's edit link is %q, want %q", c.domain, edit, want)
		}
	}

	// Edit the domain's fallbacks.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/domains"), chromedp.WaitVisible(chromedp.CSS(`a[href="/dashboard/domains/go.example.com/edit"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/dashboard/domains/go.example.com/edit"]`)), chromedp.WaitVisible(chromedp.CSS(`.domain-form input[name="root_redirect"]`)),
		chromedp.SendKeys(chromedp.CSS(`.domain-form input[name="root_redirect"]`), "https://example.com/root"),
		chromedp.Clear(chromedp.CSS(`.domain-form input[name="not_found_redirect"]`)),
		chromedp.Click(chromedp.CSS(`.domain-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	d = h.api(t, http.MethodGet, "/domains/go.example.com", nil).JSON(t)
	if d["root_redirect"] != "https://example.com/root" || d["not_found_redirect"] != nil || d["links"] != 1.0 {
		t.Errorf("edited through the dashboard: %v", d)
	}

	// Removing it while it has a link is refused with the API's message.
	b.Run(t, chromedp.Click(chromedp.CSS(`a[href="/dashboard/domains/go.example.com/delete"]`)), chromedp.WaitVisible(chromedp.CSS("button.danger")))
	if s := text("main .card .error"); !strings.Contains(s, "It still has 1 link") {
		t.Errorf("the confirmation says %q", s)
	}
	b.Run(t, chromedp.Click(chromedp.CSS("button.danger")), chromedp.WaitVisible(chromedp.CSS(".error-page")))
	if h1, msg := text(".error-page h1"), text(".error-page p"); h1 != "409 · Conflict" || !strings.Contains(msg, "still has 1 links") {
		t.Errorf("removing a domain with links answered %q: %q", h1, msg)
	}
	mustStatus(t, h.api(t, http.MethodGet, "/domains/go.example.com", nil), http.StatusOK)

	// At 1280 and 390 px every domain page fits the screen.
	for _, vw := range []struct {
		width int
		opts  []chromedp.EmulateViewportOption
	}{{1280, nil}, {390, []chromedp.EmulateViewportOption{chromedp.EmulateMobile}}} {
		b.Run(t, chromedp.EmulateViewport(int64(vw.width), 844, vw.opts...))
		for _, p := range []string{"/dashboard/domains", "/dashboard/domains/new", "/dashboard/domains/go.example.com/edit",
			"/dashboard/domains/go.example.com/delete", "/dashboard", "/dashboard?domain=go.example.com", "/dashboard/new",
			"/dashboard/links/same?domain=go.example.com", "/dashboard/webhooks/new"} {
			b.Run(t, chromedp.Navigate(h.URL+p), chromedp.WaitVisible(chromedp.CSS("h1")))
			if w := browsertest.Value(t, b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > vw.width {
				t.Errorf("%s is %d px wide on a %d px screen", p, w, vw.width)
			}
		}
	}

	// Delete its link (the default domain's same stays), then the domain goes.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/links/same/delete?domain=go.example.com"), chromedp.WaitVisible(chromedp.CSS("button.danger")),
		chromedp.Click(chromedp.CSS("button.danger")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	mustStatus(t, h.api(t, http.MethodGet, "/links/same", nil), http.StatusOK)
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/domains/go.example.com/delete"), chromedp.WaitVisible(chromedp.CSS("button.danger")),
		chromedp.Click(chromedp.CSS("button.danger")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if s := text(".notice"); s != "Domain go.example.com removed." {
		t.Errorf("after removing: %q", s)
	}
	mustStatus(t, h.api(t, http.MethodGet, "/domains/go.example.com", nil), http.StatusNotFound)

	if p := b.Problems(); len(p) != 0 {
		t.Fatalf("console errors or CSP violations:\n%s", strings.Join(p, "\n"))
	}
}
