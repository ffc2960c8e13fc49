package dashboard

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/stats"
	"github.com/labstack/echo/v4"
)

func TestLoginSucceedsWithValidKey(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})

	rec := b.get("/dashboard/links/abc?live=1", nil)
	wantStatus(t, rec, http.StatusSeeOther)
	if got, want := rec.Header().Get("Location"), "/dashboard/login?next="+url.QueryEscape("/dashboard/links/abc?live=1"); got != want {
		t.Fatalf("unauthenticated redirect to %q, want %q", got, want)
	}

	form := b.get("/dashboard/login?next="+url.QueryEscape("/dashboard/links/abc?live=1"), nil)
	wantStatus(t, form, http.StatusOK)
	wantHTML(t, form)
	wantContains(t, form.Body.String(), `name="api_key"`, `type="password"`, `value="/dashboard/links/abc?live=1"`)

	rec = b.post("/dashboard/login", url.Values{"api_key": {goodKey}, "next": {"/dashboard/links/abc?live=1"}}, nil)
	wantStatus(t, rec, http.StatusSeeOther)
	if got := rec.Header().Get("Location"); got != "/dashboard/links/abc?live=1" {
		t.Errorf("after sign-in redirect to %q, want the page asked for", got)
	}
	ck := sessionCookie(t, rec)
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/dashboard" || ck.Secure {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/dashboard, not Secure over http", ck)
	}
	if ck.MaxAge != int(DefaultSessionTTL.Seconds()) {
		t.Errorf("cookie Max-Age %d, want %d", ck.MaxAge, int(DefaultSessionTTL.Seconds()))
	}

	// Only the token's hash is stored, with the key id and a 12-hour expiry.
	token, ok := parseToken(ck.Value)
	if !ok {
		t.Fatalf("cookie value %q is not a 32-byte token", ck.Value)
	}
	var keyID int64
	var created, expires time.Time
	sum := sha256.Sum256(token)
	err := b.pool.QueryRow(context.Background(),
		`SELECT api_key_id, created_at, expires_at FROM dashboard_sessions WHERE token_hash = $1`, sum[:]).Scan(&keyID, &created, &expires)
	if err != nil {
		t.Fatalf("session row: %v", err)
	}
	if keyID != b.keyID || !created.Equal(testNow) || !expires.Equal(testNow.Add(12*time.Hour)) {
		t.Errorf("session row key %d created %s expires %s", keyID, created, expires)
	}
	var n int
	b.pool.QueryRow(context.Background(), `SELECT count(*) FROM dashboard_sessions WHERE token_hash = $1`, token).Scan(&n)
	if n != 0 {
		t.Error("the raw token is stored")
	}

	page := b.get("/dashboard", ck)
	wantStatus(t, page, http.StatusOK)
	wantContains(t, page.Body.String(), "Sign out")

	// Signed in, the sign-in page sends you on.
	wantStatus(t, b.get("/dashboard/login", ck), http.StatusSeeOther)
}

func TestLoginCookieIsSecureOverHTTPS(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{BaseURL: "https://sho.rt", SessionTTL: time.Hour})
	rec := b.do(request{method: http.MethodPost, path: "/dashboard/login", form: url.Values{"api_key": {goodKey}},
		header: map[string]string{"Origin": "https://sho.rt"}}) // the base URL's origin is accepted too
	wantStatus(t, rec, http.StatusSeeOther)
	ck := sessionCookie(t, rec)
	if !ck.Secure || ck.MaxAge != 3600 {
		t.Errorf("cookie %+v: want Secure and Max-Age 3600", ck)
	}
}

func TestLoginFailsWithBadKey(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for _, key := range []string{"hop_wrong-key-of-some-length", "", strings.Repeat("k", 600)} {
		rec := b.post("/dashboard/login", url.Values{"api_key": {key}, "next": {"/dashboard/links/x"}}, nil)
		wantStatus(t, rec, http.StatusUnauthorized)
		wantHTML(t, rec)
		body := rec.Body.String()
		wantContains(t, body, `role="alert"`, `name="api_key"`, `value="/dashboard/links/x"`)
		if len(rec.Result().Cookies()) != 0 {
			t.Errorf("key %.10q: a failed sign-in set %v", key, rec.Header().Values("Set-Cookie"))
		}
	}
	var n int
	b.pool.QueryRow(context.Background(), `SELECT count(*) FROM dashboard_sessions`).Scan(&n)
	if n != 0 {
		t.Errorf("%d sessions after failed sign-ins", n)
	}
}

