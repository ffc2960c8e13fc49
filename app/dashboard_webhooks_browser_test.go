package app

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hop-dev/hop/internal/browsertest"
)

// Webhook management as a person uses it, in headless Chromium against a real hop and
// a local receiver: create a webhook for one link (the secret shown once, and it signs
// what the receiver gets), see it listed, send a test ping to a receiver that fails
// (the failure is shown with a Retry), retry once the receiver works, delete with a
// confirmation; edit it and give it a new secret on the way. Every webhook page fits 1280 and 390 px screens, and no page logs a
// console error or a CSP violation.
func TestWebhookPagesInChromium(t *testing.T) {
	t.Parallel()
	h := startHop(t, allowPrivate)
	r := newReceiver(t)
	var healthy atomic.Bool
	r.status = func(int64) int {
		if healthy.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	}
	slug := h.createLink(t, map[string]any{"url": "https://example.com/hooked"})["slug"].(string)
	b := browsertest.New(t)
	text := func(sel string) string {
		t.Helper()
		return strings.TrimSpace(browsertest.Value(t, b, chromedp.Text(chromedp.CSS(sel))))
	}
	width := func() int {
		t.Helper()
		return browsertest.Value(t, b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	}
	b.Run(t, chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(h.URL+"/dashboard/login"), chromedp.WaitVisible(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="api_key"]`), h.Key),
		chromedp.Submit(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.WaitVisible(chromedp.ID("new-link")))

	// From the navigation to an empty list, then the create form.
	b.Run(t, chromedp.Click(chromedp.CSS(`.top nav a[href="/dashboard/webhooks"]`)), chromedp.WaitVisible(chromedp.CSS(`a[href="/dashboard/webhooks/new"]`)))
	if s := text("main .card p.muted"); s != "No webhooks yet." {
		t.Errorf("empty list says %q", s)
	}
	b.Run(t, chromedp.Click(chromedp.CSS(`a[href="/dashboard/webhooks/new"]`)), chromedp.WaitVisible(chromedp.CSS(`.webhook-form input[name="url"]`)),
		chromedp.SendKeys(chromedp.CSS(`.webhook-form input[name="url"]`), r.URL+"/hook"),
		chromedp.SendKeys(chromedp.CSS(`.webhook-form input[name="links"]`), slug),
		chromedp.Click(chromedp.CSS(`.webhook-form input[name="include_bots"]`)),
		chromedp.Click(chromedp.CSS(`.webhook-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("secret")))
	secret := browsertest.Value(t, b, chromedp.Value(chromedp.ID("secret")))
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("the result page shows secret %q", secret)
	}
	r.mu.Lock()
	r.secret = secret
	r.mu.Unlock()
	if w := h.api(t, http.MethodGet, "/webhooks", nil); !strings.Contains(string(w.Body), `"links":["`+slug+`"]`) ||
		!strings.Contains(string(w.Body), `"include_bots":true`) || !strings.Contains(string(w.Body), `"tags":null`) {
		t.Fatalf("created through the dashboard: %s", w.Body)
	}

	// Listed, without the secret; its page offers a test ping.
	b.Run(t, chromedp.Navigate(h.URL+"/dashboard/webhooks"), chromedp.WaitVisible(chromedp.CSS("table.webhooks")))
	if s := text(`table.webhooks td[data-label="Links"]`); s != slug {
		t.Errorf("listed links %q", s)
	}
	if s := text(`table.webhooks td[data-label="State"]`); s != "enabled" {
		t.Errorf("listed state %q", s)
	}
	if strings.Contains(browsertest.Value(t, b, chromedp.Evaluate[string](`document.body.innerHTML`)), "whsec_") {
		t.Error("the list shows the secret")
	}
	b.Run(t, chromedp.Click(chromedp.CSS(`table.webhooks a[href^="/dashboard/webhooks/"]`)), chromedp.WaitVisible(chromedp.CSS(`form[action$="/test"] button`)),
		chromedp.Click(chromedp.CSS(`form[action$="/test"] button`)), chromedp.WaitVisible(chromedp.CSS("table.deliveries")))
	if s := text("main > p.error"); s != "Test ping failed (HTTP 500): receiver answered 500." {
		t.Errorf("after a failing ping: %q", s)
	}
	if s := text(`table.deliveries td[data-label="Status"]`); s != "failed" {
		t.Errorf("ping delivery status %q", s)
	}

	// The receiver works again: Retry delivers the same ping.
	healthy.Store(true)
	b.Run(t, chromedp.Click(chromedp.CSS(`form[action$="/retry"] button`)), chromedp.WaitVisible(chromedp.CSS("main > p.notice")))
	if s := text("main > p.notice"); !strings.HasPrefix(s, "Delivery ") || !strings.HasSuffix(s, " delivered (HTTP 200).") {
		t.Errorf("after retry: %q", s)
	}
	for sel, want := range map[string]string{`td[data-label="Status"]`: "delivered", `td[data-label="Attempts"]`: "2", `td[data-label="HTTP"]`: "200", `td[data-label="Kind"]`: "ping"} {
		if s := text("table.deliveries " + sel); s != want {
			t.Errorf("delivery %s = %q, want %q", sel, s, want)
		}
	}
	if n := browsertest.Value(t, b, chromedp.Evaluate[int](`document.querySelectorAll('form[action$="/retry"]').length`)); n != 0 {
		t.Errorf("%d retry buttons after the delivery succeeded", n)
	}
	r.mu.Lock()
	bad := r.badSig
	r.mu.Unlock()
	if n := r.requests.Load(); n != 2 || bad != 0 {
		t.Errorf("the receiver got %d requests, %d with a bad signature; want 2, 0", n, bad)
	}
	id := strings.TrimPrefix(browsertest.Value(t, b, chromedp.Evaluate[string](`location.pathname`)), "/dashboard/webhooks/")

	// Every webhook page fits the screen at 1280 and 390 px, the create result included
	// (a second webhook with a long URL and many tags).
	long := r.URL + "/" + strings.Repeat("a-very-long-path-segment/", 10) + "?token=" + strings.Repeat("x", 60)
	for _, vw := range []struct {
		width int
		opts  []chromedp.EmulateViewportOption
	}{{1280, nil}, {390, []chromedp.EmulateViewportOption{chromedp.EmulateMobile}}} {
		b.Run(t, chromedp.EmulateViewport(int64(vw.width), 844, vw.opts...),
			chromedp.Navigate(h.URL+"/dashboard/webhooks/new"), chromedp.WaitVisible(chromedp.CSS(`.webhook-form input[name="url"]`)),
			chromedp.SendKeys(chromedp.CSS(`.webhook-form input[name="url"]`), long),
			chromedp.SendKeys(chromedp.CSS(`.webhook-form input[name="tags"]`), "newsletter, campaign-2026, partners, social, launch"),
			chromedp.Click(chromedp.CSS(`.webhook-form button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.ID("secret")))
		if w := width(); w > vw.width {
			t.Errorf("the create result is %d px wide on a %d px screen", w, vw.width)
		}
		for _, p := range []string{"/dashboard/webhooks", "/dashboard/webhooks/new", "/dashboard/webhooks/" + id, "/dashboard/webhooks/" + id + "/delete",
			"/dashboard/webhooks/" + id + "/edit", "/dashboard/webhooks/" + id + "/secret", "/dashboard/webhooks/424242"} {
			b.Run(t, chromedp.Navigate(h.URL+p), chromedp.WaitVisible(chromedp.CSS("h1")))
			w := width()
			if w > vw.width {
				t.Errorf("%s is %d px wide on a %d px screen", p, w, vw.width)
			}
			t.Logf("%d px: %s is %d px wide", vw.width, p, w)
		}
	}

	// Edited: the form shows the settings; tags added and bots left out are saved.
	b.Run(t, chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(h.URL+"/dashboard/webhooks/"+id), chromedp.WaitVisible(chromedp.CSS(`a[href$="/edit"]`)),
		chromedp.Click(chromedp.CSS(`a[href$="/edit"]`)), chromedp.WaitVisible(chromedp.CSS(`.webhook-form input[name="tags"]`)),
		chromedp.SendKeys(chromedp.CSS(`.webhook-form input[name="tags"]`), "spring"),
		chromedp.Click(chromedp.CSS(`.webhook-form input[name="include_bots"]`)),
		chromedp.Click(chromedp.CSS(`.webhook-form button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("main > p.notice")))
	if s := text("main > p.notice"); s != "Changes saved." {
		t.Errorf("after saving: %q", s)
	}
	if w := h.api(t, http.MethodGet, "/webhooks/"+id, nil).JSON(t); fmt.Sprint(w["tags"]) != "[spring]" || w["include_bots"] != false || fmt.Sprint(w["links"]) != "["+slug+"]" {
		t.Errorf("after editing in the browser: %v", w)
	}
	// A new secret, asked for, shown once; the next ping is signed with it.
	b.Run(t, chromedp.Click(chromedp.CSS(`a[href$="/secret"]`)), chromedp.WaitVisible(chromedp.CSS(`form[action$="/secret"] button`)),
		chromedp.Click(chromedp.CSS(`form[action$="/secret"] button`)), chromedp.WaitVisible(chromedp.ID("secret")))
	secret = browsertest.Value(t, b, chromedp.Value(chromedp.ID("secret")))
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("new secret %q", secret)
	}
	if bad := h.pingWith(t, r, id, secret); bad != 0 {
		t.Errorf("%d requests signed with another secret than the one the page showed", bad)
	}

	// Delete, confirmed: gone from the list and from the API.
	b.Run(t, chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(h.URL+"/dashboard/webhooks/"+id), chromedp.WaitVisible(chromedp.CSS(`a[href$="/delete"]`)),
		chromedp.Click(chromedp.CSS(`a[href$="/delete"]`)), chromedp.WaitVisible(chromedp.CSS("button.danger")),
		chromedp.Click(chromedp.CSS("button.danger")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	if s := text(".notice"); s != "Webhook "+id+" deleted." {
		t.Errorf("after delete: %q", s)
	}
	mustProblem(t, h.api(t, http.MethodGet, "/webhooks/"+id, nil), http.StatusNotFound)
	if n := browsertest.Value(t, b, chromedp.Evaluate[int](`document.querySelectorAll("table.webhooks tbody tr").length`)); n != 2 {
		t.Errorf("%d webhooks listed after the delete, want the 2 long ones", n)
	}

	if p := b.Problems(); len(p) != 0 {
		t.Fatalf("console errors or CSP violations:\n%s", strings.Join(p, "\n"))
	}
}
