package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

// verifySignature checks a Hop-Signature header as a receiver would (see docs/live.md).
func verifySignature(secret, header string, body []byte) bool {
	var ts, sig string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	if ts == "" || sig == "" {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	return hmac.Equal([]byte(sig), []byte(want))
}

// receiver is a local webhook endpoint that records what it is sent.
type receiver struct {
	*httptest.Server
	status func(n int64) int // answer to the n-th request (1-based)
	delay  time.Duration     // before answering

	requests atomic.Int64
	mu       sync.Mutex
	secret   string
	ids      map[string]int // event id -> times received
	slugs    map[string]int
	events   int
	badSig   int
	badHdr   int
	maxBatch int
	lat      []time.Duration // receipt minus clicked_at
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{ids: map[string]int{}, slugs: map[string]int{}, status: func(int64) int { return http.StatusOK }}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	n := r.requests.Add(1)
	body, _ := io.ReadAll(req.Body)
	at := time.Now()
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	status := r.status(n)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !verifySignature(r.secret, req.Header.Get("Hop-Signature"), body) {
		r.badSig++
	}
	if req.Header.Get("Content-Type") != "application/json" || req.Header.Get("Hop-Webhook-Id") == "" || req.Header.Get("Hop-Delivery-Id") == "" {
		r.badHdr++
	}
	if status >= 200 && status < 300 {
		var p struct {
			Events []struct {
				ID        string    `json:"id"`
				Type      string    `json:"type"`
				Slug      string    `json:"slug"`
				Domain    string    `json:"domain"`
				ClickedAt time.Time `json:"clicked_at"`
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			r.badHdr++
		}
		r.maxBatch = max(r.maxBatch, len(p.Events))
		for _, e := range p.Events {
			if e.Type != "click" {
				continue
			}
			r.ids[e.ID]++
			if r.ids[e.ID] == 1 {
				r.slugs[e.Slug]++
				r.slugs[e.Domain+"/"+e.Slug]++
				r.lat = append(r.lat, at.Sub(e.ClickedAt))
			}
			r.events++
		}
	}
	w.WriteHeader(status)
}

func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

// pingWith has webhook id send a test ping to r, which checks signatures with secret,
// and returns how many of r's requests so far were signed with another.
func (h *instance) pingWith(t testing.TB, r *receiver, id, secret string) int {
	t.Helper()
	r.mu.Lock()
	r.secret = secret
	r.mu.Unlock()
	mustStatus(t, h.api(t, http.MethodPost, "/webhooks/"+id+"/test", nil), http.StatusOK)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.badSig
}

// createWebhook creates a webhook on r with the extra fields and returns its JSON.
func (h *instance) createWebhook(t testing.TB, r *receiver, fields map[string]any) map[string]any {
	t.Helper()
	body := map[string]any{"url": r.URL + "/hook"}
	for k, v := range fields {
		body[k] = v
	}
	resp := h.api(t, http.MethodPost, "/webhooks", body)
	mustStatus(t, resp, http.StatusCreated)
	w := resp.JSON(t)
	secret, _ := w["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("create answered no secret: %s", resp.Body)
	}
	r.mu.Lock()
	r.secret = secret
	r.mu.Unlock()
	return w
}

func allowPrivate(cfg map[string]any) { cfg["webhook_allow_private"] = true }

// clickSteadily sends n redirects to slug from workers clients, each pausing between
// clicks so the load is steady rather than one burst.
func (h *instance) clickSteadily(t testing.TB, slug string, n, workers int, pause time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range workers {
		wg.Go(func() {
			client := &http.Client{CheckRedirect: noRedirect.CheckRedirect, Timeout: 10 * time.Second}
			for i := w; i < n; i += workers {
				req, _ := http.NewRequest(http.MethodGet, h.URL+"/"+slug, nil)
				req.Header.Set("User-Agent", firefoxUA)
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != http.StatusFound {
					failed.Add(1)
				}
				if resp != nil {
					resp.Body.Close()
				}
				time.Sleep(pause)
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d redirects failed", f, n)
	}
}

// 1,000 clicks reach the receiver as exactly 1,000 distinct event ids, every request
// validly signed, batches of at most 100; the p95 from click to receipt is logged.
func TestWebhookDeliversEveryClick(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"redis", "no-redis"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := startHop(t, func(cfg map[string]any) {
				allowPrivate(cfg)
				if mode == "no-redis" {
					cfg["redis_url"] = ""
				}
			})
			r := newReceiver(t)
			wh := h.createWebhook(t, r, nil)
			slug := h.createLink(t, map[string]any{"url": "https://example.com/hooked"})["slug"].(string)
			const n = 1000
			h.clickSteadily(t, slug, n, 4, 40*time.Millisecond) // about 100 clicks/s
			testenv.Eventually(t, 60*time.Second, "1,000 distinct events received", func() bool { return r.distinct() >= n })
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(r.ids) != n || r.badSig != 0 || r.badHdr != 0 || r.maxBatch > 100 || r.slugs[slug] != n {
				t.Fatalf("%d distinct ids (want %d), %d bad signatures, %d bad requests, largest batch %d, %d of %s",
					len(r.ids), n, r.badSig, r.badHdr, r.maxBatch, r.slugs[slug], slug)
			}
			if got := count(t, h.DB, "SELECT count(*) FROM click_logs"); got != n {
				t.Fatalf("%d clicks stored, want %d", got, n)
			}
			list := h.api(t, http.MethodGet, fmt.Sprintf("/webhooks/%v/deliveries?limit=100", wh["id"]), nil)
			mustStatus(t, list, http.StatusOK)
			t.Logf("%s: %d events in %d requests (%d duplicates); click->receipt p95 %s at ~100 clicks/s",
				mode, r.events, r.requests.Load(), r.events-n, p95(r.lat))
		})
	}
}

// A receiver that answers 500 for a while, then 200, still gets every event; the
// deliveries show the retries, and the webhook is healthy again.
func TestWebhookReceiverRecovers(t *testing.T) {
	t.Parallel()
	h := startHop(t, allowPrivate)
	r := newReceiver(t)
	r.status = func(n int64) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	wh := h.createWebhook(t, r, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/flaky"})["slug"].(string)
	const n = 150
	h.clickSteadily(t, slug, n, 4, 5*time.Millisecond)
	testenv.Eventually(t, 60*time.Second, "every event received and its delivery recorded", func() bool {
		return r.distinct() >= n && count(t, h.DB, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'") == 0
	})
	if got := r.distinct(); got != n {
		t.Fatalf("%d distinct events, want %d", got, n)
	}
	resp := h.api(t, http.MethodGet, fmt.Sprintf("/webhooks/%v/deliveries?limit=100", wh["id"]), nil)
	mustStatus(t, resp, http.StatusOK)
	var body struct {
		Deliveries []struct {
			Status     string `json:"status"`
			Attempts   int    `json:"attempts"`
			HTTPStatus int    `json:"http_status"`
			Events     int    `json:"events"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		t.Fatal(err)
	}
	retried, events := 0, 0
	for _, d := range body.Deliveries {
		if d.Status != "delivered" || d.HTTPStatus != 200 {
			t.Fatalf("delivery %+v not delivered", d)
		}
		if d.Attempts > 1 {
			retried++
		}
		events += d.Events
	}
	if retried == 0 || events != n {
		t.Fatalf("%d deliveries retried (want some), %d events delivered (want %d)", retried, events, n)
	}
	got := h.api(t, http.MethodGet, fmt.Sprintf("/webhooks/%v", wh["id"]), nil).JSON(t)
	if got["disabled"] != false || got["failing_since"] != nil {
		t.Fatalf("webhook after recovery: %v", got)
	}
}

// A webhook filtered by tag gets only that tag's clicks (and no bots unless asked);
// one filtered by link gets only that link's, bots included when asked.
func TestWebhookTagFilter(t *testing.T) {
	t.Parallel()
	h := startHop(t, allowPrivate)
	r := newReceiver(t)
	wh := h.createWebhook(t, r, map[string]any{"tags": []string{"promo"}})
	a := h.createLink(t, map[string]any{"url": "https://example.com/a", "tags": []string{"promo", "x"}})["slug"].(string)
	b := h.createLink(t, map[string]any{"url": "https://example.com/b", "tags": []string{"other"}})["slug"].(string)
	rb := newReceiver(t)
	whb := h.createWebhook(t, rb, map[string]any{"links": []string{a}, "include_bots": true})
	for range 5 {
		h.liveClick(t, a, firefoxUA)
		h.liveClick(t, b, firefoxUA)
	}
	h.liveClick(t, a, botUA)
	testenv.Eventually(t, 30*time.Second, "the webhook's cursor past every click", func() bool {
		return count(t, h.DB, "SELECT count(*) FROM click_logs") == 11 &&
			count(t, h.DB, fmt.Sprintf("SELECT count(*) FROM click_logs WHERE xid >= (SELECT min(cursor_xid) FROM webhooks WHERE id IN (%v, %v))", wh["id"], whb["id"])) == 0
	})
	rb.mu.Lock()
	if len(rb.ids) != 6 || rb.slugs[a] != 6 {
		t.Errorf("the link-filtered webhook received %d events: %v; want 6 of %s, the bot included", len(rb.ids), rb.slugs, a)
	}
	rb.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) != 5 || r.slugs[a] != 5 || r.slugs[b] != 0 {
		t.Fatalf("received %d events: %v; want 5 of %s only", len(r.ids), r.slugs, a)
	}
}

// A webhook filtered by domain gets only that domain's clicks, and every event names its
// link's domain: the same slug lives on two domains here.
func TestWebhookDomainFilter(t *testing.T) {
	t.Parallel()
	h := startHop(t, allowPrivate)
	mustStatus(t, h.api(t, http.MethodPost, "/domains", map[string]any{"host": "go.example.com"}), http.StatusCreated)
	h.createLink(t, map[string]any{"url": "https://example.com/default", "slug": "same"})
	h.createLink(t, map[string]any{"url": "https://example.com/branded", "slug": "same", "domain": "go.example.com"})
	branded, all := newReceiver(t), newReceiver(t)
	wb := h.createWebhook(t, branded, map[string]any{"domain": "go.example.com"})
	wa := h.createWebhook(t, all, nil)
	for _, host := range []string{"hop.test", "go.example.com", "go.example.com"} {
		req, _ := http.NewRequest(http.MethodGet, h.URL+"/same", nil)
		req.Host = host
		req.Header.Set("User-Agent", firefoxUA)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mustStatus(t, response{Status: resp.StatusCode}, http.StatusFound)
	}
	testenv.Eventually(t, 30*time.Second, "both webhooks' cursors past every click", func() bool {
		return count(t, h.DB, "SELECT count(*) FROM click_logs") == 3 &&
			count(t, h.DB, fmt.Sprintf("SELECT count(*) FROM click_logs WHERE xid >= (SELECT min(cursor_xid) FROM webhooks WHERE id IN (%v, %v))", wb["id"], wa["id"])) == 0
	})
	branded.mu.Lock()
	defer branded.mu.Unlock()
	all.mu.Lock()
	defer all.mu.Unlock()
	if len(branded.ids) != 2 || branded.slugs["go.example.com/same"] != 2 {
		t.Errorf("the domain-filtered webhook received %d events: %v; want 2 of go.example.com/same", len(branded.ids), branded.slugs)
	}
	if len(all.ids) != 3 || all.slugs["go.example.com/same"] != 2 || all.slugs["hop.test/same"] != 1 {
		t.Errorf("the unfiltered webhook received %d events: %v; want 2 on go.example.com and 1 on hop.test", len(all.ids), all.slugs)
	}
}

// Without HOP_WEBHOOK_ALLOW_PRIVATE, URLs on loopback, private, link-local and
// metadata addresses are refused, as are non-http(s) URLs; the webhook API needs a key.
func TestWebhookSSRFGuard(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	for _, u := range []string{
		"http://127.0.0.1:9/hook", "http://localhost:8080/x", "https://[::1]/x", "http://10.1.2.3/x",
		"http://169.254.169.254/latest/meta-data", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/",
	} {
		p := mustProblem(t, h.api(t, http.MethodPost, "/webhooks", map[string]any{"url": u}), http.StatusBadRequest)
		if !strings.HasSuffix(p["type"].(string), "/webhook-url-forbidden") {
			t.Fatalf("%s: problem %v, want webhook-url-forbidden", u, p)
		}
	}
	for _, u := range []string{"ftp://example.com/x", "file:///etc/passwd", "gopher://x", "http://user:pw@example.com/", "/relative"} {
		mustProblem(t, h.api(t, http.MethodPost, "/webhooks", map[string]any{"url": u}), http.StatusBadRequest)
	}
	mustProblem(t, h.do(t, http.MethodGet, "/webhooks", nil), http.StatusUnauthorized)
	mustProblem(t, h.api(t, http.MethodGet, "/webhooks/999", nil), http.StatusNotFound)
	if n := count(t, h.DB, "SELECT count(*) FROM webhooks"); n != 0 {
		t.Fatalf("%d webhooks stored", n)
	}
}

// The webhook API round trip: list shows no secret, test sends a signed ping, a
// delivery can be sent again, delete removes it.
func TestWebhookManagement(t *testing.T) {
	t.Parallel()
	h := startHop(t, allowPrivate)
	r := newReceiver(t)
	h.addDomain(t, map[string]any{"host": "go.example.com"})
	slug := h.createLink(t, map[string]any{"url": "https://example.com/m", "domain": "go.example.com"})["slug"].(string)
	// The links are slugs on the webhook's domain, whatever case the host is sent in.
	wh := h.createWebhook(t, r, map[string]any{"links": []string{slug}, "domain": "Go.Example.com", "include_bots": true})
	id := fmt.Sprint(wh["id"])
	list := h.api(t, http.MethodGet, "/webhooks", nil)
	mustStatus(t, list, http.StatusOK)
	if strings.Contains(string(list.Body), "whsec_") || !strings.Contains(string(list.Body), `"links":["`+slug+`"]`) ||
		!strings.Contains(string(list.Body), `"domain":"go.example.com"`) {
		t.Fatalf("list: %s", list.Body)
	}
	ping := h.api(t, http.MethodPost, "/webhooks/"+id+"/test", nil)
	mustStatus(t, ping, http.StatusOK)
	if p := ping.JSON(t); p["status"] != "delivered" || p["kind"] != "ping" || p["http_status"] != float64(200) {
		t.Fatalf("ping: %s", ping.Body)
	}
	r.mu.Lock()
	bad := r.badSig
	r.mu.Unlock()
	if r.requests.Load() != 1 || bad != 0 {
		t.Fatalf("%d requests, %d bad signatures after the ping", r.requests.Load(), bad)
	}
	did := fmt.Sprint(ping.JSON(t)["id"])
	again := h.api(t, http.MethodPost, "/webhooks/"+id+"/deliveries/"+did+"/retry", nil)
	mustStatus(t, again, http.StatusOK)
	if p := again.JSON(t); p["attempts"] != float64(2) {
		t.Fatalf("retry: %s", again.Body)
	}
	mustProblem(t, h.api(t, http.MethodPost, "/webhooks/"+id+"/deliveries/424242/retry", nil), http.StatusNotFound)
	mustProblem(t, h.api(t, http.MethodPost, "/webhooks", map[string]any{"url": r.URL, "links": []string{"no-such-link"}}), http.StatusBadRequest)
	mustProblem(t, h.api(t, http.MethodPost, "/webhooks", map[string]any{"url": r.URL, "colour": "red"}), http.StatusBadRequest)

	// Changed in place: the filters, then the URL to another receiver; needs a key.
	mustProblem(t, h.do(t, http.MethodPatch, "/webhooks/"+id, map[string]any{"include_bots": false}), http.StatusUnauthorized)
	changed := h.api(t, http.MethodPatch, "/webhooks/"+id, map[string]any{"links": nil, "tags": []string{"spring"}, "include_bots": false})
	mustStatus(t, changed, http.StatusOK)
	if w := changed.JSON(t); w["links"] != nil || fmt.Sprint(w["tags"]) != "[spring]" || w["domain"] != "go.example.com" || w["include_bots"] != false || w["secret"] != nil {
		t.Fatalf("changed: %s", changed.Body)
	}
	r2 := newReceiver(t)
	mustStatus(t, h.api(t, http.MethodPatch, "/webhooks/"+id, map[string]any{"url": r2.URL + "/hook"}), http.StatusOK)
	// A new secret signs what is sent next; the ping goes to the new URL.
	rotated := h.api(t, http.MethodPost, "/webhooks/"+id+"/secret", nil)
	mustStatus(t, rotated, http.StatusOK)
	secret, _ := rotated.JSON(t)["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || secret == wh["secret"] {
		t.Fatalf("new secret: %s", rotated.Body)
	}
	if bad := h.pingWith(t, r2, id, secret); r2.requests.Load() != 1 || bad != 0 || r.requests.Load() != 2 {
		t.Fatalf("after the changes: %d requests to the new URL (%d with a bad signature), %d to the old", r2.requests.Load(), bad, r.requests.Load())
	}
	if strings.Contains(string(h.api(t, http.MethodGet, "/webhooks/"+id, nil).Body), "whsec_") {
		t.Fatal("the new secret is shown again")
	}
	mustStatus(t, h.api(t, http.MethodDelete, "/webhooks/"+id, nil), http.StatusNoContent)
	mustProblem(t, h.api(t, http.MethodDelete, "/webhooks/"+id, nil), http.StatusNotFound)
}

// kill -9 of a hop process in the middle of deliveries loses no event: a restarted hop
// resends the batch that was in flight and goes on from the committed cursor.
// Duplicates are allowed and counted.
func TestWebhookSurvivesKill9(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	rdb := testenv.NewRedis(t)
	cfg := testConfig(t, db, rdb)
	cfg["webhook_allow_private"] = true
	cfg["consumer_name"] = "crash-hooks"
	h, kill := startProcess(t, db, rdb, cfg)
	r := newReceiver(t)
	r.delay = 300 * time.Millisecond // keeps a delivery in flight most of the time
	h.createWebhook(t, r, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/crash"})["slug"].(string)
	const n = 600
	h.clickSteadily(t, slug, n, 8, 0)
	testenv.Eventually(t, 30*time.Second, "some events received", func() bool { return r.distinct() > 0 })
	kill()
	before := r.distinct()
	if before >= n {
		t.Fatalf("all %d events were delivered before the kill; the test proves nothing", before)
	}

	h2, _ := startProcess(t, db, rdb, cfg)
	_ = h2
	testenv.Eventually(t, 60*time.Second, "every event received after the restart", func() bool { return r.distinct() >= n })
	stored := count(t, db, "SELECT count(*) FROM click_logs")
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) != n || stored != n || r.badSig != 0 {
		t.Fatalf("%d distinct events received, %d stored, %d bad signatures; want %d", len(r.ids), stored, r.badSig, n)
	}
	t.Logf("killed with %d of %d events received; %d events in total after the restart, %d duplicates", before, n, r.events, r.events-n)
	var ids []string
	rows, err := db.Pool.Query(context.Background(), "SELECT event_id::text FROM click_logs")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		if r.ids[id] == 0 {
			t.Fatalf("stored click %s never delivered", id)
		}
	}
}

// The dashboard's new-secret form, sent again after it was used (a reload of the page
// that shows the secret, or Back), changes nothing: the secret just shown stays the one
// hop signs with.
func TestDashboardNewSecretFormWorksOnce(t *testing.T) {
	t.Parallel()
	h := startHop(t, allowPrivate)
	r := newReceiver(t)
	id := fmt.Sprint(h.createWebhook(t, r, nil)["id"])
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	h.signIn(t, client, h.Key)
	page := func(resp *http.Response, err error) (int, string, string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header.Get("Location")
	}
	field := func(body, name string) string {
		t.Helper()
		m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no %s field in:\n%.2000s", name, body)
		}
		return m[1]
	}
	_, ask, _ := page(client.Get(h.URL + "/dashboard/webhooks/" + id + "/secret"))
	form := url.Values{"csrf": {field(ask, "csrf")}, "replaces": {field(ask, "replaces")}}
	send := func() (int, string, string) {
		req, _ := http.NewRequest(http.MethodPost, h.URL+"/dashboard/webhooks/"+id+"/secret", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", h.URL)
		return page(client.Do(req))
	}
	status, shown, _ := send()
	secret := regexp.MustCompile(`value="(whsec_[^"]+)"`).FindStringSubmatch(shown)
	if status != http.StatusOK || secret == nil {
		t.Fatalf("new secret: %d\n%.2000s", status, shown)
	}
	if status, _, loc := send(); status != http.StatusSeeOther || !strings.HasSuffix(loc, "?secret=kept") {
		t.Fatalf("the form sent again: %d, Location %q", status, loc)
	}
	if bad := h.pingWith(t, r, id, secret[1]); r.requests.Load() != 1 || bad != 0 {
		t.Fatalf("%d requests, %d signed with another secret than the one shown", r.requests.Load(), bad)
	}
}
