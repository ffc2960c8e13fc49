package app

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

func TestCreateGetListPatchDelete(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)

	l := h.createLink(t, map[string]any{"url": "https://example.com/a?b=c", "tags": []string{"news", "news", " x "}})
	slug := l["slug"].(string)
	if !regexp.MustCompile(`^[A-Za-z0-9]{6,}$`).MatchString(slug) {
		t.Fatalf("generated slug %q: want 6+ alphanumerics", slug)
	}
	if l["short_url"] != "https://hop.test/"+slug {
		t.Fatalf("short_url %v: want it built from base_url", l["short_url"])
	}
	if l["original_url"] != "https://example.com/a?b=c" || l["redirect_status"] != float64(302) || l["total_clicks"] != float64(0) {
		t.Fatalf("unexpected link: %v", l)
	}
	if tags := fmt.Sprint(l["tags"]); tags != "[news x]" {
		t.Fatalf("tags %s: want trimmed and deduplicated", tags)
	}
	for _, k := range []string{"id", "created_at", "updated_at", "expires_at", "max_clicks"} {
		if _, ok := l[k]; !ok {
			t.Fatalf("link lacks %q: %v", k, l)
		}
	}

	// The Host header never leaks into short_url.
	r := h.api(t, http.MethodPost, "/links/", map[string]any{"url": "https://example.com/b", "slug": "my-Custom_1"}, "Host", "evil.example")
	mustStatus(t, r, http.StatusCreated)
	if r.JSON(t)["short_url"] != "https://hop.test/my-Custom_1" {
		t.Fatalf("short_url from Host header: %s", r.Body)
	}

	got := h.api(t, http.MethodGet, "/links/"+slug, nil)
	mustStatus(t, got, http.StatusOK)
	if got.JSON(t)["id"] != l["id"] {
		t.Fatalf("GET returned another link: %s", got.Body)
	}
	// Slugs are case-sensitive.
	mustProblem(t, h.api(t, http.MethodGet, "/links/MY-CUSTOM_1", nil), http.StatusNotFound)

	p := h.api(t, http.MethodPatch, "/links/"+slug, map[string]any{"url": "https://example.org/new", "redirect_status": 301, "tags": []string{"t2"}, "max_clicks": 5})
	mustStatus(t, p, http.StatusOK)
	pj := p.JSON(t)
	if pj["original_url"] != "https://example.org/new" || pj["redirect_status"] != float64(301) || pj["max_clicks"] != float64(5) || fmt.Sprint(pj["tags"]) != "[t2]" {
		t.Fatalf("patch not applied: %s", p.Body)
	}
	// null clears optional fields.
	p = h.api(t, http.MethodPatch, "/links/"+slug, `{"max_clicks": null}`)
	mustStatus(t, p, http.StatusOK)
	if p.JSON(t)["max_clicks"] != nil {
		t.Fatalf("max_clicks not cleared: %s", p.Body)
	}
	mustProblem(t, h.api(t, http.MethodPatch, "/links/"+slug, `{"slug":"other"}`), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodPatch, "/links/"+slug, `{}`), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodPatch, "/links/"+slug, `{"url":"javascript:alert(1)"}`), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodPatch, "/links/nope-nope", `{"url":"https://a.example"}`), http.StatusNotFound)

	mustStatus(t, h.api(t, http.MethodDelete, "/links/"+slug, nil), http.StatusNoContent)
	mustProblem(t, h.api(t, http.MethodGet, "/links/"+slug, nil), http.StatusGone)
	mustProblem(t, h.api(t, http.MethodDelete, "/links/"+slug, nil), http.StatusGone)
	mustProblem(t, h.api(t, http.MethodPatch, "/links/"+slug, `{"url":"https://a.example"}`), http.StatusGone)
	mustProblem(t, h.do(t, http.MethodGet, "/"+slug, nil), http.StatusGone)
	// A deleted slug is never reused.
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://evil.example", "slug": slug}), http.StatusConflict)
	mustProblem(t, h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://evil.example", "slug": "my-Custom_1"}), http.StatusConflict)
}

