package app

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hop-dev/hop/internal/browsertest"
)

// The password flow in a real browser, on a 390 px wide screen: a wrong password shows
// a message, the right one arrives at a target on another origin — also when that
// target redirects on to a third origin — with the query string forwarded, and no page
// on the way logs a console error or a CSP violation. It is the bug of issue 18:
// Chromium blocked the 303 to another origin under form-action 'self'.
func TestPasswordFlowInChromium(t *testing.T) {
	t.Parallel()
	final := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>final</title><p id="final">%s</p>`, r.URL.Path)
	}))
	defer final.Close()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bounce" {
			http.Redirect(w, r, final.URL+"/final", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>landed</title><p id="landed">%s</p>`, r.URL.RawQuery)
	}))
	defer target.Close()

	h := startHop(t, nil)
	const password = "correct horse battery"
	landing := h.createLink(t, map[string]any{"url": target.URL + "/landing?from=hop", "password": password})["slug"].(string)
	bounce := h.createLink(t, map[string]any{"url": target.URL + "/bounce", "password": password})["slug"].(string)

	b := browsertest.New(t)
	fits := func(page string) {
		t.Helper()
		if width := browsertest.Value(t, b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); width > 390 {
			t.Errorf("%s is %d px wide on a 390 px screen", page, width)
		}
	}
	b.Run(t, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))

	for _, path := range []string{"/", "/no-such-link"} {
		b.Run(t, chromedp.Navigate(h.URL+path), chromedp.WaitVisible(chromedp.CSS("h1")))
		fits(path)
	}

	b.Run(t, chromedp.Navigate(h.URL+"/"+landing+"?utm_source=chromium"), chromedp.WaitVisible(chromedp.ID("password")))
	fits("the password form")
	b.Run(t,
		chromedp.SendKeys(chromedp.ID("password"), "wrong password"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(".error")),
	)
	msg := browsertest.Value(t, b, chromedp.Text(chromedp.CSS(".error")))
	if msg != "Wrong password. Try again." {
		t.Fatalf("wrong-password message %q", msg)
	}
	b.Run(t,
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("landed")),
	)
	if loc := browsertest.Value(t, b, chromedp.Location()); loc != target.URL+"/landing?from=hop&utm_source=chromium" {
		t.Fatalf("arrived at %q", loc)
	}

	// A target that redirects on to yet another origin.
	b.Run(t, chromedp.Navigate(h.URL+"/"+bounce), chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.ID("final")),
	)
	if loc := browsertest.Value(t, b, chromedp.Location()); loc != final.URL+"/final" {
		t.Fatalf("arrived at %q", loc)
	}

	if p := b.Problems(); len(p) != 0 {
		t.Fatalf("console errors or CSP violations:\n%s", strings.Join(p, "\n"))
	}
	// One click each: the form, the wrong password and the page in between are none.
	for _, slug := range []string{landing, bounce} {
		h.waitStats(t, slug, func(s map[string]any) bool { return s["total_clicks"].(float64)+s["bot_clicks"].(float64) == 1 })
	}
}