func TestLoginNeverRedirectsOffSite(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for _, next := range []string{"//evil.example/", "https://evil.example/dashboard", "/dashboard//evil.example", "/dashboardx", `/dashboard/\evil`, "/dashboard/login"} {
		rec := b.post("/dashboard/login", url.Values{"api_key": {goodKey}, "next": {next}}, nil)
		wantStatus(t, rec, http.StatusSeeOther)
		if got := rec.Header().Get("Location"); got != "/dashboard" {
			t.Errorf("next=%q: redirected to %q, want /dashboard", next, got)
		}
	}
}

func TestRevokedKeyEndsSession(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, _ := b.login()
	if _, err := b.pool.Exec(context.Background(), `UPDATE api_keys SET revoked_at = now() WHERE id = $1`, b.keyID); err != nil {
		t.Fatal(err)
	}
	rec := b.get("/dashboard", ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); !strings.HasPrefix(loc, "/dashboard/login") {
		t.Errorf("redirected to %q, want the sign-in page", loc)
	}
	if c := sessionCookie(t, rec); c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("stale cookie not cleared: %+v", c)
	}
}

func TestSessionExpires(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, _ := b.login()
	b.h.now = func() time.Time { return testNow.Add(12*time.Hour + time.Second) }
	wantStatus(t, b.get("/dashboard", ck), http.StatusSeeOther)

	// The next sign-in deletes the expired session.
	b.login()
	var n int
	b.pool.QueryRow(context.Background(), `SELECT count(*) FROM dashboard_sessions`).Scan(&n)
	if n != 1 {
		t.Errorf("%d sessions after a sign-in following expiry, want 1", n)
	}
}

// A form sent after the session ended is not saved, and the person is told so: the
// sign-in page says nothing was saved and leads back to the page the form was on (its
// same-origin Referer), never to another site's.
func TestFormAfterSessionEndedSaysNothingWasSaved(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, _ := b.login()
	b.h.now = func() time.Time { return testNow.Add(12*time.Hour + time.Second) }
	for _, c := range []struct{ referer, next string }{
		{"http://hop.test/dashboard/new", "/dashboard/new"},
		{"https://s.example.com/dashboard/new", "/dashboard/new"}, // the public host, through the proxy below
		{"http://hop.test/dashboard/links/abc/edit?domain=go.example.com", "/dashboard/links/abc/edit?domain=go.example.com"},
		{"https://evil.example/dashboard/new", ""}, // another origin: no way back named
		{"", ""},
	} {
		hdr := map[string]string{"X-Forwarded-Host": "s.example.com"}
		if c.referer != "" {
			hdr["Referer"] = c.referer
		}
		rec := b.do(request{method: http.MethodPost, path: "/dashboard/links", form: url.Values{"url": {"https://example.com/kept"}, "csrf": {"x"}},
			cookie: ck, header: hdr})
		wantStatus(t, rec, http.StatusSeeOther)
		want := "/dashboard/login?unsaved=1"
		if c.next != "" {
			want = "/dashboard/login?" + url.Values{"unsaved": {"1"}, "next": {c.next}}.Encode()
		}
		if got := rec.Header().Get("Location"); got != want {
			t.Errorf("Referer %q: sent to %q, want %q", c.referer, got, want)
		}
	}
	b.links.mu.Lock()
	n := len(b.links.links)
	b.links.mu.Unlock()
	if n != 0 {
		t.Errorf("a form sent after the session ended created %d links", n)
	}
	page := b.get("/dashboard/login?unsaved=1&next=%2Fdashboard%2Fnew", nil).Body.String()
	wantContains(t, page, "what you just sent was not saved", `name="next" value="/dashboard/new"`)
	if strings.Contains(b.get("/dashboard/login", nil).Body.String(), "not saved") {
		t.Error("the plain sign-in page says something was not saved")
	}
	// Signing out of an ended session is no lost form.
	if got := b.do(request{method: http.MethodPost, path: "/dashboard/logout", form: url.Values{"csrf": {"x"}}, cookie: ck}).Header().Get("Location"); got != "/dashboard/login" {
		t.Errorf("sign-out after the session ended went to %q", got)
	}
}

func TestForgedFormsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, csrf := b.login()
	form := func(token string) url.Values {
		return url.Values{"csrf": {token}, "url": {"https://example.com"}}
	}

	for name, rec := range map[string]interface{ Result() *http.Response }{
		"no token":    b.post("/dashboard/links", url.Values{"url": {"https://example.com"}}, ck),
		"wrong token": b.post("/dashboard/links", form("AAAA"+csrf[4:]), ck),
		"cross-site origin": b.do(request{method: http.MethodPost, path: "/dashboard/links", form: form(csrf), cookie: ck,
			header: map[string]string{"Origin": "https://evil.example"}}),
		"null origin": b.do(request{method: http.MethodPost, path: "/dashboard/links", form: form(csrf), cookie: ck,
			header: map[string]string{"Origin": "null"}}),
		"cross-site referer": b.do(request{method: http.MethodPost, path: "/dashboard/links", form: form(csrf), cookie: ck,
			header: map[string]string{"Referer": "https://evil.example/page"}}),
		"cross-site sign-in": b.do(request{method: http.MethodPost, path: "/dashboard/login", form: url.Values{"api_key": {goodKey}},
			header: map[string]string{"Origin": "https://evil.example"}}),
		"logout without token": b.post("/dashboard/logout", url.Values{}, ck),
	} {
		res := rec.Result()
		if res.StatusCode != http.StatusForbidden || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: status %d %s, want a 403 HTML page", name, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if n := len(b.links.links); n != 0 {
		t.Errorf("%d links created by forged forms", n)
	}

	// The same form from this site, with or without Origin, works.
	wantStatus(t, b.post("/dashboard/links", form(csrf), ck), http.StatusSeeOther)
	wantStatus(t, b.do(request{method: http.MethodPost, path: "/dashboard/links", form: url.Values{"csrf": {csrf}, "url": {"https://example.org"}}, cookie: ck,
		header: map[string]string{"Referer": "http://hop.test/dashboard"}}), http.StatusSeeOther)

	// Another session's token does not fit this session.
	ck2, csrf2 := b.login()
	if csrf2 == csrf {
		t.Fatal("two sessions share a CSRF token")
	}
	wantStatus(t, b.post("/dashboard/links", form(csrf2), ck), http.StatusForbidden)
	wantStatus(t, b.post("/dashboard/links", url.Values{"csrf": {csrf2}, "url": {"https://example.net"}}, ck2), http.StatusSeeOther)
}