func TestListPaginationSearchAndTags(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	var slugs []string
	for i := range 7 {
		tags := []string{"all"}
		if i%2 == 0 {
			tags = append(tags, "even")
		}
		l := h.createLink(t, map[string]any{"url": fmt.Sprintf("https://site%d.example/path_%d", i, i), "tags": tags})
		slugs = append(slugs, l["slug"].(string))
	}
	h.createLink(t, map[string]any{"url": "https://deleted.example"})
	mustStatus(t, h.api(t, http.MethodDelete, "/links/"+h.createLink(t, map[string]any{"url": "https://gone.example"})["slug"].(string), nil), http.StatusNoContent)

	// Walk every page of 3: newest first, no duplicates, deleted links absent.
	var seen []string
	cursor := ""
	for page := 0; ; page++ {
		path := "/links?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := h.api(t, http.MethodGet, path, nil)
		mustStatus(t, r, http.StatusOK)
		j := r.JSON(t)
		for _, l := range j["links"].([]any) {
			seen = append(seen, l.(map[string]any)["slug"].(string))
		}
		if j["next_cursor"] == nil {
			break
		}
		cursor = j["next_cursor"].(string)
		if page > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if len(seen) != 8 {
		t.Fatalf("listed %d links, want 8 live ones: %v", len(seen), seen)
	}
	for i := range 7 {
		if seen[len(seen)-1-i] != slugs[i] {
			t.Fatalf("order %v: want newest first ending with %v", seen, slugs)
		}
	}

	r := h.api(t, http.MethodGet, "/links?q=site3.example", nil)
	if links := r.JSON(t)["links"].([]any); len(links) != 1 || links[0].(map[string]any)["slug"] != slugs[3] {
		t.Fatalf("q search: %s", r.Body)
	}
	// LIKE wildcards in q are literal.
	r = h.api(t, http.MethodGet, "/links?q=path%5F", nil)
	if links := r.JSON(t)["links"].([]any); len(links) != 7 {
		t.Fatalf("q with underscore found %d links, want 7: %s", len(links), r.Body)
	}
	r = h.api(t, http.MethodGet, "/links?q=%25", nil)
	if links := r.JSON(t)["links"].([]any); len(links) != 0 {
		t.Fatalf("q=%% matched %d links, want 0", len(links))
	}
	r = h.api(t, http.MethodGet, "/links?tag=even", nil)
	if links := r.JSON(t)["links"].([]any); len(links) != 4 {
		t.Fatalf("tag filter found %d links, want 4: %s", len(links), r.Body)
	}
	r = h.api(t, http.MethodGet, "/tags", nil)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `{"tag":"all","links":7}`) || !strings.Contains(string(r.Body), `{"tag":"even","links":4}`) {
		t.Fatalf("tags: %s", r.Body)
	}
	mustProblem(t, h.api(t, http.MethodGet, "/links?limit=0", nil), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodGet, "/links?limit=101", nil), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodGet, "/links?cursor=garbage!", nil), http.StatusBadRequest)
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	cases := []struct {
		name   string
		body   any
		status int
		detail string
	}{
		{"javascript", `{"url":"javascript:alert(1)"}`, 400, "scheme"},
		{"data", `{"url":"data:text/html,hi"}`, 400, "scheme"},
		{"ftp", `{"url":"ftp://example.com/f"}`, 400, "scheme"},
		{"relative", `{"url":"/just/a/path"}`, 400, "absolute"},
		{"empty", `{"url":""}`, 400, "required"},
		{"missing", `{}`, 400, "required"},
		{"no host", `{"url":"http://"}`, 400, "host"},
		{"whitespace", `{"url":"https://exa mple.com"}`, 400, "whitespace"},
		{"control", `{"url":"https://example.com/\u0007"}`, 400, "control"},
		{"too long", map[string]any{"url": "https://example.com/" + strings.Repeat("a", 8200)}, 400, "longer"},
		{"reserved slug", `{"url":"https://example.com","slug":"links"}`, 400, "reserved"},
		{"reserved slug any case", `{"url":"https://example.com","slug":"Dashboard"}`, 400, "reserved"},
		{"short slug", `{"url":"https://example.com","slug":"ab"}`, 400, "3 to 64"},
		{"long slug", map[string]any{"url": "https://example.com", "slug": strings.Repeat("a", 65)}, 400, "3 to 64"},
		{"bad slug chars", `{"url":"https://example.com","slug":"a/b.c"}`, 400, "only"},
		{"unicode slug", `{"url":"https://example.com","slug":"héllo"}`, 400, "only"},
		{"status", `{"url":"https://example.com","redirect_status":200}`, 400, "redirect_status"},
		{"past expiry", `{"url":"https://example.com","expires_at":"2001-01-01T00:00:00Z"}`, 400, "future"},
		{"bad time", `{"url":"https://example.com","expires_at":"tomorrow"}`, 400, "RFC 3339"},
		{"max clicks", `{"url":"https://example.com","max_clicks":0}`, 400, "max_clicks"},
		{"short password", `{"url":"https://example.com","password":"a"}`, 400, "password"},
		{"unknown field", `{"url":"https://example.com","colour":"red"}`, 400, "colour"},
		{"malformed", `{"url":`, 400, "malformed"},
		{"not an object", `["https://example.com"]`, 400, "object"},
		{"wrong type", `{"url":42}`, 400, "string"},
		{"trailing data", `{"url":"https://example.com"} {}`, 400, "single"},
		{"empty body", ``, 400, "empty"},
		{"too many tags", map[string]any{"url": "https://example.com", "tags": manyTags(21)}, 400, "tags"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body
			if body == "" {
				body = []byte{}
			}
			p := mustProblem(t, h.api(t, http.MethodPost, "/links", body), c.status)
			if !strings.Contains(p["detail"].(string), c.detail) {
				t.Fatalf("detail %q does not mention %q", p["detail"], c.detail)
			}
		})
	}
	t.Run("content type", func(t *testing.T) {
		mustProblem(t, h.api(t, http.MethodPost, "/links", `{"url":"https://example.com"}`, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType)
		mustProblem(t, h.api(t, http.MethodPost, "/links", `url=https://example.com`, "Content-Type", "application/x-www-form-urlencoded"), http.StatusUnsupportedMediaType)
	})
	t.Run("body limit", func(t *testing.T) {
		big := `{"url":"https://example.com/` + strings.Repeat("a", 70<<10) + `"}`
		for path, limit := range map[string]string{"/links": "64 KiB", "/links/bulk": "10 MiB"} {
			body := big
			if path == "/links/bulk" {
				body = `{"links":[` + strings.Repeat(big+",", 11<<20/len(big)) + big + `]}`
			}
			p := mustProblem(t, h.api(t, http.MethodPost, path, body), http.StatusRequestEntityTooLarge)
			if p["type"] != "https://hop.dev/problems/body-too-large" || p["detail"] != "the request body is larger than "+limit {
				t.Errorf("POST %s over its limit: %v", path, p)
			}
		}
	})
	// Nothing above created a link.
	r := h.api(t, http.MethodGet, "/links", nil)
	if n := len(r.JSON(t)["links"].([]any)); n != 0 {
		t.Fatalf("%d links exist after only invalid requests", n)
	}
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	p := mustProblem(t, h.do(t, http.MethodGet, "/links", nil), http.StatusUnauthorized)
	if !strings.Contains(p["detail"].(string), "Bearer") {
		t.Fatalf("401 detail should say how to authenticate: %v", p["detail"])
	}
	mustProblem(t, h.do(t, http.MethodGet, "/links", nil, "Authorization", "Bearer wrong-key-wrong-key"), http.StatusUnauthorized)
	mustStatus(t, h.do(t, http.MethodGet, "/links", nil, "X-Api-Key", testAPIKey), http.StatusOK)
	mustStatus(t, h.do(t, http.MethodGet, "/links", nil, "Authorization", "bearer "+testAPIKey), http.StatusOK)
	// Redirects, health and metrics need no key.
	mustStatus(t, h.do(t, http.MethodGet, "/health", nil), http.StatusOK)
	mustStatus(t, h.do(t, http.MethodGet, "/metrics", nil), http.StatusOK)
	mustProblem(t, h.do(t, http.MethodGet, "/unknown-slug", nil), http.StatusNotFound)
	// Unknown paths are 404, not 401.
	mustProblem(t, h.do(t, http.MethodGet, "/no/such/path", nil), http.StatusNotFound)

	// CLI: create prints only the key; list shows it; revoke ends the key.
	cfgPath := writeConfig(t, h.Config)
	var out, errOut syncBuffer
	if err := Run(t.Context(), []string{"--config", cfgPath, "apikey", "create", "--name", "ci script"}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("apikey create: %v %s", err, errOut.String())
	}
	key := strings.TrimSpace(out.String())
	if !strings.HasPrefix(key, "hop_") || strings.Contains(key, "\n") {
		t.Fatalf("apikey create printed %q, want just the key", key)
	}
	mustStatus(t, h.do(t, http.MethodGet, "/links", nil, "Authorization", "Bearer "+key), http.StatusOK)

	var list syncBuffer
	if err := Run(t.Context(), []string{"--config", cfgPath, "apikey", "list"}, func(string) string { return "" }, &list, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list.String(), "ci script") || !strings.Contains(list.String(), key[:8]) || strings.Contains(list.String(), key[:9]) {
		t.Fatalf("apikey list should show name and an 8-character prefix, never more of the key:\n%s", list.String())
	}
	var id string
	for _, line := range strings.Split(list.String(), "\n") {
		if strings.Contains(line, "ci script") {
			id = strings.Fields(line)[0]
		}
	}
	var rev syncBuffer
	if err := Run(t.Context(), []string{"--config", cfgPath, "apikey", "revoke", id}, func(string) string { return "" }, &rev, &errOut); err != nil {
		t.Fatal(err)
	}
	// The running server remembered the key; PostgreSQL's notice of the revocation
	// reaches it within milliseconds.
	var r response
	testenv.Eventually(t, 10*time.Second, "the revoked key to be refused", func() bool {
		r = h.do(t, http.MethodGet, "/links", nil, "Authorization", "Bearer "+key)
		return r.Status == http.StatusUnauthorized
	})
	mustProblem(t, r, http.StatusUnauthorized)
	if err := Run(t.Context(), []string{"--config", cfgPath, "apikey", "revoke", "99999"}, func(string) string { return "" }, &rev, &errOut); err == nil {
		t.Fatal("revoking an unknown key succeeded")
	}
}

