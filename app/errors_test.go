package app

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/redirect"
)

// The table is the one place statuses are chosen: every row is reachable (no earlier
// row shadows it), wrapping keeps the answer, a detail overrides the wording, and an
// error in no row is a 500 that says nothing of its cause.
func TestErrorTable(t *testing.T) {
	t.Parallel()
	describe := describer()
	seen := map[error]bool{}
	for _, k := range problemTable() {
		if seen[k.err] {
			t.Errorf("%v has two rows", k.err)
		}
		seen[k.err] = true
		p := describe(fmt.Errorf("in some call: %w", k.err))
		if p.Status != k.status || p.Type != problemBase+k.typ || p.Detail != k.detail || p.Title != http.StatusText(k.status) {
			t.Errorf("%v answered %+v, want its row %+v", k.err, p, k)
		}
	}
	if p := describe(problem.With(links.ErrSlugTaken, "slug %q is taken", "abc")); p.Status != http.StatusConflict || p.Detail != `slug "abc" is taken` {
		t.Errorf("a detailed sentinel answered %+v", p)
	}
	if p := describe(problem.Invalid("expires_at must be in the future")); p.Status != http.StatusBadRequest || p.Detail != "expires_at must be in the future" {
		t.Errorf("an invalid input answered %+v", p)
	}
	if p := describe(fmt.Errorf("%w: %w", redirect.ErrUnavailable, errors.New("dial tcp 10.0.0.5:5432: timeout"))); p.Status != http.StatusServiceUnavailable || strings.Contains(p.Detail, "10.0.0.5") {
		t.Errorf("a lookup timeout answered %+v, and must not show its cause", p)
	}
	if p := describe(fmt.Errorf("%w: %w", redirect.ErrLookupFailed, errors.New("dial tcp 10.0.0.5:5432: connect: connection refused"))); p.Status != http.StatusServiceUnavailable ||
		p.Type != "https://hop.dev/problems/lookup-unavailable" || strings.Contains(p.Detail, "10.0.0.5") {
		t.Errorf("a failed lookup answered %+v: want 503 lookup-unavailable, not its cause", p)
	}
	if p := describe(errors.New("pq: password authentication failed for user hop")); p.Status != http.StatusInternalServerError || strings.Contains(p.Detail, "password") {
		t.Errorf("an unknown error answered %+v", p)
	}
}

// A method a path does not take is 405 naming the ones it does, never 404; HEAD works
// wherever GET does, with GET's status and headers and no body; a path nobody serves
// is 404 even without an API key.
func TestMethodsAnswerAsHTTPSays(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/methods"})["slug"].(string)
	for _, c := range []struct{ method, path, allow string }{
		{http.MethodPut, "/links/" + slug, "DELETE, GET, HEAD, OPTIONS, PATCH"},
		{http.MethodDelete, "/health", "GET, HEAD, OPTIONS"},
		{http.MethodPut, "/tags", "GET, HEAD, OPTIONS"},
		{http.MethodDelete, "/stats", "GET, HEAD, OPTIONS"},
		{http.MethodPut, "/domains", "GET, HEAD, OPTIONS, POST"},
		{http.MethodDelete, "/" + slug, "GET, HEAD, OPTIONS, POST"},
		// POST /{slug} (password forms) must not answer for hop's own paths.
		{http.MethodPost, "/live", "GET, HEAD, OPTIONS"},
		{http.MethodPost, "/openapi.json", "GET, HEAD, OPTIONS"},
		{http.MethodPost, "/health", "GET, HEAD, OPTIONS"},
		{http.MethodPost, "/robots.txt", "GET, HEAD, OPTIONS"},
	} {
		r := h.api(t, c.method, c.path, nil)
		p := mustProblem(t, r, http.StatusMethodNotAllowed)
		if got := sortedAllow(r.Header.Get("Allow")); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q (%v)", c.method, c.path, got, c.allow, p["detail"])
		}
	}
	for _, path := range []string{"/links", "/links/" + slug, "/links/" + slug + "/stats", "/tags", "/stats", "/domains",
		"/openapi.json", "/metrics", "/" + slug + "/qr", "/live"} {
		get, head := h.api(t, http.MethodGet, path, nil), h.api(t, http.MethodHead, path, nil)
		if head.Status != get.Status || len(head.Body) != 0 || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
			t.Errorf("HEAD %s: %d %q %d bytes; GET: %d %q", path, head.Status, head.Header.Get("Content-Type"), len(head.Body),
				get.Status, get.Header.Get("Content-Type"))
		}
	}
	mustProblem(t, h.do(t, http.MethodGet, "/links/"+slug+"/nothing", nil), http.StatusNotFound)
	mustProblem(t, h.do(t, http.MethodGet, "/webhooks/1/nothing", nil), http.StatusNotFound)
	if r := h.do(t, http.MethodHead, "/links", nil); r.Status != http.StatusUnauthorized || len(r.Body) != 0 {
		t.Errorf("HEAD /links without a key: %d, %d bytes", r.Status, len(r.Body))
	}
}

func sortedAllow(v string) string {
	ms := strings.Split(v, ", ")
	slices.Sort(ms)
	return strings.Join(ms, ", ")
}
