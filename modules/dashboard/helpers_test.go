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
)

// testNow is the dashboard's clock in tests.
var testNow = time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)

// goodKey is the API key the fake verifier accepts.
const goodKey = "hop_test-key-that-is-long-enough"

type bundle struct {
	t     *testing.T
	pool  *pgxpool.Pool
	h     *Handler
	e     *echo.Echo
	links *fakeLinks
	stats *fakeStats
	keyID int64
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
		ErrForbiddenOrigin: "403 cross-origin-form", ErrBadCSRF: "403 csrf"})
)

func (f fakeKeys) Verify(_ context.Context, key string) (int64, error) {
	if id, ok := f[key]; ok {
		return id, nil
	}
	return 0, errUnauthorized
}

// fakeLinks is an in-memory LinkService with the links module's user-facing errors.
type fakeLinks struct {
	mu      sync.Mutex
	baseURL string
	links   []Link // oldest first
}

func newFakeLinks(baseURL string) *fakeLinks { return &fakeLinks{baseURL: baseURL} }

func (f *fakeLinks) add(l Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l.ShortURL = f.baseURL + "/" + l.Slug
	if l.CreatedAt.IsZero() {
		l.CreatedAt = testNow
	}
	if l.Status == "" {
		l.Status = StatusActive
	}
	if l.RedirectStatus == 0 {
		l.RedirectStatus = 302
	}
	f.links = append(f.links, l)
}

func (f *fakeLinks) List(_ context.Context, q ListQuery) (LinkPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := len(f.links)
	if q.Cursor != "" {
		n, err := strconv.Atoi(q.Cursor)
		if err != nil || n < 0 || n > len(f.links) {
			return LinkPage{}, problem.Invalid("cursor is not a cursor returned by this API")
		}
		before = n
	}
	var page LinkPage
	for i := before - 1; i >= 0; i-- {
		l := f.links[i]
		if q.Q != "" && !strings.Contains(l.Slug, q.Q) && !strings.Contains(l.OriginalURL, q.Q) {
			continue
		}
		if q.Tag != "" && !slices.Contains(l.Tags, q.Tag) {
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

func (f *fakeLinks) Get(_ context.Context, slug string) (Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.links {
		if l.Slug == slug {
			return l, nil
		}
	}
	return Link{}, errNotFound
}

func (f *fakeLinks) Create(ctx context.Context, n NewLink) (Link, error) {
	u, err := url.Parse(n.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Link{}, problem.Invalid("url must be an absolute http or https URL")
	}
	if n.Slug == "" {
		f.mu.Lock()
		n.Slug = fmt.Sprintf("gen%03d", len(f.links)+1)
		f.mu.Unlock()
	}
	if _, err := f.Get(ctx, n.Slug); err == nil {
		return Link{}, errSlugTaken
	}
	l := Link{Slug: n.Slug, OriginalURL: n.URL, Tags: n.Tags, ExpiresAt: n.ExpiresAt, MaxClicks: n.MaxClicks,
		HasPassword: n.Password != "", RedirectStatus: n.RedirectStatus, ForwardQuery: n.ForwardQuery, ExpiredURL: n.ExpiredURL}
	if l.Tags == nil {
		l.Tags = []string{}
	}
	f.add(l)
	return f.Get(ctx, n.Slug)
}

// Update replaces every field, as the app's adapter does, refusing bad URLs like Create.
func (f *fakeLinks) Update(_ context.Context, slug string, e LinkEdit) (Link, error) {
	if u, err := url.Parse(e.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Link{}, problem.Invalid("url must be an absolute http or https URL")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range f.links {
		if l.Slug != slug {
			continue
		}
		l.OriginalURL, l.Tags, l.ExpiresAt, l.MaxClicks = e.URL, e.Tags, e.ExpiresAt, e.MaxClicks
		l.RedirectStatus, l.ForwardQuery, l.ExpiredURL = e.RedirectStatus, e.ForwardQuery, e.ExpiredURL
		if e.Password != nil {
			l.HasPassword = *e.Password != ""
		}
		f.links[i] = l
		return l, nil
	}
	return Link{}, errNotFound
}

// Delete removes the link; the fake does not keep deleted slugs reserved.
func (f *fakeLinks) Delete(_ context.Context, slug string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range f.links {
		if l.Slug == slug {
			f.links = slices.Delete(f.links, i, i+1)
			return nil
		}
	}
	return errNotFound
}

// fakeStats answers canned stats and records the ranges asked for. A range whose
// Start is "bad" is refused as the stats module would.
type fakeStats struct {
	mu       sync.Mutex
	overview Overview
	link     LinkStats
	ranges   []Range
}

func (f *fakeStats) LinkStats(_ context.Context, slug string, r Range) (LinkStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, r)
	if r.Start == "bad" {
		return LinkStats{}, problem.Invalid("start: %q is not a date in YYYY-MM-DD form", r.Start)
	}
	return f.link, nil
}

func (f *fakeStats) Overview(_ context.Context, r Range) (Overview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, r)
	return f.overview, nil
}

// days returns n zero-filled days ending 2026-03-15 with clicks(i) for day i.
func days(n int, clicks func(i int) int64) []Day {
	out := make([]Day, n)
	start := testNow.AddDate(0, 0, -(n - 1))
	for i := range out {
		out[i] = Day{Date: start.AddDate(0, 0, i).Format(time.DateOnly), Clicks: clicks(i), UniqueVisitors: clicks(i) / 2}
	}
	return out
}

var errBoom = errors.New("boom")

// failingStats fails every call with an internal error.
type failingStats struct{}

func (failingStats) LinkStats(context.Context, string, Range) (LinkStats, error) {
	return LinkStats{}, errBoom
}
func (failingStats) Overview(context.Context, Range) (Overview, error) { return Overview{}, errBoom }
