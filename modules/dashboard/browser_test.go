package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/browsertest"
	"github.com/hop-dev/hop/modules/links"
)

// browse serves b's dashboard over HTTP, with a live feed that sends every page one
// click from referrer and then stays open, as app's does, and signs a headless
// Chromium in at a phone's size (375 × 667, touch).
func browse(t *testing.T, b *bundle, referrer string) (*browsertest.Browser, string) {
	t.Helper()
	liveJS, err := b.h.LiveScript()
	if err != nil {
		t.Fatal(err)
	}
	b.e.GET("/dashboard/live.js", liveJS)
	stop := make(chan struct{})
	feed := func(c echo.Context) error {
		w := c.Response()
		w.Header().Set(echo.HeaderContentType, "text/event-stream")
		w.WriteHeader(http.StatusOK)
		fmt.Fprintf(w, "event: click\nid: 1\ndata: {\"slug\":%q,\"clicked_at\":%q,\"country\":\"DE\",\"referer\":%q,\"device\":\"mobile\",\"bot\":false}\n\n",
			c.Param("slug"), testNow.Format("2006-01-02T15:04:05Z"), referrer)
		w.Flush()
		select {
		case <-c.Request().Context().Done():
		case <-stop:
		}
		return nil
	}
	b.e.GET("/dashboard/live", feed, b.h.SessionOnly)
	b.e.GET("/dashboard/links/:slug/live", feed, b.h.SessionOnly)
	srv := httptest.NewServer(b.e)
	t.Cleanup(func() { close(stop); srv.Close() })

	br := browsertest.New(t)
	br.Run(t, chromedp.EmulateViewport(375, 667, chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(srv.URL+"/dashboard/login"), chromedp.WaitVisible(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="api_key"]`), goodKey),
		chromedp.Click(chromedp.CSS(`.login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".logout")))
	return br, srv.URL
}

// On a phone no page is wider than the screen, even with the longest values the
// services accept (a 64-character slug and tag, a 72-character domain, a long referrer
// arriving in the live panel), and nothing in a stacked row is cut off at its edge;
// the navigation and the QR downloads are at least 24 px tall, to be tapped.
func TestPagesFitAPhoneWithLongValues(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{Domains: withFakeDomains})
	host := strings.Repeat("h", 60) + ".example.com"
	if _, err := b.domains.Add(context.Background(), host, "", "", "", ""); err != nil {
		t.Fatal(err)
	}
	slug, tag := strings.Repeat("z", 64), strings.Repeat("t", 64)
	for _, d := range []string{"", host} {
		b.links.add(links.Link{Slug: slug, Domain: d, OriginalURL: "https://example.com/" + tag, Tags: []string{tag}, ForwardQuery: true})
	}
	br, base := browse(t, b, "a-very-long-referrer-host-name.subdomain.example-company-international.co.uk")

	link := "/dashboard/links/" + slug
	for _, p := range []string{"/dashboard", "/dashboard?domain=" + url.QueryEscape(host), link, link + "?domain=" + url.QueryEscape(host),
		link + "/edit", link + "/delete", link + "/delete?domain=" + url.QueryEscape(host), "/dashboard/new",
		"/dashboard/domains", "/dashboard/domains/" + host + "/delete"} {
		br.Run(t, chromedp.Navigate(base+p), chromedp.WaitVisible(chromedp.CSS("main")))
		if strings.HasPrefix(p, link) && !strings.Contains(p, "/delete") && !strings.Contains(p, "/edit") || p == "/dashboard" {
			// The live click has arrived.
			br.Run(t, chromedp.WaitVisible(chromedp.CSS(".live-clicks tbody tr")))
		}
		if w := browsertest.Value(t, br, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 375 {
			t.Errorf("%s is %d px wide on a 375 px screen", p, w)
		}
		cut := browsertest.Value(t, br, chromedp.Evaluate[[]string](`[...document.querySelectorAll(
			"table.stacked a.slug, table.stacked td.domain, table.domains .mono, table.stacked .tag")]
			.filter(e => e.getBoundingClientRect().right > innerWidth).map(e => e.textContent.slice(0, 20))`))
		if len(cut) > 0 {
			t.Errorf("%s: stacked rows cut off %q at the screen's edge", p, cut)
		}
	}

	br.Run(t, chromedp.Navigate(base+link), chromedp.WaitVisible(chromedp.CSS(".qr-downloads")))
	small := browsertest.Value(t, br, chromedp.Evaluate[[]string](`[...document.querySelectorAll(".top nav a, .qr-downloads a")]
		.filter(e => e.getBoundingClientRect().height < 24).map(e => e.textContent)`))
	if len(small) > 0 {
		t.Errorf("controls under 24 px tall on a phone: %q", small)
	}
	if p := br.Problems(); len(p) > 0 {
		t.Errorf("console errors or CSP violations: %v", p)
	}
}

// contrastJS is the WCAG contrast ratio of the text of the element %s against its
// background, both opaque.
const contrastJS = `(() => {
  const lum = s => {
    const [r, g, b] = s.match(/[\d.]+/g).slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const cs = getComputedStyle(document.querySelector(%q));
  const a = lum(cs.color), b = lum(cs.backgroundColor);
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
})()`

// Buttons' text keeps a contrast of at least 4.5:1 (WCAG AA) in the light and the
// dark theme; the dark theme's light accent once had white text on it at 2.7:1.
func TestButtonTextContrast(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.links.add(links.Link{Slug: "contrast", OriginalURL: "https://example.com/c", ForwardQuery: true})
	br, base := browse(t, b, "example.com")
	for _, scheme := range []string{"light", "dark"} {
		br.Run(t, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
			return err
		}))
		for _, c := range []struct{ page, button string }{
			{"/dashboard/new", `.link-form button[type="submit"]`},
			{"/dashboard/links/contrast/delete", `button.danger`},
		} {
			br.Run(t, chromedp.Navigate(base+c.page), chromedp.WaitVisible(chromedp.CSS(c.button)))
			if dark := browsertest.Value(t, br, chromedp.Evaluate[bool](`matchMedia("(prefers-color-scheme: dark)").matches`)); dark != (scheme == "dark") {
				t.Fatalf("%s theme not in effect", scheme)
			}
			if r := browsertest.Value(t, br, chromedp.Evaluate[float64](fmt.Sprintf(contrastJS, c.button))); r < 4.5 {
				t.Errorf("%s theme, %s on %s: contrast %.2f:1, want at least 4.5:1", scheme, c.button, c.page, r)
			}
		}
	}
}
