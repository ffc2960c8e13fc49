package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/problem/problemtest"
	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/stats"
)

// testNow is the dashboard's clock in tests.
var testNow = time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)

// goodKey is the API key the fake verifier accepts.
const goodKey = "hop_test-key-that-is-long-enough"

type bundle struct {
	t       *testing.T
	pool    *pgxpool.Pool
	h       *Handler
	e       *echo.Echo
	links   *fakeLinks
	stats   *fakeStats
	domains *fakeDomains // with Config.Domains: withFakeDomains
	keyID   int64
}

// setup builds the dashboard over a fresh database with one API key, fake link and
// stats services, and a real Echo router whose own error handler answers problem JSON,
// as the app's does, so a test notices an error that escaped the dashboard.
func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	db := testenv.NewDB(t)
	var keyID int64
	err := db.Pool.QueryRow(context.Background(),
		`INSERT INTO api_keys (name, prefix, key_hash) VALUES ('test', 'hop_test', '\x01') RETURNING id`).Scan(&keyID)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://hop.test"
	}
	if cfg.Describe == nil {
		cfg.Describe = testDescribe
	}
	b := &bundle{t: t, pool: db.Pool, links: newFakeLinks(cfg.BaseURL), stats: &fakeStats{}, keyID: keyID}
	if cfg.Domains == withFakeDomains {
		b.domains = newFakeDomains(b.links)
		cfg.Domains = b.domains
	}
	b.h, err = New(cfg, b.links, b.stats, fakeKeys{goodKey: keyID}, db.Pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.h.now = func() time.Time { return testNow }
	b.e = echo.New()
	b.e.HTTPErrorHandler = func(err error, c echo.Context) {
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		c.Response().WriteHeader(http.StatusTeapot)
		fmt.Fprintf(c.Response(), `{"detail":%q}`, err.Error())
	}
	// Like the app's request log, this middleware renders errors itself (HandleError).
	logged := middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, HandleError: true,
		LogValuesFunc: func(echo.Context, middleware.RequestLoggerValues) error { return nil },
	})
	b.h.Register(b.e, logged)
	return b
}

// request is one request to the dashboard.
type request struct {
	method, path string
	form         url.Values
	cookie       *http.Cookie
	header       map[string]string
}

func (b *bundle) do(r request) *httptest.ResponseRecorder {
	b.t.Helper()
	var body *strings.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req := httptest.NewRequest(r.method, "http://hop.test"+r.path, body)
	if r.form != nil {
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationForm)
	}
	if r.cookie != nil {
		req.AddCookie(r.cookie)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	b.e.ServeHTTP(rec, req)
	return rec
}

func (b *bundle) get(path string, cookie *http.Cookie) *httptest.ResponseRecorder {
	b.t.Helper()
	return b.do(request{method: http.MethodGet, path: path, cookie: cookie})
}

func (b *bundle) post(path string, form url.Values, cookie *http.Cookie) *httptest.ResponseRecorder {
	b.t.Helper()
	return b.do(request{method: http.MethodPost, path: path, form: form, cookie: cookie,
		header: map[string]string{"Origin": "http://hop.test"}})
}

// login signs in with goodKey and returns the session cookie and a CSRF token.
func (b *bundle) login() (*http.Cookie, string) {
	b.t.Helper()
	rec := b.post("/dashboard/login", url.Values{"api_key": {goodKey}}, nil)
	if rec.Code != http.StatusSeeOther {
		b.t.Fatalf("login: status %d, body %s", rec.Code, rec.Body)
	}
	ck := sessionCookie(b.t, rec)
	page := b.get("/dashboard", ck)
	if page.Code != http.StatusOK {
		b.t.Fatalf("overview after login: status %d, body %s", page.Code, page.Body)
	}
	return ck, csrfOf(b.t, page.Body.String())
}

func sessionCookie(t *testing.T, rec *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.Name == cookieName {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", cookieName, rec.Header().Values("Set-Cookie"))
	return nil
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", body)
	}
	return m[1]
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, want int) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status %d, want %d; body:\n%s", rec.Code, want, rec.Body)
	}
}

func wantHTML(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q, want HTML; body:\n%s", ct, rec.Body)
	}
}

func wantContains(t *testing.T, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %q", s)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
}