func TestOverviewShowsTotalsChartAndLinks(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.stats.overview = stats.Overview{
		Start: "2026-02-14", End: "2026-03-15", TZ: "UTC",
		TotalClicks: 12345, UniqueVisitors: 6789, BotClicks: 321, Links: 42,
		Daily:    days(30, func(i int) int64 { return int64(i * 10) }),
		TopLinks: []stats.TopLink{{Slug: "spring-sale", Clicks: 9000}, {Slug: "docs", Clicks: 3345}},
	}
	for i := range 25 {
		tags := []string{"misc"}
		if i%2 == 0 {
			tags = []string{"launch"}
		}
		b.links.add(links.Link{Slug: "link" + string(rune('a'+i)), OriginalURL: "https://example.com/" + string(rune('a'+i)), Tags: tags, TotalClicks: int64(i)})
	}
	ck, _ := b.login()

	rec := b.get("/dashboard", ck)
	wantStatus(t, rec, http.StatusOK)
	wantHTML(t, rec)
	body := rec.Body.String()
	wantContains(t, body,
		`data-total="clicks">12,345<`, `data-total="uniques">6,789<`, `data-total="bots">321<`, `data-total="links">42<`,
		"2026-02-14 to 2026-03-15",
		`<svg class="wide" viewBox="0 0 720 220"`, `<svg class="narrow" viewBox="0 0 340 190"`, `class="line"`, ">Feb 14<", // x axis label
		"2026-03-15: 290 clicks, 145 unique visitors", // the last bar's tooltip
		`href="/dashboard/links/spring-sale"`, "9,000",
		`href="/dashboard/links/linky"`, "https://example.com/y", // newest link first
		`name="csrf"`, `action="/dashboard/links"`,
	)
	if n := strings.Count(body, `<rect class="bar"`); n != 60 {
		t.Errorf("%d bars, want one per day (30) in each of the two layouts", n)
	}
	if strings.Contains(body, "linke<") {
		t.Error("the first page shows more than 20 links")
	}
	if r := b.stats.ranges[len(b.stats.ranges)-1]; r != (stats.Range{}) {
		t.Errorf("overview asked for %+v, want the default range", r)
	}

	// Next page, then search and tag filter with their own next page.
	next := "/dashboard?cursor=5"
	wantContains(t, body, `href="`+next+`"`)
	page2 := b.get(next, ck).Body.String()
	wantContains(t, page2, `href="/dashboard/links/linke"`, `href="/dashboard/links/linka"`)
	if strings.Contains(page2, "rel=\"next\"") {
		t.Error("last page has a next link")
	}
	wantContains(t, page2, `<a href="/dashboard" rel="first">`)
	if strings.Contains(body, `rel="first"`) {
		t.Error("the first page links to itself as the first page")
	}
	tagged := b.get("/dashboard?tag=launch&q=link", ck).Body.String()
	wantContains(t, tagged, `href="/dashboard/links/linky"`, `value="launch"`, `value="link"`)
	// A later page of a filtered list goes back to the filtered first page.
	wantContains(t, b.get("/dashboard?tag=launch&q=link&cursor=5", ck).Body.String(),
		`<a href="/dashboard?q=link&amp;tag=launch" rel="first">`)
	if strings.Contains(tagged, "/dashboard/links/linkx") {
		t.Error("tag filter shows an untagged link")
	}

	// A bad cursor is explained, not a broken page.
	bad := b.get("/dashboard?cursor=zzz", ck)
	wantStatus(t, bad, http.StatusOK)
	wantContains(t, bad.Body.String(), "cursor is not a cursor")
}

func TestOverviewWithoutClicks(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.stats.overview = stats.Overview{Start: "2026-02-14", End: "2026-03-15", TZ: "UTC", Daily: days(30, func(int) int64 { return 0 })}
	ck, _ := b.login()
	rec := b.get("/dashboard", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "no clicks in this range yet", "No links.")
}

// Campaign breakdowns appear for a link shared with campaign parameters, and not for
// one whose clicks carry none.
func TestLinkPageShowsCampaignsWhenTagged(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.links.add(links.Link{Slug: "tagged", OriginalURL: "https://example.com/", CreatedAt: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)})
	b.stats.link = stats.LinkStats{
		Start: "2026-03-01", End: "2026-03-07", TZ: "UTC", TotalClicks: 10,
		Daily: days(7, func(int) int64 { return 0 }),
		Campaigns: stats.Campaigns{
			UTMSources: map[string]int64{"newsletter": 6, "(none)": 4},
			UTMMediums: map[string]int64{"(none)": 10},
		},
	}
	ck, _ := b.login()
	rec := b.get("/dashboard/links/tagged", ck)
	wantStatus(t, rec, http.StatusOK)
	body := rec.Body.String()
	wantContains(t, body, "<h3>Campaign sources</h3>", ">newsletter<", "60.0%")
	for _, absent := range []string{"<h3>Campaign media</h3>", "<h3>Campaigns</h3>"} {
		if strings.Contains(body, absent) {
			t.Errorf("page shows %s for a breakdown without campaign values", absent)
		}
	}
}

