package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/webhooks"
)

// errNoWebhook is the fake's unknown webhook or delivery; setupWebhooks describes it as a 404.
var errNoWebhook = errors.New("no webhook has this id")

// fakeWebhooks is an in-memory WebhookService. A URL containing "fail" answers pings
// and retries with a 500, as a broken receiver would.
type fakeWebhooks struct {
	mu         sync.Mutex
	hooks      []webhooks.Webhook
	deliveries map[int64][]webhooks.Delivery // newest first
	nextID     int64
	rotations  int
}

func newFakeWebhooks() *fakeWebhooks {
	return &fakeWebhooks{deliveries: map[int64][]webhooks.Delivery{}}
}

func (f *fakeWebhooks) List(context.Context) ([]webhooks.Webhook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]webhooks.Webhook(nil), f.hooks...), nil
}

func (f *fakeWebhooks) Get(_ context.Context, id int64) (webhooks.Webhook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.hooks {
		if w.ID == id {
			return w, nil
		}
	}
	return webhooks.Webhook{}, errNoWebhook
}

func (f *fakeWebhooks) Create(_ context.Context, n webhooks.NewWebhook) (webhooks.Webhook, error) {
	if u, err := url.Parse(n.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return webhooks.Webhook{}, problem.Invalid("url must be an absolute http or https URL")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	w := webhooks.Webhook{ID: f.nextID, URL: n.URL, Links: n.Links, Tags: n.Tags, IncludeBots: n.IncludeBots, Domain: n.Domain, CreatedAt: testNow}
	f.hooks = append(f.hooks, w)
	w.Secret = "whsec_shown-once"
	return w, nil
}

// Update applies ch as the service does (Change.Apply), without its checks beyond the URL's.
func (f *fakeWebhooks) Update(_ context.Context, id int64, ch webhooks.Change) (webhooks.Webhook, error) {
	if ch.URL != nil {
		if u, err := url.Parse(*ch.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return webhooks.Webhook{}, problem.Invalid("url must be an absolute http or https URL")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.hooks {
		w := &f.hooks[i]
		if w.ID != id {
			continue
		}
		n := ch.Apply(webhooks.NewWebhook{URL: w.URL, Links: w.Links, Tags: w.Tags, Domain: w.Domain, IncludeBots: w.IncludeBots})
		w.URL, w.Links, w.Tags, w.Domain, w.IncludeBots = n.URL, n.Links, n.Tags, n.Domain, n.IncludeBots
		return *w, nil
	}
	return webhooks.Webhook{}, errNoWebhook
}

// RotateSecret answers with whsec_rotated-N, N counting the rotations.
func (f *fakeWebhooks) RotateSecret(ctx context.Context, id int64) (webhooks.Webhook, error) {
	w, err := f.Get(ctx, id)
	if err != nil {
		return w, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotations++
	w.Secret = fmt.Sprintf("whsec_rotated-%d", f.rotations)
	return w, nil
}

func (f *fakeWebhooks) Delete(_ context.Context, id int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, w := range f.hooks {
		if w.ID == id {
			f.hooks = append(f.hooks[:i], f.hooks[i+1:]...)
			delete(f.deliveries, id)
			return nil
		}
	}
	return errNoWebhook
}

func (f *fakeWebhooks) Deliveries(ctx context.Context, id int64, limit int) ([]webhooks.Delivery, error) {
	if _, err := f.Get(ctx, id); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ds := f.deliveries[id]
	return append([]webhooks.Delivery(nil), ds[:min(limit, len(ds))]...), nil
}

// send records one attempt at d against w's receiver.
func (f *fakeWebhooks) send(w webhooks.Webhook, d *webhooks.Delivery) {
	d.Attempts++
	status, latency := 200, 3.4
	if strings.Contains(w.URL, "fail") {
		status, d.Status, d.Error = 500, "failed", "receiver answered 500"
	} else {
		d.Status, d.Error = "delivered", ""
	}
	d.HTTPStatus, d.LatencyMS = &status, &latency
}

func (f *fakeWebhooks) Ping(ctx context.Context, id int64) (webhooks.Delivery, error) {
	w, err := f.Get(ctx, id)
	if err != nil {
		return webhooks.Delivery{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	d := webhooks.Delivery{ID: int64(100 + len(f.deliveries[id])), Kind: "ping", Events: 1, CreatedAt: testNow}
	f.send(w, &d)
	f.deliveries[id] = append([]webhooks.Delivery{d}, f.deliveries[id]...)
	return d, nil
}

func (f *fakeWebhooks) Retry(ctx context.Context, id, delivery int64) (webhooks.Delivery, error) {
	w, err := f.Get(ctx, id)
	if err != nil {
		return webhooks.Delivery{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.deliveries[id] {
		if d := &f.deliveries[id][i]; d.ID == delivery {
			f.send(w, d)
			return *d, nil
		}
	}
	return webhooks.Delivery{}, errNoWebhook
}

// addDelivery records a delivery as the dispatcher would have.
func (f *fakeWebhooks) addDelivery(id int64, d webhooks.Delivery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deliveries[id] = append([]webhooks.Delivery{d}, f.deliveries[id]...)
}

func setupWebhooks(t *testing.T) (*bundle, *fakeWebhooks) {
	t.Helper()
	f := newFakeWebhooks()
	base := testDescribe
	describe := func(err error) problem.Problem {
		if errors.Is(err, errNoWebhook) {
			return problem.Problem{Status: http.StatusNotFound, Type: "webhook-not-found", Detail: "no webhook has this id"}
		}
		return base(err)
	}
	return setup(t, Config{Webhooks: f, Describe: describe}), f
}

func TestWebhookPagesNeedSignIn(t *testing.T) {
	b, f := setupWebhooks(t)
	if _, err := f.Create(context.Background(), webhooks.NewWebhook{URL: "https://example.com/hook"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dashboard/webhooks", "/dashboard/webhooks/new", "/dashboard/webhooks/1", "/dashboard/webhooks/1/delete",
		"/dashboard/webhooks/1/edit", "/dashboard/webhooks/1/secret"} {
		rec := b.get(p, nil)
		wantStatus(t, rec, http.StatusSeeOther)
		if loc := rec.Header().Get("Location"); loc != "/dashboard/login?next="+url.QueryEscape(p) {
			t.Errorf("%s: Location %q", p, loc)
		}
	}
	rec := b.post("/dashboard/webhooks/1/delete", url.Values{}, nil)
	wantStatus(t, rec, http.StatusSeeOther)
	if len(f.hooks) != 1 {
		t.Fatalf("a signed-out delete removed the webhook: %d left", len(f.hooks))
	}
	for _, p := range []string{"/dashboard/webhooks/1/edit", "/dashboard/webhooks/1/secret"} {
		wantStatus(t, b.post(p, url.Values{"url": {"https://evil.example/"}}, nil), http.StatusSeeOther)
	}
	if f.hooks[0].URL != "https://example.com/hook" || f.rotations != 0 {
		t.Fatalf("signed-out forms changed the webhook: %+v, %d rotations", f.hooks[0], f.rotations)
	}
}

func TestWebhookPagesHiddenWithoutService(t *testing.T) {
	b := setup(t, Config{})
	ck, _ := b.login()
	rec := b.get("/dashboard/webhooks", ck)
	wantStatus(t, rec, http.StatusNotFound)
	wantHTML(t, rec)
	if strings.Contains(b.get("/dashboard", ck).Body.String(), `href="/dashboard/webhooks"`) {
		t.Error("the navigation links to webhook pages that do not exist")
	}
}

func TestCreateWebhookShowsSecretOnce(t *testing.T) {
	b, f := setupWebhooks(t)
	ck, csrf := b.login()

	rec := b.get("/dashboard/webhooks", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "No webhooks yet.", `href="/dashboard/webhooks/new"`, `href="/dashboard/webhooks">Webhooks</a>`)

	wantStatus(t, b.get("/dashboard/webhooks/new", ck), http.StatusOK)

	// A bad URL is shown again with the service's words, what was typed kept.
	rec = b.post("/dashboard/webhooks", url.Values{"csrf": {csrf}, "url": {"ftp://nope"}, "tags": {"spring"}}, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantContains(t, rec.Body.String(), "url must be an absolute http or https URL", `value="ftp://nope"`, `value="spring"`)
	if len(f.hooks) != 0 {
		t.Fatalf("%d webhooks after a refused form", len(f.hooks))
	}

	rec = b.post("/dashboard/webhooks", url.Values{"csrf": {csrf}, "url": {"https://example.com/hook"},
		"links": {" promo , docs,"}, "tags": {""}, "include_bots": {"1"}}, ck)
	wantStatus(t, rec, http.StatusCreated)
	wantContains(t, rec.Body.String(), "Webhook #1 created", `value="whsec_shown-once"`, "shown this once")
	if got := f.hooks; len(got) != 1 || strings.Join(got[0].Links, "|") != "promo|docs" || got[0].Tags != nil || !got[0].IncludeBots {
		t.Fatalf("created %+v, want links promo,docs, every tag, bots included", got)
	}

	// The secret is never shown again.
	for _, p := range []string{"/dashboard/webhooks", "/dashboard/webhooks/1"} {
		rec = b.get(p, ck)
		wantStatus(t, rec, http.StatusOK)
		if strings.Contains(rec.Body.String(), "whsec_") {
			t.Errorf("%s shows the secret", p)
		}
	}
	wantContains(t, b.get("/dashboard/webhooks", ck).Body.String(), `href="/dashboard/webhooks/1"`, "https://example.com/hook", "promo, docs", "enabled", "included")
}

func TestWebhookFormsNeedCSRF(t *testing.T) {
	b, f := setupWebhooks(t)
	if _, err := f.Create(context.Background(), webhooks.NewWebhook{URL: "https://example.com/hook"}); err != nil {
		t.Fatal(err)
	}
	ck, _ := b.login()
	for _, p := range []string{"/dashboard/webhooks", "/dashboard/webhooks/1/delete", "/dashboard/webhooks/1/test",
		"/dashboard/webhooks/1/edit", "/dashboard/webhooks/1/secret"} {
		rec := b.post(p, url.Values{"csrf": {"forged"}, "url": {"https://evil.example/"}}, ck)
		wantStatus(t, rec, http.StatusForbidden)
		wantHTML(t, rec)
	}
	if len(f.hooks) != 1 || len(f.deliveries[1]) != 0 || f.hooks[0].URL != "https://example.com/hook" || f.rotations != 0 {
		t.Fatalf("forged forms changed something: %d webhooks, %d deliveries, %+v, %d rotations", len(f.hooks), len(f.deliveries[1]), f.hooks[0], f.rotations)
	}
}

func TestWebhookStatesInList(t *testing.T) {
	b, f := setupWebhooks(t)
	since := testNow.Add(-2 * time.Hour)
	f.hooks = []webhooks.Webhook{
		{ID: 1, URL: "https://ok.example/", CreatedAt: testNow},
		{ID: 2, URL: "https://flaky.example/", FailingSince: &since, CreatedAt: testNow},
		{ID: 3, URL: "https://dead.example/", Disabled: true, DisabledAt: &testNow, FailingSince: &since, Tags: []string{"spring"}, CreatedAt: testNow},
	}
	ck, _ := b.login()
	body := b.get("/dashboard/webhooks", ck).Body.String()
	wantContains(t, body, `badge-active">enabled`, `badge-limit_reached" title="failing since 2026-03-15 10:00 UTC">failing`,
		`badge-expired" title="disabled 2026-03-15 12:00 UTC after failing for 24 hours">disabled`, "spring")
	if n := strings.Count(body, `<td data-label="Webhook">`); n != 3 {
		t.Errorf("%d rows, want 3", n)
	}
}

func TestWebhookDeliveriesPingAndRetry(t *testing.T) {
	b, f := setupWebhooks(t)
	ctx := context.Background()
	if _, err := f.Create(ctx, webhooks.NewWebhook{URL: "https://fail.example/hook"}); err != nil {
		t.Fatal(err)
	}
	ck, csrf := b.login()

	rec := b.get("/dashboard/webhooks/1", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "Nothing delivered yet.", `action="/dashboard/webhooks/1/test"`)

	// A failed batch as the dispatcher leaves it after 24 h of retries.
	st, lat := 503, 10000.0
	f.addDelivery(1, webhooks.Delivery{ID: 7, Kind: "events", Status: "failed", Events: 42, Attempts: 17, HTTPStatus: &st,
		LatencyMS: &lat, Error: "receiver answered 503", CreatedAt: testNow})
	rec = b.get("/dashboard/webhooks/1", ck)
	wantContains(t, rec.Body.String(), `id="delivery-7"`, "42 events", ">failed<", `class="num">17<`, `class="num">503<`,
		"10000 ms", "receiver answered 503", `action="/dashboard/webhooks/1/deliveries/7/retry"`)

	// The ping fails against this receiver: the page says so and lists it.
	rec = b.post("/dashboard/webhooks/1/test", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/webhooks/1?ping=101" {
		t.Fatalf("Location %q", loc)
	}
	rec = b.get("/dashboard/webhooks/1?ping=101", ck)
	wantContains(t, rec.Body.String(), "Test ping failed (HTTP 500): receiver answered 500.", `id="delivery-101"`, "3.4 ms")

	// Once the receiver works, a retry of the failed batch is delivered.
	f.hooks[0].URL = "https://fixed.example/hook"
	rec = b.post("/dashboard/webhooks/1/deliveries/7/retry", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/webhooks/1?retry=7" {
		t.Fatalf("Location %q", loc)
	}
	rec = b.get("/dashboard/webhooks/1?retry=7", ck)
	wantContains(t, rec.Body.String(), "Delivery 7 delivered (HTTP 200).")
	if d := f.deliveries[1][1]; d.ID != 7 || d.Status != "delivered" || d.Attempts != 18 {
		t.Fatalf("delivery after retry: %+v", d)
	}
	if strings.Contains(rec.Body.String(), `deliveries/7/retry"`) {
		t.Error("a delivered batch still offers a retry")
	}

	// Unknown webhooks and deliveries are 404 pages.
	for _, p := range []string{"/dashboard/webhooks/99", "/dashboard/webhooks/abc", "/dashboard/webhooks/0/delete"} {
		rec := b.get(p, ck)
		wantStatus(t, rec, http.StatusNotFound)
		wantHTML(t, rec)
	}
	rec = b.post("/dashboard/webhooks/1/deliveries/999/retry", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusNotFound)
	wantHTML(t, rec)
}

func TestDeleteWebhookAsksFirst(t *testing.T) {
	b, f := setupWebhooks(t)
	if _, err := f.Create(context.Background(), webhooks.NewWebhook{URL: "https://example.com/hook"}); err != nil {
		t.Fatal(err)
	}
	ck, csrf := b.login()
	rec := b.get("/dashboard/webhooks/1/delete", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "Delete webhook #1?", "https://example.com/hook", `action="/dashboard/webhooks/1/delete"`)
	if len(f.hooks) != 1 {
		t.Fatal("asking deleted the webhook")
	}
	rec = b.post("/dashboard/webhooks/1/delete", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/webhooks?deleted=1" {
		t.Fatalf("Location %q", loc)
	}
	if len(f.hooks) != 0 {
		t.Fatalf("%d webhooks left", len(f.hooks))
	}
	wantContains(t, b.get("/dashboard/webhooks?deleted=1", ck).Body.String(), "Webhook 1 deleted.", "No webhooks yet.")
	rec = b.post("/dashboard/webhooks/1/delete", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusNotFound)
}

// The edit form shows the webhook's settings; a refused change is shown again as typed,
// and a saved one leads back to the webhook, which says so. Blank fields mean all.
func TestEditWebhook(t *testing.T) {
	b, f := setupWebhooks(t)
	if _, err := f.Create(context.Background(), webhooks.NewWebhook{URL: "https://example.com/hook", Links: []string{"promo", "docs"},
		Tags: []string{"spring"}, IncludeBots: true}); err != nil {
		t.Fatal(err)
	}
	ck, csrf := b.login()
	wantContains(t, b.get("/dashboard/webhooks/1", ck).Body.String(), `href="/dashboard/webhooks/1/edit"`, `href="/dashboard/webhooks/1/secret"`)
	rec := b.get("/dashboard/webhooks/1/edit", ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "Edit webhook #1", `action="/dashboard/webhooks/1/edit"`, `value="https://example.com/hook"`,
		`value="promo, docs"`, `value="spring"`, `value="1" checked`, "Save changes", `href="/dashboard/webhooks/1">Cancel`)

	rec = b.post("/dashboard/webhooks/1/edit", url.Values{"csrf": {csrf}, "url": {"ftp://nope"}, "links": {"promo"}}, ck)
	wantStatus(t, rec, http.StatusBadRequest)
	wantContains(t, rec.Body.String(), "url must be an absolute http or https URL", `value="ftp://nope"`, `value="promo"`, `action="/dashboard/webhooks/1/edit"`)
	if w := f.hooks[0]; w.URL != "https://example.com/hook" || len(w.Links) != 2 {
		t.Fatalf("a refused edit changed the webhook: %+v", w)
	}

	rec = b.post("/dashboard/webhooks/1/edit", url.Values{"csrf": {csrf}, "url": {"https://example.com/v2"}, "links": {""}, "tags": {"spring, summer"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/webhooks/1?saved=1" {
		t.Fatalf("Location %q", loc)
	}
	if w := f.hooks[0]; w.URL != "https://example.com/v2" || w.Links != nil || strings.Join(w.Tags, "|") != "spring|summer" || w.IncludeBots {
		t.Fatalf("edited %+v, want the new URL, every link, tags spring and summer, bots left out", w)
	}
	wantContains(t, b.get("/dashboard/webhooks/1?saved=1", ck).Body.String(), "Changes saved.", "https://example.com/v2")

	rec = b.post("/dashboard/webhooks/9/edit", url.Values{"csrf": {csrf}, "url": {"https://example.com/v3"}}, ck)
	wantStatus(t, rec, http.StatusNotFound)
	wantHTML(t, rec)
}

// A new signing secret is asked for first, then shown once on the page that answers
// the form, and never again.
func TestRotateSecretAsksFirstAndShowsItOnce(t *testing.T) {
	b, f := setupWebhooks(t)
	if _, err := f.Create(context.Background(), webhooks.NewWebhook{URL: "https://example.com/hook"}); err != nil {
		t.Fatal(err)
	}
	ck, csrf := b.login()
	rec := b.get("/dashboard/webhooks/1/secret", ck)
	wantStatus(t, rec, http.StatusOK)
	w, _ := f.Get(context.Background(), 1)
	wantContains(t, rec.Body.String(), "New signing secret for webhook #1?", "The old secret stops at once", `action="/dashboard/webhooks/1/secret"`,
		`name="replaces" value="`+w.SecretTag()+`"`)
	if f.rotations != 0 {
		t.Fatal("asking made a new secret")
	}
	// A form naming another secret than the current one (sent again after it was
	// used) replaces nothing.
	rec = b.post("/dashboard/webhooks/1/secret", url.Values{"csrf": {csrf}, "replaces": {"0123456789abcdef"}}, ck)
	wantStatus(t, rec, http.StatusSeeOther)
	if loc := rec.Header().Get("Location"); loc != "/dashboard/webhooks/1?secret=kept" || f.rotations != 0 {
		t.Fatalf("a stale form: Location %q, %d rotations", loc, f.rotations)
	}
	wantContains(t, b.get("/dashboard/webhooks/1?secret=kept", ck).Body.String(), "the secret was not changed again", `<a href="/dashboard/webhooks/1/secret">make another</a>`)
	rec = b.post("/dashboard/webhooks/1/secret", url.Values{"csrf": {csrf}, "replaces": {w.SecretTag()}}, ck)
	wantStatus(t, rec, http.StatusOK)
	wantContains(t, rec.Body.String(), "New signing secret for webhook #1", `value="whsec_rotated-1"`, "shown this once")
	if strings.Contains(rec.Body.String(), "created") {
		t.Error("the new secret's page says the webhook was created")
	}
	for _, p := range []string{"/dashboard/webhooks", "/dashboard/webhooks/1", "/dashboard/webhooks/1/secret"} {
		if strings.Contains(b.get(p, ck).Body.String(), "whsec_") {
			t.Errorf("%s shows a secret", p)
		}
	}
	rec = b.post("/dashboard/webhooks/9/secret", url.Values{"csrf": {csrf}}, ck)
	wantStatus(t, rec, http.StatusNotFound)
	wantHTML(t, rec)
}

func FuzzReadWebhookForm(f *testing.F) {
	f.Add("https://example.com/hook", "a, b,,", "x", "1")
	f.Add("", ",,,", " ", "0")
	f.Fuzz(func(t *testing.T, u, links, tags, bots string) {
		form, n := readWebhookForm(url.Values{"url": {u}, "links": {links}, "tags": {tags}, "include_bots": {bots}})
		if n.URL != strings.TrimSpace(u) || form.URL != n.URL || n.IncludeBots != (bots == "1") {
			t.Fatalf("form %+v, webhook %+v", form, n)
		}
		for _, l := range [][]string{n.Links, n.Tags} {
			if l != nil && len(l) == 0 {
				t.Fatal("an empty list instead of nil (all)")
			}
			for _, v := range l {
				if v == "" || v != strings.TrimSpace(v) || strings.Contains(v, ",") {
					t.Fatalf("item %q", v)
				}
			}
		}
	})
}
