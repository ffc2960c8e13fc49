package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hop-dev/hop/modules/links"
)

// The create form sends every option; what cannot be read is explained with the
// form shown again as typed (never the password).
func TestCreateFormEveryOption(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ck, csrf := b.login()
	form := url.Values{"csrf": {csrf}, "url": {"https://example.com/all"}, "slug": {"all-options"}, "tags": {"a, b"},
		"expires_at": {"2031-05-06T07:08"}, "max_clicks": {"25"}, "password": {"secret-words"}, "redirect_status": {"307"},
		"forward_query": {"0"}, "expired_url": {"https://example.com/over"}}
	rec := b.post("/dashboard/links", form, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	l, err := b.links.Get(context.Background(), "", "all-options")
	if err != nil {
		t.Fatal(err)
	}
	if l.ExpiresAt == nil || !l.ExpiresAt.Equal(time.Date(2031, 5, 6, 7, 8, 0, 0, time.UTC)) || l.MaxClicks == nil || *l.MaxClicks != 25 ||
		!l.HasPassword || l.RedirectStatus != 307 || l.ForwardQuery || l.ExpiredURL == nil || *l.ExpiredURL != "https://example.com/over" || strings.Join(l.Tags, ",") != "a,b" {
		t.Errorf("created %+v", l)
	}

	// Without the forward_query field at all (an old form), forwarding stays on.
	rec = b.post("/dashboard/links", url.Values{"csrf": {csrf}, "url": {"https://example.com/x"}, "slug": {"default-fq"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if l, _ := b.links.Get(context.Background(), "", "default-fq"); !l.ForwardQuery || l.RedirectStatus != 302 {
		t.Errorf("defaults: %+v", l)
	}

	form.Set("slug", "bad-limit")
	form.Set("max_clicks", "lots")
	rec = b.post("/dashboard/links", form, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	body := rec.Body.String()
	wantContains(t, body, "click limit must be a whole number", `name="max_clicks" min="1" step="1" inputmode="numeric" value="lots"`,
		`name="expires_at" value="2031-05-06T07:08"`, `<option value="307" selected>`)
	if strings.Contains(body, "secret-words") {
		t.Error("the form sends the password back")
	}
	form.Set("max_clicks", "")
	form.Set("expires_at", "next tuesday")
	rec = b.post("/dashboard/links", form, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantContains(t, rec.Body.String(), "expiry must be a date and time")
}

// The edit form shows the link's settings, saves every one, and keeps or removes
// the password; delete asks first, then removes the link.
func TestEditAndDeleteLink(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	limit := int64(9)
	exp := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	b.links.add(links.Link{Slug: "edit-me", OriginalURL: "https://example.com/old", Tags: []string{"x"}, MaxClicks: &limit, ExpiresAt: &exp,
		HasPassword: true, RedirectStatus: 301, ForwardQuery: true, ClicksUsed: 4})
	ck, csrf := b.login()

	page := b.get("/dashboard/links/edit-me", ck).Body.String()
	wantContains(t, page, `data-field="limit">4 of 9 used<`, `class="badge badge-active">active<`, "301, forwards the query string",
		`href="/dashboard/links/edit-me/qr" download="edit-me-qr.png"`, `href="/dashboard/links/edit-me/qr?format=svg" download="edit-me-qr.svg"`,
		`href="/dashboard/links/edit-me/edit"`, `href="/dashboard/links/edit-me/delete"`)

	rec := b.get("/dashboard/links/edit-me/edit", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), `value="https://example.com/old"`, `name="expires_at" value="2030-01-02T03:04"`,
		`value="9"`, `<option value="301" selected>`, `name="remove_password"`, `action="/dashboard/links/edit-me"`, `name="csrf"`)

	// Blank password keeps it; everything else is replaced.
	rec = b.post("/dashboard/links/edit-me", url.Values{"csrf": {csrf}, "url": {"https://example.com/new"}, "tags": {"y, z"},
		"expires_at": {""}, "max_clicks": {""}, "redirect_status": {"308"}, "forward_query": {"0"}, "expired_url": {""}, "password": {""}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/links/edit-me?saved=1" {
		t.Errorf("redirect to %q", loc)
	}
	l, _ := b.links.Get(context.Background(), "", "edit-me")
	if l.OriginalURL != "https://example.com/new" || l.ExpiresAt != nil || l.MaxClicks != nil || l.RedirectStatus != 308 || l.ForwardQuery ||
		!l.HasPassword || strings.Join(l.Tags, ",") != "y,z" {
		t.Errorf("after edit %+v", l)
	}
	rec = b.post("/dashboard/links/edit-me", url.Values{"csrf": {csrf}, "url": {"https://example.com/new"}, "remove_password": {"1"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if l, _ := b.links.Get(context.Background(), "", "edit-me"); l.HasPassword {
		t.Error("remove_password kept the password")
	}
	// A refused edit shows the form again with the service's message.
	rec = b.post("/dashboard/links/edit-me", url.Values{"csrf": {csrf}, "url": {"ftp://example.com"}}, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantContains(t, rec.Body.String(), "url must be an absolute http or https URL", `value="ftp://example.com"`)
	// Without the CSRF token nothing changes.
	rec = b.post("/dashboard/links/edit-me", url.Values{"url": {"https://example.com/forged"}}, ck)
	wantStatus(t, rec, http.StatusForbidden)

	rec = b.get("/dashboard/links/edit-me/delete", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "Deleting is final", `action="/dashboard/links/edit-me/delete"`)
	rec = b.post("/dashboard/links/edit-me/delete", url.Values{}, ck)
	wantStatus(t, rec, http.StatusForbidden)
	rec = b.post("/dashboard/links/edit-me/delete", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard?deleted=edit-me" {
		t.Errorf("redirect to %q", loc)
	}
	wantContains(t, b.get("/dashboard?deleted=edit-me", ck).Body.String(), `Link <span class="slug">edit-me</span> deleted.`)
	if _, err := b.links.Get(context.Background(), "", "edit-me"); err == nil {
		t.Error("the link is still there")
	}
}

// An expired or used-up link shows a placeholder, never a QR image that would fail.
func TestUnavailableQRShowsPlaceholder(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.links.add(links.Link{Slug: "gone-by", OriginalURL: "https://example.com/", Status: links.StatusExpired})
	b.links.add(links.Link{Slug: "used-up", OriginalURL: "https://example.com/", Status: links.StatusLimitReached})
	ck, _ := b.login()
	for slug, why := range map[string]string{"gone-by": "has expired", "used-up": "has reached its click limit"} {
		body := b.get("/dashboard/links/"+slug, ck).Body.String()
		wantContains(t, body, `class="qr-placeholder"`, why)
		if strings.Contains(body, `class="qr"`) || strings.Contains(body, "/qr") {
			t.Errorf("%s shows a QR image", slug)
		}
	}
	wantContains(t, b.get("/dashboard", ck).Body.String(), `badge-expired">expired<`, `badge-limit_reached">limit reached<`)
}

// Without a configured origin the short URL is shown on the one the dashboard is on.
func TestShortURLUsesVisitedOriginWhenUnset(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{BaseURL: "http://localhost:8080", BaseURLFromRequest: true})
	b.links.add(links.Link{Slug: "here", OriginalURL: "https://example.com/"})
	ck, _ := b.login()
	wantContains(t, b.get("/dashboard/links/here", ck).Body.String(), `value="http://hop.test/here"` /* the request's Host, not localhost:8080 */)
}

func TestChartLabelsTodayAndKeepsApart(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 7, 30, 365} {
		c := newChart(days(n, func(i int) int64 { return int64(i) }))
		for _, layout := range []chart{c, *c.Narrow} {
			labels := layout.XLabels
			if want := testNow.Format("Jan 2"); labels[len(labels)-1].Label != want {
				t.Errorf("%d days, %s: last label %q, want today's %q", n, layout.Class, labels[len(labels)-1].Label, want)
			}
			// Each label is at most ~7 characters of FontSize; centres this far apart never touch.
			for i := 1; i < len(labels); i++ {
				if gap := labels[i].Pos - labels[i-1].Pos; gap < 4.5*layout.FontSize {
					t.Errorf("%d days, %s: labels %d and %d are %.1f apart", n, layout.Class, i-1, i, gap)
				}
			}
		}
	}
}

func FuzzReadForm(f *testing.F) {
	f.Add("https://example.com", "slug", "a, b", "2030-01-02T03:04", "5", "302", "1", "https://example.com/x", "pw")
	f.Add("", "", "", "2030-01-02T03:04:05", "-1", "x", "0", "", "")
	f.Fuzz(func(t *testing.T, u, slug, tags, exp, maxClicks, status, fq, expired, pw string) {
		v := url.Values{"url": {u}, "slug": {slug}, "tags": {tags}, "expires_at": {exp}, "max_clicks": {maxClicks},
			"redirect_status": {status}, "forward_query": {fq}, "expired_url": {expired}, "password": {pw}}
		f, n, err := readForm(v)
		if err != nil {
			return
		}
		if n.URL != strings.TrimSpace(u) || f.URL != n.URL || (strings.TrimSpace(exp) == "") != (n.ExpiresAt == nil) || (strings.TrimSpace(maxClicks) == "") != (n.MaxClicks == nil) {
			t.Fatalf("form %+v read as %+v", v, n)
		}
		for _, tag := range n.Tags {
			if tag == "" || tag != strings.TrimSpace(tag) {
				t.Fatalf("tag %q", tag)
			}
		}
		_, e, _ := readEditForm(v, links.Link{})
		if e.URL == nil || *e.URL != n.URL || (e.Password == nil) != (pw == "") {
			t.Fatalf("edit form %+v read as %+v", v, e)
		}
	})
}

// The edit form shows the expiry to the minute. Sent back unchanged it leaves the
// expiry as it is: an expired link's other settings can be edited, and an expiry with
// seconds does not move. Changed or cleared, it is saved.
func TestEditKeepsUnchangedExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ended := testNow.Add(-time.Hour)
	b.links.add(links.Link{Slug: "ended", OriginalURL: "https://example.com/ended", Tags: []string{"x"}, ExpiresAt: &ended,
		Status: links.StatusExpired, ForwardQuery: true})
	later := time.Date(2030, 1, 2, 3, 4, 30, 0, time.UTC)
	b.links.add(links.Link{Slug: "later", OriginalURL: "https://example.com/later", ExpiresAt: &later, ForwardQuery: true})
	ck, csrf := b.login()
	// What the browser sends back: every field as the edit page shows it, but the tags.
	form := func(slug, target, expires string) url.Values {
		page := b.get("/dashboard/links/"+slug+"/edit", ck).Body.String()
		wantContains(t, page, `name="expires_at" value="`+expires+`"`)
		return url.Values{"csrf": {csrf}, "url": {target}, "tags": {"x, y"}, "expires_at": {expires}, "max_clicks": {""},
			"redirect_status": {"302"}, "forward_query": {"0", "1"}, "expired_url": {""}, "password": {""}}
	}

	rec := b.post("/dashboard/links/ended", form("ended", "https://example.com/ended", "2026-03-15T11:00"), ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if l, _ := b.links.Get(context.Background(), "", "ended"); strings.Join(l.Tags, ",") != "x,y" || l.ExpiresAt == nil || !l.ExpiresAt.Equal(ended) {
		t.Errorf("expired link after editing its tags: tags %v, expiry %v", l.Tags, l.ExpiresAt)
	}

	f := form("later", "https://example.com/later", "2030-01-02T03:04")
	wantStatus(t, b.post("/dashboard/links/later", f, ck), http.StatusSeeOther)
	if l, _ := b.links.Get(context.Background(), "", "later"); l.ExpiresAt == nil || !l.ExpiresAt.Equal(later) {
		t.Errorf("expiry %v after saving it unchanged, want %s", l.ExpiresAt, later)
	}
	f.Set("expires_at", "2031-06-07T08:09")
	wantStatus(t, b.post("/dashboard/links/later", f, ck), http.StatusSeeOther)
	if l, _ := b.links.Get(context.Background(), "", "later"); l.ExpiresAt == nil || !l.ExpiresAt.Equal(time.Date(2031, 6, 7, 8, 9, 0, 0, time.UTC)) {
		t.Errorf("expiry %v after changing it", l.ExpiresAt)
	}
	f.Set("expires_at", "")
	wantStatus(t, b.post("/dashboard/links/later", f, ck), http.StatusSeeOther)
	if l, _ := b.links.Get(context.Background(), "", "later"); l.ExpiresAt != nil {
		t.Errorf("expiry %v after clearing it", l.ExpiresAt)
	}
	// Moving an expiry into the past is still refused, with the service's message.
	f.Set("expires_at", "2026-03-15T11:59")
	rec = b.post("/dashboard/links/later", f, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantContains(t, rec.Body.String(), "expires_at must be in the future", `name="expires_at" value="2026-03-15T11:59"`)
}

// A refused edit shows the form as it was sent, the box to remove the password too.
func TestRefusedEditKeepsRemovePassword(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.links.add(links.Link{Slug: "locked", OriginalURL: "https://example.com/locked", HasPassword: true, ForwardQuery: true})
	ck, csrf := b.login()
	if page := b.get("/dashboard/links/locked/edit", ck).Body.String(); strings.Contains(page, `name="remove_password" value="1" checked`) {
		t.Fatal("the remove-password box is ticked before anyone ticked it")
	}
	rec := b.post("/dashboard/links/locked", url.Values{"csrf": {csrf}, "url": {"ftp://example.com"}, "remove_password": {"1"}}, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantContains(t, rec.Body.String(), `value="ftp://example.com"`, `name="remove_password" value="1" checked`)
	if l, _ := b.links.Get(context.Background(), "", "locked"); !l.HasPassword {
		t.Error("a refused edit removed the password")
	}
}