func TestLinkPageShowsBreakdowns(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.links.add(links.Link{Slug: "spring-sale", OriginalURL: "https://example.com/sale", Tags: []string{"launch"}, TotalClicks: 1234,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)})
	b.stats.link = stats.LinkStats{
		Start: "2026-03-01", End: "2026-03-07", TZ: "Europe/Berlin",
		TotalClicks: 1000, UniqueVisitors: 800, BotClicks: 56,
		Daily:     days(7, func(i int) int64 { return int64(100 + i) }),
		Countries: map[string]int64{"US": 300, "DE": 600, "other": 100},
		Referers:  map[string]int64{"(direct)": 900, "news.ycombinator.com": 100},
		Browsers:  map[string]int64{"Chrome": 1000},
		OS:        map[string]int64{"iOS": 1000},
		Devices:   map[string]int64{"mobile": 700, "desktop": 300},
	}
	ck, _ := b.login()

	rec := b.get("/dashboard/links/spring-sale?start=2026-03-01&end=2026-03-07&tz=Europe/Berlin", ck)
	wantStatus(t, rec, http.StatusOK)
	body := rec.Body.String()
	wantContains(t, body,
		`value="http://hop.test/spring-sale"`, `data-copy="short-url"`,
		`href="https://example.com/sale"`, `href="/dashboard?tag=launch"`, "2026-01-02 03:04 UTC",
		`data-total="link-clicks">1,234<`,
		`src="/dashboard/links/spring-sale/qr?format=svg"`,
		`name="start" value="2026-03-01"`, `name="end" value="2026-03-07"`, `name="tz" value="Europe/Berlin"`,
		`data-total="clicks">1,000<`, `data-total="uniques">800<`, `data-total="bots">56<`,
		"<h3>Countries</h3>", "<h3>Referrers</h3>", "<h3>Browsers</h3>", "<h3>Operating systems</h3>", "<h3>Devices</h3>",
		"news.ycombinator.com", "(direct)", "60.0%",
	)
	if n := strings.Count(body, `<rect class="bar"`); n != 14 {
		t.Errorf("%d bars, want 7 in each of the two layouts", n)
	}
	// Largest first, "other" last.
	de, us, other := strings.Index(body, ">DE<"), strings.Index(body, ">US<"), strings.Index(body, ">other<")
	if de < 0 || us < 0 || other < 0 || !(de < us && us < other) {
		t.Errorf("countries out of order: DE at %d, US at %d, other at %d", de, us, other)
	}
	if got := b.stats.ranges[len(b.stats.ranges)-1]; got != (stats.Range{Start: "2026-03-01", End: "2026-03-07", TZ: "Europe/Berlin"}) {
		t.Errorf("stats asked for %+v", got)
	}
	if strings.Contains(body, `http-equiv="refresh"`) {
		t.Error("auto-refresh is on by default")
	}
	wantContains(t, body, `href="/dashboard/links/spring-sale?end=2026-03-07&amp;live=1&amp;start=2026-03-01&amp;tz=Europe%2FBerlin"`)

	live := b.get("/dashboard/links/spring-sale?live=1", ck).Body.String()
	wantContains(t, live, `<meta http-equiv="refresh" content="10">`, "Stop auto-refresh", `name="live" value="1"`)

	// A bad range is explained and the default range shown.
	bad := b.get("/dashboard/links/spring-sale?start=bad", ck)
	wantStatus(t, bad, http.StatusOK)
	wantContains(t, bad.Body.String(), "start: &#34;bad&#34; is not a date", "The default range is shown.")

	created := b.get("/dashboard/links/spring-sale?created=1", ck).Body.String()
	wantContains(t, created, "Link created.")
}

func TestUnknownPagesAreHTML404(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, _ := b.login()
	for _, path := range []string{"/dashboard/links/nope", "/dashboard/nowhere", "/dashboard/static/missing.css"} {
		rec := b.get(path, ck)
		wantStatus(t, rec, http.StatusNotFound)
		wantHTML(t, rec)
		wantContains(t, rec.Body.String(), "404")
	}
}

func TestInternalErrorsAreGenericHTML500(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, _ := b.login()
	b.h.stats = failingStats{}
	rec := b.get("/dashboard", ck)
	wantStatus(t, rec, http.StatusInternalServerError)
	wantHTML(t, rec)
	if strings.Contains(rec.Body.String(), "boom") {
		t.Error("the internal error leaks into the page")
	}
}