// fakeKeys accepts the keys it maps to ids, like apikey.Store.Verify.
type fakeKeys map[string]int64

// The fakes' failures, and app's error table for them.
var (
	errUnauthorized = errors.New("a valid API key is required")
	errNotFound     = errors.New("no link has this slug")
	errSlugTaken    = errors.New("this slug is taken")
	testDescribe    = problemtest.Describe(map[error]string{
		errUnauthorized: "401 unauthorized", errNotFound: "404 link-not-found", errSlugTaken: "409 slug-taken",
		ErrForbiddenOrigin: "403 cross-origin-form", ErrBadCSRF: "403 csrf",
		domains.ErrNotFound: "404 domain-not-found", domains.ErrHostTaken: "409 domain-exists",
		domains.ErrHasLinks: "409 domain-has-links", domains.ErrDefaultDomain: "409 default-domain"})
)

func (f fakeKeys) Verify(_ context.Context, key string) (int64, error) {
	if id, ok := f[key]; ok {
		return id, nil
	}
	return 0, errUnauthorized
}

// fakeLinks is an in-memory LinkService with the links module's user-facing errors.
// A link's Domain "" is the default domain; links on other domains keep their host.
type fakeLinks struct {
	mu      sync.Mutex
	baseURL string
	links   []links.Link // oldest first
}

func newFakeLinks(baseURL string) *fakeLinks { return &fakeLinks{baseURL: baseURL} }

func (f *fakeLinks) add(l links.Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l.ShortURL = f.baseURL + "/" + l.Slug
	if l.Domain != "" {
		l.ShortURL = "https://" + l.Domain + "/" + l.Slug
	}
	if l.CreatedAt.IsZero() {
		l.CreatedAt = testNow
	}
	if l.Status == "" {
		l.Status = links.StatusActive
	}
	if l.RedirectStatus == 0 {
		l.RedirectStatus = 302
	}
	f.links = append(f.links, l)
}

func (f *fakeLinks) List(_ context.Context, q links.ListQuery) (links.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := len(f.links)
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil || n < 0 || n > len(f.links) {
			return links.Page{}, problem.Invalid("cursor is not a cursor returned by this API")
		}
		before = n
	}
	var page links.Page
	for i := before - 1; i >= 0; i-- {
		l := f.links[i]
		if q.Q != "" && !strings.Contains(l.Slug, q.Q) && !strings.Contains(l.OriginalURL, q.Q) {
			continue
		}
		if q.Tag != "" && !slices.Contains(l.Tags, q.Tag) {
			continue
		}
		if q.Domain != "" && !sameDomain(l.Domain, q.Domain) {
			continue
		}
		if len(page.Links) == q.Limit {
			page.NextCursor = strconv.Itoa(i + 1)
			break
		}
		page.Links = append(page.Links, l)
	}
	return page, nil
}

// sameDomain reports whether a link's domain is host: "" and "hop.test" are the default.
func sameDomain(linkDomain, host string) bool {
	norm := func(h string) string {
		if h == "hop.test" {
			return ""
		}
		return h
	}
	return norm(linkDomain) == norm(host)
}

func (f *fakeLinks) Get(_ context.Context, host, slug string) (links.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.links {
		if l.Slug == slug && sameDomain(l.Domain, host) {
			return l, nil
		}
	}
	return links.Link{}, errNotFound
}

func (f *fakeLinks) Create(ctx context.Context, n links.NewLink) (links.Link, error) {
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return links.Link{}, problem.Invalid("url must be an absolute http or https URL")
	}
	if n.Slug == "" {
		f.mu.Lock()
		n.Slug = fmt.Sprintf("gen%03d", len(f.links)+1)
		f.mu.Unlock()
	}
	if _, err := f.Get(ctx, n.Domain, n.Slug); err == nil {
		return links.Link{}, errSlugTaken
	}
	l := links.Link{Slug: n.Slug, Domain: n.Domain, OriginalURL: n.URL, Tags: n.Tags, ExpiresAt: n.ExpiresAt, MaxClicks: n.MaxClicks,
		HasPassword: n.Password != "", RedirectStatus: n.RedirectStatus, ForwardQuery: n.ForwardQuery == nil || *n.ForwardQuery,
		ExpiredURL: n.ExpiredURL}
	if l.ExpiredURL != nil && *l.ExpiredURL == "" {
		l.ExpiredURL = nil
	}
	if l.Tags == nil {
		l.Tags = []string{}
	}
	f.add(l)
	return f.Get(ctx, n.Domain, n.Slug)
}