func TestRedirects(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	l := h.createLink(t, map[string]any{"url": "https://example.com/target?q=1"})
	slug := l["slug"].(string)

	r := h.do(t, http.MethodGet, "/"+slug, nil)
	mustStatus(t, r, http.StatusFound)
	if r.Header.Get("Location") != "https://example.com/target?q=1" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("redirect headers: %v", r.Header)
	}
	// HEAD answers the same.
	r = h.do(t, http.MethodHead, "/"+slug, nil)
	mustStatus(t, r, http.StatusFound)
	if r.Header.Get("Location") != "https://example.com/target?q=1" {
		t.Fatalf("HEAD Location: %v", r.Header)
	}

	perm := h.createLink(t, map[string]any{"url": "https://example.com/p", "redirect_status": 308})
	mustStatus(t, h.do(t, http.MethodGet, "/"+perm["slug"].(string), nil), http.StatusPermanentRedirect)

	// Changes take effect at once (the cache is invalidated).
	mustStatus(t, h.api(t, http.MethodPatch, "/links/"+slug, map[string]any{"url": "https://example.com/changed"}), http.StatusOK)
	r = h.do(t, http.MethodGet, "/"+slug, nil)
	if r.Header.Get("Location") != "https://example.com/changed" {
		t.Fatalf("after PATCH Location is %q", r.Header.Get("Location"))
	}

	// A 404 is negatively cached, and creating the slug afterwards still works.
	mustProblem(t, h.do(t, http.MethodGet, "/later-slug", nil), http.StatusNotFound)
	h.createLink(t, map[string]any{"url": "https://example.com/later", "slug": "later-slug"})
	mustStatus(t, h.do(t, http.MethodGet, "/later-slug", nil), http.StatusFound)

	mustStatus(t, h.api(t, http.MethodDelete, "/links/"+slug, nil), http.StatusNoContent)
	mustProblem(t, h.do(t, http.MethodGet, "/"+slug, nil), http.StatusGone)
	mustProblem(t, h.do(t, http.MethodGet, "/has.dot", nil), http.StatusNotFound)

	// Expired links answer 410.
	// Instead of waiting for the clock, the expiry is moved into the past in the database,
	// and a PATCH of the tags invalidates the cached record the way any change does.
	exp := h.createLink(t, map[string]any{"url": "https://example.com/e", "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)})
	expSlug := exp["slug"].(string)
	mustStatus(t, h.do(t, http.MethodGet, "/"+expSlug, nil), http.StatusFound)
	if _, err := h.DB.Pool.Exec(t.Context(), `UPDATE links SET expires_at = now() - interval '1 second' WHERE slug = $1`, expSlug); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, h.api(t, http.MethodPatch, "/links/"+expSlug, map[string]any{"tags": []string{"expired"}}), http.StatusOK)
	mustProblem(t, h.do(t, http.MethodGet, "/"+expSlug, nil), http.StatusGone)
}

