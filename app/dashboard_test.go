package app

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
)

// The dashboard signs in with an API key and shows the links and their clicks.
func TestDashboardSignInAndOverview(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.createLink(t, map[string]any{"url": "https://example.com/<b>dash</b>", "slug": "dash-link"})

	r := h.do(t, http.MethodGet, "/dashboard", nil)
	if r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/dashboard/login") {
		t.Fatalf("signed out: %d %s", r.Status, r.Header.Get("Location"))
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	if resp := h.signIn(t, client, "hop_not_a_key_at_all_000"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	h.signIn(t, client, h.Key)
	resp, err := client.Get(h.URL + "/dashboard") // with the session cookie
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "dash-link") {
		t.Fatalf("overview after sign-in: %d\n%.500s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), "<b>dash</b>") {
		t.Fatal("the overview renders a link's URL unescaped")
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("dashboard CSP %q", csp)
	}
}