func TestCreateLinkForm(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, csrf := b.login()

	// Validation errors are shown inline, with what was typed.
	rec := b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"javascript:alert(1)"}, "slug": {"my-slug"}, "tags": {"a, b"}}, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantHTML(t, rec)
	wantContains(t, rec.Body.String(), `role="alert">url must be an absolute http or https URL<`,
		`name="url" required value="javascript:alert(1)"`, `name="slug" value="my-slug"`, `name="tags" value="a, b"`)

	// Success goes to the new link's page.
	rec = b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {" https://example.com/x "}, "slug": {"my-slug"}, "tags": {" a, ,b ,"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/links/my-slug?created=1" {
		t.Errorf("redirect to %q", loc)
	}
	l, err := b.links.Get(context.Background(), "", "my-slug")
	if err != nil {
		t.Fatal(err)
	}
	if l.OriginalURL != "https://example.com/x" || strings.Join(l.Tags, "|") != "a|b" {
		t.Errorf("created %+v", l)
	}

	// A taken slug is a 409 with the service's message.
	rec = b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"https://example.com/y"}, "slug": {"my-slug"}}, ck)
	wantStatus(t, rec, http.StatusConflict)
	wantContains(t, rec.Body.String(), "this slug is taken")

	// A generated slug.
	rec = b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"https://example.com/z"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/links/gen002?created=1" {
		t.Errorf("redirect to %q", loc)
	}

	// Signed out, the form sends you to sign in, saying it was not saved.
	rec = b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"https://example.com/w"}}, nil)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/login?unsaved=1" {
		t.Errorf("redirect to %q", loc)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, csrf := b.login()
	rec := b.post("/dashboard/logout", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/login" {
		t.Errorf("redirect to %q", loc)
	}
	if c := sessionCookie(t, rec); c.MaxAge >= 0 || c.Value != "" {
		t.Errorf("cookie not cleared: %+v", c)
	}
	// The old cookie is dead even if the browser kept it.
	wantStatus(t, b.get("/dashboard", ck), http.StatusSeeOther)
	var n int
	b.pool.QueryRow(context.Background(), `SELECT count(*) FROM dashboard_sessions`).Scan(&n)
	if n != 0 {
		t.Errorf("%d sessions after logout", n)
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.links.add(links.Link{Slug: "abc", OriginalURL: "https://example.com"})
	ck, _ := b.login()
	for _, path := range []string{"/dashboard/login", "/dashboard", "/dashboard/links/abc", "/dashboard/links/missing"} {
		c := ck
		if path == "/dashboard/login" {
			c = nil
		}
		h := b.get(path, c).Header()
		for k, want := range map[string]string{
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "same-origin",
			"X-Content-Type-Options": "nosniff",
			"Cache-Control":          "no-store",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", path, k, got, want)
			}
		}
		csp := h.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "img-src 'self' data:", "style-src 'self';", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows inline code: %q", path, csp)
		}
	}

	// Static assets: embedded, versioned, cached for long.
	page := b.get("/dashboard/login", nil).Body.String()
	for _, want := range []string{b.h.cssURL, b.h.jsURL} {
		wantContains(t, page, want)
		rec := b.get(want, nil)
		wantStatus(t, rec, http.StatusOK)
		if cc := rec.Header().Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") {
			t.Errorf("%s: Cache-Control %q", want, cc)
		}
		etag := rec.Header().Get("ETag")
		if rec := b.do(request{method: http.MethodGet, path: want, header: map[string]string{"If-None-Match": etag}}); rec.Code != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: status %d, want 304", want, rec.Code)
		}
	}
	if ct := b.get("/dashboard/static/style.css", nil).Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, "text/css") {
		t.Errorf("style.css Content-Type %q", ct)
	}
}