func TestPasswordProtectedLink(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	l := h.createLink(t, map[string]any{"url": "https://example.com/secret", "password": "hunter22"})
	if l["has_password"] != true {
		t.Fatalf("has_password: %v", l)
	}
	slug := l["slug"].(string)
	r := h.do(t, http.MethodGet, "/"+slug, nil)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `type="password"`) || r.Header.Get("Location") != "" {
		t.Fatalf("protected link should show a form: %s", r.Body)
	}
	r = h.do(t, http.MethodPost, "/"+slug, []byte("password=wrong"), "Content-Type", "application/x-www-form-urlencoded")
	mustStatus(t, r, http.StatusUnauthorized)
	r = h.do(t, http.MethodPost, "/"+slug, []byte("password=hunter22"), "Content-Type", "application/x-www-form-urlencoded")
	mustStatus(t, r, http.StatusSeeOther)
	if r.Header.Get("Location") != "https://example.com/secret" {
		t.Fatalf("Location %q", r.Header.Get("Location"))
	}
}

func manyTags(n int) []string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("tag%d", i)
	}
	return tags
}

func TestQRCode(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/qr"})["slug"].(string)
	r := h.do(t, http.MethodGet, "/"+slug+"/qr", nil)
	mustStatus(t, r, http.StatusOK)
	if r.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(string(r.Body), "\x89PNG") {
		t.Fatalf("qr: %s %q", r.Header.Get("Content-Type"), r.Body[:8])
	}
	r = h.do(t, http.MethodGet, "/"+slug+"/qr?format=svg", nil)
	mustStatus(t, r, http.StatusOK)
	if r.Header.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(string(r.Body), "<svg") {
		t.Fatalf("svg qr: %s", r.Body)
	}
	mustProblem(t, h.do(t, http.MethodGet, "/"+slug+"/qr?format=gif", nil), http.StatusBadRequest)
	mustProblem(t, h.do(t, http.MethodGet, "/"+slug+"/qr?size=5", nil), http.StatusBadRequest)
	mustProblem(t, h.do(t, http.MethodGet, "/nope-nope/qr", nil), http.StatusNotFound)
	// A QR code is not a click.
	var n int
	if err := h.DB.Pool.QueryRow(t.Context(), "SELECT count(*) FROM click_logs").Scan(&n); err != nil || n != 0 {
		t.Fatalf("clicks after QR requests: %d %v", n, err)
	}
}

// No link can take the first segment of a path hop serves itself as its slug, in any
// case: the route would answer instead, and the short link would never redirect.
func TestHopsOwnPathsAreNoSlugs(t *testing.T) {
	t.Parallel()
	own := map[string]bool{}
	for _, r := range builtRoutes(t) {
		first, _, _ := strings.Cut(strings.TrimPrefix(r.Path, "/"), "/")
		if first != "" && !strings.ContainsAny(first, ":*") {
			own[first] = true
		}
	}
	if len(own) < 10 {
		t.Fatalf("only %d paths of hop's own: %v", len(own), own)
	}
	h := startHop(t, nil)
	for first := range own {
		for _, slug := range []string{first, strings.ToUpper(first)} {
			resp := h.api(t, http.MethodPost, "/links", map[string]any{"url": "https://example.com/", "slug": slug})
			if resp.Status != http.StatusBadRequest {
				t.Errorf("slug %q (hop serves /%s) answered %d: %s", slug, first, resp.Status, resp.Body)
			}
		}
	}
}