// Update applies the fields p sets, refusing bad URLs like Create and, like the links
// module, an expiry that is not in the future.
func (f *fakeLinks) Update(_ context.Context, host, slug string, p links.Patch) (links.Link, error) {
	if p.URL != nil {
		if u, err := url.Parse(*p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return links.Link{}, problem.Invalid("url must be an absolute http or https URL")
		}
	}
	if p.ExpiresAt != nil && *p.ExpiresAt != nil && !(*p.ExpiresAt).After(testNow) {
		return links.Link{}, problem.Invalid("expires_at must be in the future")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range f.links {
		if l.Slug != slug || !sameDomain(l.Domain, host) {
			continue
		}
		if p.URL != nil {
			l.OriginalURL = *p.URL
		}
		if p.Tags != nil {
			l.Tags = *p.Tags
		}
		if p.ExpiresAt != nil {
			l.ExpiresAt = *p.ExpiresAt
		}
		if p.MaxClicks != nil {
			l.MaxClicks = *p.MaxClicks
		}
		if p.RedirectStatus != nil {
			l.RedirectStatus = *p.RedirectStatus
		}
		if p.ForwardQuery != nil {
			l.ForwardQuery = *p.ForwardQuery
		}
		if p.ExpiredURL != nil {
			l.ExpiredURL = *p.ExpiredURL
			if l.ExpiredURL != nil && *l.ExpiredURL == "" {
				l.ExpiredURL = nil
			}
		}
		if p.Password != nil {
			l.HasPassword = *p.Password != ""
		}
		f.links[i] = l
		return l, nil
	}
	return links.Link{}, errNotFound
}

// Delete removes the link; the fake does not keep deleted slugs reserved.
func (f *fakeLinks) Delete(_ context.Context, host, slug string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range f.links {
		if l.Slug == slug && sameDomain(l.Domain, host) {
			f.links = slices.Delete(f.links, i, i+1)
			return nil
		}
	}
	return errNotFound
}

// fakeStats answers canned stats and records the ranges and hosts asked for. A range
// whose Start is "bad" is refused as the stats module would.
type fakeStats struct {
	mu       sync.Mutex
	overview stats.Overview
	hours    []stats.HourStats
	link     stats.LinkStats
	ranges   []stats.Range
	hosts    []string // LinkStats' hosts
}

func (f *fakeStats) LinkStats(_ context.Context, host, slug string, r stats.Range) (stats.LinkStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, r)
	f.hosts = append(f.hosts, host)
	if r.Start == "bad" {
		return stats.LinkStats{}, problem.Invalid("start: %q is not a date in YYYY-MM-DD form", r.Start)
	}
	return f.link, nil
}

func (f *fakeStats) Overview(_ context.Context, _ string, r stats.Range) (stats.Overview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, r)
	return f.overview, nil
}

func (f *fakeStats) RecentHours(context.Context, int) ([]stats.HourStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hours, nil
}

// days returns n zero-filled days ending 2026-03-15 with clicks(i) for day i.
func days(n int, clicks func(i int) int64) []stats.DayStats {
	out := make([]stats.DayStats, n)
	start := testNow.AddDate(0, 0, -(n - 1))
	for i := range out {
		out[i] = stats.DayStats{Date: start.AddDate(0, 0, i).Format(time.DateOnly), Clicks: clicks(i), UniqueVisitors: clicks(i) / 2}
	}
	return out
}

var errBoom = errors.New("boom")

// failingStats fails every call with an internal error.
type failingStats struct{}

func (failingStats) LinkStats(context.Context, string, string, stats.Range) (stats.LinkStats, error) {
	return stats.LinkStats{}, errBoom
}
func (failingStats) Overview(context.Context, string, stats.Range) (stats.Overview, error) {
	return stats.Overview{}, errBoom
}
func (failingStats) RecentHours(context.Context, int) ([]stats.HourStats, error) { return nil, errBoom }
