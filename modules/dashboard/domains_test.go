package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/stats"
)

// fakeDomains is an in-memory DomainService with the domains module's user-facing
// errors: the default domain is hop.test; a domain's link count comes from the links.
type fakeDomains struct {
	mu    sync.Mutex
	list  []domains.Domain
	links *fakeLinks
}

func newFakeDomains(l *fakeLinks) *fakeDomains {
	return &fakeDomains{links: l, list: []domains.Domain{{ID: 1, Host: "hop.test", BaseURL: "http://hop.test", Default: true}}}
}

func (f *fakeDomains) List(ctx context.Context) ([]domains.Domain, error) {
	f.mu.Lock()
	out := slices.Clone(f.list)
	f.mu.Unlock()
	for i := range out {
		page, _ := f.links.List(ctx, links.ListQuery{Domain: out[i].Host, Limit: 1000})
		out[i].Links = int64(len(page.Links))
	}
	return out, nil
}

// Choices is the list without counts, as the registry holds it.
func (f *fakeDomains) Choices() []domains.Domain {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.list)
}

func (f *fakeDomains) Get(ctx context.Context, host string) (domains.Domain, error) {
	ds, _ := f.List(ctx)
	for _, d := range ds {
		if d.Host == strings.ToLower(host) {
			return d, nil
		}
	}
	return domains.Domain{}, domains.ErrNotFound
}

