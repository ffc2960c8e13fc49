package app

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
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

// The new-webhook form sent twice (the page with the secret reloaded) makes one webhook,
// which would otherwise get every click twice; the second answer points to it. After
// that webhook is deleted the form still makes nothing; a form loaded afresh does.
func TestDashboardWebhookFormSentTwiceMakesOne(t *testing.T) {
	t.Parallel()
	h := startHop(t, allowPrivate)
	r := newReceiver(t)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	h.signIn(t, client, h.Key)
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return string(body)
	}
	hidden := func(page, name string) string {
		t.Helper()
		m := regexp.MustCompile(`name="` + name + `" value="([^"]+)"`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("the form has no %s", name)
		}
		return m[1]
	}
	post := func(form url.Values) (int, string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, h.URL+"/dashboard/webhooks", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", h.URL)
		resp, err := client.Do(req) // follows a 303 to the page it names
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Request.URL.Path + "?" + resp.Request.URL.RawQuery, string(body)
	}
	count := func() int {
		t.Helper()
		var n int
		if err := h.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM webhooks`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	page := get("/dashboard/webhooks/new")
	form := url.Values{"csrf": {hidden(page, "csrf")}, "nonce": {hidden(page, "nonce")}, "url": {r.URL + "/hook"}}
	status, _, body := post(form)
	if status != http.StatusCreated || !strings.Contains(body, "whsec_") {
		t.Fatalf("first send: %d\n%.400s", status, body)
	}
	id := regexp.MustCompile(`Webhook #(\d+) created`).FindStringSubmatch(body)
	if id == nil {
		t.Fatalf("first send names no webhook:\n%.400s", body)
	}
	status, at, body := post(form)
	if status != http.StatusOK || at != "/dashboard/webhooks/"+id[1]+"?created=before" ||
		!strings.Contains(body, "That form was sent before and made this webhook then") || strings.Contains(body, "whsec_") {
		t.Fatalf("second send: %d at %s\n%.600s", status, at, body)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d webhooks after the form was sent twice, want 1", n)
	}

	// Deleted, it is not brought back by the same form.
	mustStatus(t, h.api(t, http.MethodDelete, "/webhooks/"+id[1], nil), http.StatusNoContent)
	status, at, body = post(form)
	if status != http.StatusOK || at != "/dashboard/webhooks?created=deleted" || !strings.Contains(body, "the webhook it made has been deleted since") {
		t.Fatalf("sent after the delete: %d at %s\n%.600s", status, at, body)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d webhooks after the form was sent again past its webhook's delete, want 0", n)
	}

	page = get("/dashboard/webhooks/new")
	if status, _, _ := post(url.Values{"csrf": {hidden(page, "csrf")}, "nonce": {hidden(page, "nonce")}, "url": {r.URL + "/hook"}}); status != http.StatusCreated {
		t.Fatalf("a fresh form: %d", status)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d webhooks after a fresh form, want 1", n)
	}
}
