package dashboard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// next=/dashboard/../evil-target answered Location: /dashboard/../evil-target, which
// browsers resolve outside the dashboard. The path is cleaned before it is checked.
func TestSignInNextCleansDotSegments(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for next, want := range map[string]string{
		"/dashboard/../evil-target":          "/dashboard",
		"/dashboard/%2e%2e/evil-target":      "/dashboard",
		"/dashboard/%2E%2e/%2e%2e/evil":      "/dashboard",
		"/dashboard/links/../../x":           "/dashboard",
		"/dashboard/./links/abc":             "/dashboard/links/abc",
		"/dashboard/links/x/../abc?live=1":   "/dashboard/links/abc?live=1",
		"/dashboard/links/../login":          "/dashboard",
		"/dashboard/..%2f..%2fevil":          "/dashboard",
		"/dashboard/links/abc%2F..%2F..%2Fx": "/dashboard/x",
		"/dashboard?cursor=5":                "/dashboard?cursor=5",
		"/dashboard/links/a%20b":             "/dashboard/links/a%20b",
	} {
		rec := b.post("/dashboard/login", url.Values{"api_key": {goodKey}, "next": {next}}, nil)
		wantStatus(t, rec, http.StatusSeeOther)
		if got := rec.Header().Get("Location"); got != want {
			t.Errorf("next=%q: redirected to %q, want %q", next, got, want)
		}
	}
}

// The sign-in form is read before anyone is known: only a small urlencoded body.
func TestSignInFormBodyLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	big := url.Values{"api_key": {goodKey}, "next": {"/dashboard?x=" + strings.Repeat("a", 5000)}}
	if rec := b.post("/dashboard/login", big, nil); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("5 KB sign-in form: %d, want 413", rec.Code)
	}
	rec := b.do(request{method: http.MethodPost, path: "/dashboard/login", header: map[string]string{"Content-Type": "multipart/form-data; boundary=x"}})
	if rec.Code != http.StatusUnsupportedMediaType {
		t.Errorf("multipart sign-in: %d, want 415", rec.Code)
	}
	// A signed-in form may be larger: a link's URL can be 8 KiB.
	ck, csrf := b.login()
	rec = b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"https://example.com/" + strings.Repeat("a", 6000)}}, ck)
	if rec.Code == http.StatusRequestEntityTooLarge || rec.Code == http.StatusUnsupportedMediaType {
		t.Errorf("6 KB signed-in form: %d", rec.Code)
	}
}