func (f *fakeDomains) Add(ctx context.Context, host, baseURL, root, notFound, expired string) (domains.Domain, error) {
	host = strings.ToLower(strings.TrimSpace(host))
	if host == "" || strings.ContainsAny(host, "/: ") {
		return domains.Domain{}, problem.Invalid("host %q is not a DNS name like go.example.com", host)
	}
	if _, err := f.Get(ctx, host); err == nil {
		return domains.Domain{}, domains.ErrHostTaken
	}
	if baseURL == "" {
		baseURL = "https://" + host
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d := domains.Domain{ID: int64(len(f.list) + 1), Host: host, BaseURL: baseURL, RootRedirect: root, NotFoundRedirect: notFound, ExpiredRedirect: expired}
	f.list = append(f.list, d)
	return d, nil
}

func (f *fakeDomains) Update(ctx context.Context, host string, p domains.Patch) (domains.Domain, error) {
	d, err := f.Get(ctx, host)
	if err != nil {
		return d, err
	}
	if d.Default {
		return d, domains.ErrDefaultDomain
	}
	if p.BaseURL != nil && !strings.HasPrefix(*p.BaseURL, "http") {
		return d, problem.Invalid("base_url must be an origin like https://go.example.com, got %q", *p.BaseURL)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.list {
		if f.list[i].Host == d.Host {
			l := &f.list[i]
			l.BaseURL, l.RootRedirect, l.NotFoundRedirect, l.ExpiredRedirect = *p.BaseURL, *p.RootRedirect, *p.NotFoundRedirect, *p.ExpiredRedirect
			return *l, nil
		}
	}
	return d, domains.ErrNotFound
}

func (f *fakeDomains) Remove(ctx context.Context, host string) error {
	d, err := f.Get(ctx, host)
	switch {
	case err != nil:
		return err
	case d.Default:
		return domains.ErrDefaultDomain
	case d.Links > 0:
		return problem.With(domains.ErrHasLinks, "the domain still has %d links; delete them first", d.Links)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = slices.DeleteFunc(f.list, func(x domains.Domain) bool { return x.Host == d.Host })
	return nil
}

// withFakeDomains in Config.Domains asks setup for a fakeDomains over its fake links.
var withFakeDomains = &fakeDomains{}

// setupDomains is setup with the domain pages, and go.example.com added when branded.
func setupDomains(t *testing.T, branded bool) *bundle {
	t.Helper()
	b := setup(t, Config{Domains: withFakeDomains})
	if branded {
		if _, err := b.domains.Add(context.Background(), "go.example.com", "", "", "", ""); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// Domains are listed with their link counts and fallbacks, added, edited and removed
// through the forms; the API's messages come back on the form.
func TestDomainPagesAddEditRemove(t *testing.T) {
	t.Parallel()
	b := setupDomains(t, false)
	ck, csrf := b.login()

	rec := b.get("/dashboard/domains", ck)
	wantStatus(t, rec, http.StatusOK)
	body := rec.Body.String()
	wantContains(t, body, `<a href="/dashboard/domains">Domains</a>`, `<span class="mono">hop.test</span> <span class="badge badge-active">default</span>`,
		`<span class="muted">configured</span>`, `href="/dashboard/domains/new"`)
	if strings.Contains(body, `/dashboard/domains/hop.test/delete`) || strings.Contains(body, `/dashboard/domains/hop.test/edit`) {
		t.Error("the default domain can be edited or removed from the list")
	}

	rec = b.get("/dashboard/domains/new", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), `name="host"`, `name="base_url"`, `name="root_redirect"`, `name="not_found_redirect"`, `name="expired_redirect"`, `name="csrf"`)

	// A host the domains module refuses: the form again, as typed, with its message.
	rec = b.post("/dashboard/domains", url.Values{"csrf": {csrf}, "host": {"go.example.com:8080"}, "root_redirect": {"https://example.com/"}}, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantContains(t, rec.Body.String(), `role="alert"`, "is not a DNS name", `value="go.example.com:8080"`, `value="https://example.com/"`)

	rec = b.post("/dashboard/domains", url.Values{"csrf": {csrf}, "host": {"Go.Example.com"}, "not_found_redirect": {"https://example.com/404"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/domains?added=go.example.com" {
		t.Fatalf("after add: %q", loc)
	}
	body = b.get("/dashboard/domains?added=go.example.com", ck).Body.String()
	wantContains(t, body, "Domain <span class=\"mono\">go.example.com</span> added", `https://go.example.com`,
		`<span class="target-text">https://example.com/404</span>`, `href="/dashboard/domains/go.example.com/edit"`,
		`href="/dashboard/domains/go.example.com/delete"`, `<a href="/dashboard?domain=go.example.com">0</a>`)
	// Adding it again is the API's 409, on the form.
	rec = b.post("/dashboard/domains", url.Values{"csrf": {csrf}, "host": {"go.example.com"}}, ck)
	wantStatus(t, rec, http.StatusConflict)
	wantContains(t, rec.Body.String(), `role="alert"`, "domain host taken")

	// Edit: the form holds the domain's values; saving sets every field.
	rec = b.get("/dashboard/domains/go.example.com/edit", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), `action="/dashboard/domains/go.example.com"`, `value="https://go.example.com"`, `value="https://example.com/404"`)
	if strings.Contains(rec.Body.String(), `name="host"`) {
		t.Error("the edit form offers to change the host")
	}
	rec = b.post("/dashboard/domains/go.example.com", url.Values{"csrf": {csrf}, "base_url": {"nonsense"}}, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantContains(t, rec.Body.String(), "base_url must be an origin", `value="nonsense"`)
	rec = b.post("/dashboard/domains/go.example.com", url.Values{"csrf": {csrf}, "base_url": {"https://go.example.com"},
		"root_redirect": {"https://example.com/home"}, "expired_redirect": {"https://example.com/ended"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	d, err := b.domains.Get(context.Background(), "go.example.com")
	if err != nil || d.RootRedirect != "https://example.com/home" || d.NotFoundRedirect != "" || d.ExpiredRedirect != "https://example.com/ended" {
		t.Fatalf("after edit: %+v %v", d, err)
	}

	// Remove, confirmed.
	rec = b.get("/dashboard/domains/go.example.com/delete", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), `action="/dashboard/domains/go.example.com/delete"`, "Remove this domain")
	rec = b.post("/dashboard/domains/go.example.com/delete", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if _, err := b.domains.Get(context.Background(), "go.example.com"); err == nil {
		t.Fatal("the domain is still there")
	}
	wantContains(t, b.get("/dashboard/domains?removed=go.example.com", ck).Body.String(), "removed.")
}

// A domain with links cannot be removed: the confirmation says so, and posting it
// anyway shows the API's 409 and its message as a page. The default domain cannot be
// edited or removed at all.
func TestDomainRemoveRefused(t *testing.T) {
	t.Parallel()
	b := setupDomains(t, true)
	b.links.add(links.Link{Slug: "kept", Domain: "go.example.com", OriginalURL: "https://example.com/"})
	ck, csrf := b.login()

	rec := b.get("/dashboard/domains/go.example.com/delete", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "It still has 1 link:", `href="/dashboard?domain=go.example.com"`)
	rec = b.post("/dashboard/domains/go.example.com/delete", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusConflict)
	wantHTML(t, rec)
	wantContains(t, rec.Body.String(), "409 · Conflict", "the domain still has 1 links; delete them first")
	if _, err := b.domains.Get(context.Background(), "go.example.com"); err != nil {
		t.Fatal("the domain was removed with its links")
	}

	for _, r := range []request{
		{method: http.MethodGet, path: "/dashboard/domains/hop.test/edit"},
		{method: http.MethodGet, path: "/dashboard/domains/hop.test/delete"},
		{method: http.MethodPost, path: "/dashboard/domains/hop.test/delete", form: url.Values{"csrf": {csrf}}},
		{method: http.MethodPost, path: "/dashboard/domains/hop.test", form: url.Values{"csrf": {csrf}, "base_url": {"https://x.example"}}},
	} {
		r.cookie, r.header = ck, map[string]string{"Origin": "http://hop.test"}
		rec := b.do(r)
		wantStatus(t, rec, http.StatusConflict)
		wantContains(t, rec.Body.String(), "default domain is configured")
	}
	if _, err := b.domains.Get(context.Background(), "hop.test"); err != nil {
		t.Fatal("the default domain was removed")
	}
	wantStatus(t, b.get("/dashboard/domains/nowhere.example/edit", ck), http.StatusNotFound)
}

// Every domain form needs the session's CSRF token and this site's origin.
func TestDomainFormsNeedCSRF(t *testing.T) {
	t.Parallel()
	b := setupDomains(t, true)
	ck, csrf := b.login()
	for _, path := range []string{"/dashboard/domains", "/dashboard/domains/go.example.com", "/dashboard/domains/go.example.com/delete"} {
		form := url.Values{"host": {"x.example"}, "base_url": {"https://x.example"}}
		wantStatus(t, b.post(path, form, ck), http.StatusForbidden)
		form.Set("csrf", csrf)
		rec := b.do(request{method: http.MethodPost, path: path, form: form, cookie: ck, header: map[string]string{"Origin": "https://evil.example"}})
		wantStatus(t, rec, http.StatusForbidden)
	}
	ds, _ := b.domains.List(context.Background())
	if len(ds) != 2 || ds[1].BaseURL != "https://go.example.com" {
		t.Fatalf("forged forms changed the domains: %+v", ds)
	}
	wantStatus(t, b.get("/dashboard/domains", nil), http.StatusSeeOther) // signed out: to sign in
}

// Two domains with the same slug: the list shows each with its domain, filters by
// domain (search, tag and paging keep the filter), and each opens its own page, whose
// links (edit, delete, QR, live, range) carry its domain.
func TestLinksOnTwoDomains(t *testing.T) {
	t.Parallel()
	b := setupDomains(t, true)
	b.links.add(links.Link{Slug: "same", OriginalURL: "https://example.com/default", Tags: []string{"t"}})
	b.links.add(links.Link{Slug: "same", Domain: "go.example.com", OriginalURL: "https://example.com/branded", Tags: []string{"t"}})
	for i := range pageSize {
		b.links.add(links.Link{Slug: "more" + string(rune('a'+i)), Domain: "go.example.com", OriginalURL: "https://example.com/more"})
	}
	b.stats.overview = stats.Overview{TopLinks: []stats.TopLink{{Slug: "same", Domain: "go.example.com", Clicks: 5}, {Slug: "same", Domain: "hop.test", Clicks: 3}}}
	ck, csrf := b.login()

	rec := b.get("/dashboard", ck)
	wantStatus(t, rec, http.StatusOK)
	body := rec.Body.String()
	wantContains(t, body, `<th>Domain</th>`, `<td data-label="Domain" class="mono domain">go.example.com</td>`,
		`<option value="">all domains</option>`, `<option value="go.example.com">go.example.com</option>`,
		// top links lead to each domain's page
		`href="/dashboard/links/same?domain=go.example.com">same</a> <span class="muted mono">go.example.com</span>`,
		`href="/dashboard/links/same">same</a> <span class="muted mono">hop.test</span>`)

	// Filtered by domain: only that domain's links, and the next page keeps the filter.
	rec = b.get("/dashboard?domain=go.example.com", ck)
	body = rec.Body.String()
	wantContains(t, body, `<option value="go.example.com" selected>`, `rel="next"`, `&amp;domain=go.example.com" rel="next"`, `href="/dashboard">Clear</a>`)
	if strings.Contains(body, `https://example.com/default`) {
		t.Error("the domain filter shows another domain's link")
	}
	rec = b.get("/dashboard?domain=hop.test", ck)
	if body := rec.Body.String(); strings.Contains(body, "https://example.com/branded") || !strings.Contains(body, "https://example.com/default") {
		t.Error("the default domain's filter shows the wrong links")
	}
	rec = b.get("/dashboard?domain=go.example.com&tag=t&q=same", ck)
	body = rec.Body.String()
	wantContains(t, body, "https://example.com/branded", `href="/dashboard?tag=t&amp;domain=go.example.com"`, `name="q" value="same"`)
	if strings.Contains(body, "https://example.com/default") {
		t.Error("search and tag lose the domain filter")
	}

	// Each link's page is its own.
	rec = b.get("/dashboard/links/same", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "https://example.com/default", `href="/dashboard/links/same/edit"`, `src="/dashboard/links/same/qr?format=svg"`)
	rec = b.get("/dashboard/links/same?domain=go.example.com", ck)
	wantStatus(t, rec, http.StatusOK)
	body = rec.Body.String()
	wantContains(t, body, "https://example.com/branded", `value="https://go.example.com/same"`,
		`href="/dashboard/links/same/edit?domain=go.example.com"`, `href="/dashboard/links/same/delete?domain=go.example.com"`,
		`src="/dashboard/links/same/qr?domain=go.example.com&amp;format=svg"`, `href="/dashboard/links/same/qr?domain=go.example.com"`,
		`data-live-src="/dashboard/links/same/live?domain=go.example.com"`,
		`<input type="hidden" name="domain" value="go.example.com">`, `live=1`)
	if strings.Contains(body, "https://example.com/default") {
		t.Error("the branded link's page shows the default domain's link")
	}
	if got := b.stats.hosts[len(b.stats.hosts)-1]; got != "go.example.com" {
		t.Errorf("stats asked for domain %q", got)
	}

	// The QR code is drawn for the link's own short URL, in both formats.
	for format, ctype := range map[string]string{"": "image/png", "&format=svg": "image/svg+xml"} {
		rec = b.get("/dashboard/links/same/qr?domain=go.example.com"+format, ck)
		wantStatus(t, rec, http.StatusOK)
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, ctype) {
			t.Errorf("QR %q: %s", format, ct)
		}
	}

	// Edit and delete act on the branded link only.
	rec = b.post("/dashboard/links/same?domain=go.example.com", url.Values{"csrf": {csrf}, "url": {"https://example.com/branded-2"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/links/same?domain=go.example.com&saved=1" {
		t.Errorf("after edit: %q", loc)
	}
	if l, _ := b.links.Get(context.Background(), "", "same"); l.OriginalURL != "https://example.com/default" {
		t.Errorf("editing the branded link changed the default one: %s", l.OriginalURL)
	}
	rec = b.post("/dashboard/links/same/delete?domain=go.example.com", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if _, err := b.links.Get(context.Background(), "", "same"); err != nil {
		t.Error("deleting the branded link deleted the default one")
	}
	wantStatus(t, b.get("/dashboard/links/same?domain=go.example.com", ck), http.StatusNotFound)
}

// The create forms pick a domain, the default preselected; with only the default
// domain there is nothing to pick and the list has no domain column.
func TestCreateLinkOnDomain(t *testing.T) {
	t.Parallel()
	b := setupDomains(t, true)
	ck, csrf := b.login()
	for _, path := range []string{"/dashboard/new", "/dashboard"} {
		wantContains(t, b.get(path, ck).Body.String(), `<select name="domain" class="mono">`,
			`<option value="" selected>hop.test</option>`, `<option value="go.example.com">go.example.com</option>`)
	}
	rec := b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"https://example.com/b"}, "slug": {"same"}, "domain": {"go.example.com"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/links/same?domain=go.example.com&created=1" {
		t.Errorf("after create: %q", loc)
	}
	rec = b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"https://example.com/a"}, "slug": {"same"}, "domain": {""}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/links/same?created=1" {
		t.Errorf("after create on the default domain: %q", loc)
	}
	// A taken slug on the picked domain: the form again, the domain still picked.
	rec = b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"https://example.com/c"}, "slug": {"same"}, "domain": {"go.example.com"}}, ck)
	wantStatus(t, rec, http.StatusConflict)
	wantContains(t, rec.Body.String(), `<option value="go.example.com" selected>`)
	if l, err := b.links.Get(context.Background(), "go.example.com", "same"); err != nil || l.OriginalURL != "https://example.com/b" {
		t.Fatalf("branded link: %+v %v", l, err)
	}

	one := setupDomains(t, false)
	ck, _ = one.login()
	one.links.add(links.Link{Slug: "solo", OriginalURL: "https://example.com/"})
	for _, path := range []string{"/dashboard/new", "/dashboard"} {
		if body := one.get(path, ck).Body.String(); strings.Contains(body, `name="domain"`) || strings.Contains(body, `<th>Domain</th>`) {
			t.Errorf("%s offers a domain with only the default one", path)
		}
	}
}

// The webhook form filters by domain: a select of the domains, empty for all.
func TestWebhookDomainFilter(t *testing.T) {
	t.Parallel()
	f := newFakeWebhooks()
	b := setup(t, Config{Webhooks: f, Domains: withFakeDomains})
	if _, err := b.domains.Add(context.Background(), "go.example.com", "", "", "", ""); err != nil {
		t.Fatal(err)
	}
	ck, csrf := b.login()
	wantContains(t, b.get("/dashboard/webhooks/new", ck).Body.String(), `<option value="">every domain</option>`, `<option value="go.example.com">go.example.com</option>`)
	rec := b.post("/dashboard/webhooks", url.Values{"csrf": {csrf}, "url": {"https://example.com/hook"}, "domain": {"go.example.com"}}, ck)
	wantStatus(t, rec, http.StatusCreated)
	wantContains(t, rec.Body.String(), `<dt>Domain</dt><dd class="mono">go.example.com</dd>`)
	ws, _ := f.List(context.Background())
	if len(ws) != 1 || ws[0].Domain == nil || *ws[0].Domain != "go.example.com" {
		t.Fatalf("webhooks %+v", ws)
	}
	wantContains(t, b.get("/dashboard/webhooks", ck).Body.String(), `<td data-label="Domain" class="mono">go.example.com</td>`)
	wantContains(t, b.get("/dashboard/webhooks/1", ck).Body.String(), `<dt>Domain</dt><dd class="mono">go.example.com</dd>`)

	// Its domain removed, the edit form still offers it, chosen, so saving another
	// change keeps the filter instead of widening it to every domain.
	if _, err := b.domains.Add(context.Background(), "other.example.com", "", "", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := b.domains.Remove(context.Background(), "go.example.com"); err != nil {
		t.Fatal(err)
	}
	wantContains(t, b.get("/dashboard/webhooks/1/edit", ck).Body.String(), `<option value="go.example.com" selected>go.example.com (removed)</option>`)
	rec = b.post("/dashboard/webhooks/1/edit", url.Values{"csrf": {csrf}, "url": {"https://example.com/v2"}, "domain": {"go.example.com"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if ws, _ := f.List(context.Background()); ws[0].Domain == nil || *ws[0].Domain != "go.example.com" || ws[0].URL != "https://example.com/v2" {
		t.Fatalf("after saving a new URL: %+v", ws[0])
	}
}