func TestTemplatesEscapeUserData(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	evil := `https://example.com/?q=<script>alert(1)</script>&x="onmouseover="alert(2)`
	b.links.add(links.Link{Slug: "evil", OriginalURL: evil, Tags: []string{`<img src=x onerror=alert(3)>`}})
	b.stats.overview = stats.Overview{TopLinks: []stats.TopLink{{Slug: "<b>top</b>", Clicks: 1}}}
	b.stats.link = stats.LinkStats{Referers: map[string]int64{`<script>alert(4)</script>`: 1}}
	ck, _ := b.login()

	for _, path := range []string{"/dashboard", "/dashboard/links/evil", "/dashboard?q=" + url.QueryEscape(`"><script>alert(5)</script>`)} {
		rec := b.get(path, ck)
		wantStatus(t, rec, http.StatusOK)
		body := rec.Body.String()
		for _, raw := range []string{"<script>alert", "<img src=x", `"onmouseover=`, "<b>top</b>"} {
			if strings.Contains(body, raw) {
				t.Errorf("%s: unescaped %q in page", path, raw)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(") && !strings.Contains(body, "&lt;img src=x") {
			t.Errorf("%s: escaped user data not shown", path)
		}
	}

	// The create form echoes what was typed, escaped.
	ck, csrf := b.login()
	rec := b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {`"><script>alert(6)</script>`}}, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	if strings.Contains(rec.Body.String(), "<script>alert(6)") {
		t.Error("the create form echoes unescaped input")
	}
}

func TestLoginLimitAppliesToSignInOnly(t *testing.T) {
	t.Parallel()
	var calls int
	limit := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			calls++
			if calls > 2 {
				return echo.NewHTTPError(http.StatusTooManyRequests)
			}
			return next(c)
		}
	}
	b := setup(t, Config{LoginLimit: limit})
	b.login()
	b.get("/dashboard/login", nil)
	b.post("/dashboard/login", url.Values{"api_key": {"nope"}}, nil)
	rec := b.post("/dashboard/login", url.Values{"api_key": {goodKey}}, nil)
	wantStatus(t, rec, http.StatusTooManyRequests)
	wantHTML(t, rec)
	wantContains(t, rec.Body.String(), "Too many attempts")
	if calls != 3 {
		t.Errorf("limiter ran %d times, want once per sign-in POST (3)", calls)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	for name, cfg := range map[string]Config{
		"relative base":    {BaseURL: "/x"},
		"ftp base":         {BaseURL: "ftp://x"},
		"negative session": {BaseURL: "http://x", SessionTTL: -time.Second},
	} {
		if _, err := New(cfg, b.links, b.stats, fakeKeys{}, b.pool, nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := New(Config{BaseURL: "http://x"}, nil, b.stats, fakeKeys{}, b.pool, nil); err == nil {
		t.Error("New accepted a nil LinkService")
	}
}

// A refused range is explained in a sentence of its own, and the range form keeps what
// was typed, so a typo in the time zone is corrected, not typed again; the numbers
// are the default range's. An accepted range fills the form with the range shown.
func TestRefusedRangeKeepsTypedValues(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.links.add(links.Link{Slug: "ranged", OriginalURL: "https://example.com/r"})
	b.stats.link = stats.LinkStats{Start: "2026-02-14", End: "2026-03-15", TZ: "UTC", TotalClicks: 7}
	ck, _ := b.login()

	body := b.get("/dashboard/links/ranged?start=bad&end=2026-03-07&tz=Europe/Berln", ck).Body.String()
	wantContains(t, body, `is not a date in YYYY-MM-DD form. The default range is shown.`,
		`name="start" value="bad"`, `name="end" value="2026-03-07"`, `name="tz" value="Europe/Berln"`, `data-total="clicks">7<`)

	body = b.get("/dashboard/links/ranged", ck).Body.String()
	wantContains(t, body, `name="start" value="2026-02-14"`, `name="end" value="2026-03-15"`, `name="tz" value="UTC"`)
	if strings.Contains(body, `class="error"`) {
		t.Error("an accepted range is reported as refused")
	}
}

// On a base URL with an IPv6 address the default domain's links are named without
// ?domain=, as on any other: links name that domain "[::1]", with the brackets.
func TestDefaultDomainOnIPv6(t *testing.T) {
	t.Parallel()
	for base, host := range map[string]string{"http://[::1]:8080": "[::1]", "http://[::1]": "[::1]", "https://Go.Example.com.": "go.example.com"} {
		b := setup(t, Config{BaseURL: base})
		if got := b.h.linkPath("launch", host, "/edit"); got != "/dashboard/links/launch/edit" {
			t.Errorf("base URL %s: the default domain's link page is %s, want /dashboard/links/launch/edit", base, got)
		}
		if got := b.h.linkPath("launch", "go.other.com", ""); got != "/dashboard/links/launch?domain=go.other.com" {
			t.Errorf("base URL %s: another domain's link page is %s", base, got)
		}
	}
}
