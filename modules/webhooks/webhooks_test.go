package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem/problemtest"
	"github.com/hop-dev/hop/internal/testenv"
)

// clock is an injected clock the test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// bundle is what setup returns.
type bundle struct {
	s      *Service
	db     *testenv.DB
	clock  *clock
	status atomic.Int64 // what the receiver answers
	hang   atomic.Bool  // the receiver answers only once the request is cancelled
	hits   atomic.Int64
	cut    atomic.Int64 // requests the sender gave up on while the receiver hung
	url    string
	linkID int64
}

func setup(t *testing.T, opts ...func(*Config)) *bundle {
	t.Helper()
	b := &bundle{db: testenv.NewDB(t), clock: &clock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}}
	b.status.Store(http.StatusInternalServerError)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if b.hang.Load() {
			// net/http notices a client leaving only once the body is read.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			b.cut.Add(1)
			return
		}
		w.WriteHeader(int(b.status.Load()))
	}))
	t.Cleanup(srv.Close)
	b.url = srv.URL
	cfg := Config{AllowPrivate: true, Now: b.clock.Now, Jitter: func() float64 { return 0.5 }}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(t.Context(), cfg, b.db.Pool, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b.s = s
	if err := b.db.Pool.QueryRow(t.Context(), `INSERT INTO links (slug, original_url) VALUES ('hooked', 'https://example.com') RETURNING id`).Scan(&b.linkID); err != nil {
		t.Fatal(err)
	}
	return b
}

// clicks inserts n clicks at the clock's time less a minute (older than BatchWait).
func (b *bundle) clicks(t *testing.T, n int) {
	t.Helper()
	for range n {
		id := uuid.Must(uuid.NewV7())
		if _, err := b.db.Pool.Exec(t.Context(), `INSERT INTO click_logs (event_id, link_id, clicked_at) VALUES ($1, $2, $3)`,
			id, b.linkID, b.clock.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
}

// drain steps the webhook until it has nothing more to send right away.
func (b *bundle) drain(t *testing.T, id int64) {
	t.Helper()
	for {
		more, err := b.s.step(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !more {
			return
		}
	}
}

// brandedHooked adds the domain go.example.com with a link "hooked" of its own, the
// default domain's slug again, and returns that link's id.
func (b *bundle) brandedHooked(t *testing.T) int64 {
	t.Helper()
	var id int64
	if err := b.db.Pool.QueryRow(t.Context(), `
WITH d AS (INSERT INTO domains (host, base_url) VALUES ('go.example.com', 'https://go.example.com') RETURNING id)
INSERT INTO links (slug, original_url, domain_id) SELECT 'hooked', 'https://example.org', id FROM d RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func (b *bundle) webhook(t *testing.T) Webhook {
	t.Helper()
	sealed, err := b.s.seal("whsec_test")
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.s.insert(t.Context(), Webhook{URL: b.url, sealed: sealed}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// A receiver that keeps failing is retried with exponential backoff (jitter fixed at
// the middle here) capped at RetryMax; after GiveUp the batch is kept as failed, the
// cursor moves past it and the webhook is disabled. A manual retry that succeeds
// delivers the batch and enables the webhook again, and delivery goes on from there.
func TestBackoffGiveUpDisableAndRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	w := b.webhook(t)
	b.clicks(t, 3)
	start := b.clock.Now()

	var delays []time.Duration
	for i := 0; ; i++ {
		if _, err := b.s.step(ctx, w.ID); err != nil {
			t.Fatal(err)
		}
		d, err := b.s.head(ctx, w.ID)
		if errors.Is(err, ErrNoDelivery) {
			break // given up
		}
		if err != nil {
			t.Fatal(err)
		}
		if d.Attempts != i+1 || d.Events != 3 {
			t.Fatalf("after step %d: %d attempts, %d events", i+1, d.Attempts, d.Events)
		}
		// Not due yet: nothing is sent.
		hits := b.hits.Load()
		if _, err := b.s.step(ctx, w.ID); err != nil || b.hits.Load() != hits {
			t.Fatalf("a delivery that is not due was sent (%v)", err)
		}
		delays = append(delays, d.NextAttemptAt.Sub(b.clock.Now()))
		b.clock.Set(*d.NextAttemptAt)
	}
	// Delays are 3/4 of 1s, 2s, 4s, ... capped at 1h.
	for i, d := range delays {
		want := time.Second << min(i, 20)
		want = min(want, time.Hour) * 3 / 4
		if d != want {
			t.Fatalf("delay %d is %s, want %s (all: %v)", i+1, d, want, delays)
		}
	}
	if b.clock.Now().Sub(start) < 24*time.Hour || b.clock.Now().Sub(start) > 25*time.Hour {
		t.Fatalf("gave up after %s, want 24h", b.clock.Now().Sub(start))
	}
	got, err := b.s.get(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := b.s.deliveries(ctx, w.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Disabled || got.FailingSince == nil || len(ds) != 1 || ds[0].Status != "failed" || ds[0].Attempts != len(delays)+1 {
		t.Fatalf("webhook %+v, deliveries %+v", got, ds)
	}
	// Disabled: new clicks are not sent.
	b.clicks(t, 2)
	hits := b.hits.Load()
	if _, err := b.s.step(ctx, w.ID); err != nil || b.hits.Load() != hits {
		t.Fatalf("a disabled webhook was sent to (%v)", err)
	}

	b.status.Store(http.StatusNoContent)
	if ok, err := b.s.attempt(ctx, got, ds[0], true); !ok || err != nil {
		t.Fatalf("manual retry: %v, %v", ok, err)
	}
	got, _ = b.s.get(ctx, w.ID)
	d, _ := b.s.delivery(ctx, w.ID, ds[0].ID)
	if got.Disabled || got.FailingSince != nil || d.Status != "delivered" || d.HTTPStatus == nil || *d.HTTPStatus != 204 {
		t.Fatalf("after a successful retry: webhook %+v, delivery %+v", got, d)
	}
	// The 2 clicks made while disabled come next, once.
	if more, err := b.s.step(ctx, w.ID); !more || err != nil {
		t.Fatalf("step after re-enabling: %v, %v", more, err)
	}
	ds, _ = b.s.deliveries(ctx, w.ID, 10)
	if len(ds) != 2 || ds[0].Status != "delivered" || ds[0].Events != 2 {
		t.Fatalf("deliveries %+v", ds)
	}
	if more, err := b.s.step(ctx, w.ID); more || err != nil {
		t.Fatalf("nothing more to send, got %v, %v", more, err)
	}
}

// A receiver that does not answer within Timeout (10 s unless set) fails the attempt
// like a 5xx: hop gives up on the request, records the timeout and retries the same
// batch with backoff, and the batch is delivered once the receiver answers.
func TestSlowReceiverTimesOutAndIsRetried(t *testing.T) {
	t.Parallel()
	var def Config
	def.defaults()
	if def.Timeout != 10*time.Second {
		t.Fatalf("default delivery timeout %s, want 10s", def.Timeout)
	}
	b := setup(t, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	ctx := t.Context()
	w := b.webhook(t)
	b.clicks(t, 3)
	b.hang.Store(true)
	if ok, err := b.s.step(ctx, w.ID); ok || err != nil {
		t.Fatalf("attempt against a hanging receiver: %v, %v", ok, err)
	}
	testenv.Eventually(t, 10*time.Second, "the receiver to see its request cancelled", func() bool { return b.cut.Load() == 1 })
	d, err := b.s.head(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "pending" || d.Attempts != 1 || d.Events != 3 || d.HTTPStatus != nil ||
		!(strings.Contains(strings.ToLower(d.Error), "timeout") || strings.Contains(d.Error, "deadline exceeded")) {
		t.Fatalf("after a timed-out attempt: status %q, %d attempts, %d events, HTTP status %v, error %q; want pending, 1, 3, none, a timeout",
			d.Status, d.Attempts, d.Events, d.HTTPStatus, d.Error)
	}
	if want := b.clock.Now().Add(750 * time.Millisecond); d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(want) {
		t.Fatalf("next attempt at %v, want %v (the first backoff)", d.NextAttemptAt, want)
	}

	b.hang.Store(false)
	b.status.Store(http.StatusNoContent)
	b.clock.Set(*d.NextAttemptAt)
	if ok, err := b.s.step(ctx, w.ID); !ok || err != nil {
		t.Fatalf("retry against an answering receiver: %v, %v", ok, err)
	}
	ds, err := b.s.deliveries(ctx, w.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Status != "delivered" || ds[0].Attempts != 2 || ds[0].Events != 3 || b.hits.Load() != 2 {
		t.Fatalf("deliveries %+v after %d requests; want one batch of 3 delivered on its 2nd attempt", ds, b.hits.Load())
	}
}

// A batch holds at most BatchSize events; a partial batch waits BatchWait for more.
func TestBatching(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.status.Store(http.StatusOK)
	ctx := t.Context()
	w := b.webhook(t)
	b.clicks(t, 250)
	var sizes []int
	b.drain(t, w.ID)
	ds, _ := b.s.deliveries(ctx, w.ID, 10)
	for _, d := range ds {
		sizes = append(sizes, d.Events)
	}
	if len(sizes) != 3 || sizes[0] != 50 || sizes[1] != 100 || sizes[2] != 100 {
		t.Fatalf("batch sizes (newest first) %v, want [50 100 100]", sizes)
	}
	// A fresh click waits for company until it is BatchWait old.
	if _, err := b.db.Pool.Exec(ctx, `INSERT INTO click_logs (event_id, link_id, clicked_at) VALUES ($1, $2, $3)`,
		uuid.Must(uuid.NewV7()), b.linkID, b.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if more, err := b.s.step(ctx, w.ID); more || err != nil {
		t.Fatalf("a fresh click was sent at once: %v, %v", more, err)
	}
	b.clock.Set(b.clock.Now().Add(time.Second))
	if more, err := b.s.step(ctx, w.ID); !more || err != nil {
		t.Fatalf("a click BatchWait old was not sent: %v, %v", more, err)
	}
}

// A webhook whose filters pass few clicks gets each of them once, in position order,
// and none of the others: through windows that end mid-transaction (a transaction
// larger than a read may return), windows with nothing for it, and bots left out.
func TestFilteredWebhookGetsEveryMatchOnce(t *testing.T) {
	t.Parallel()
	const window = 5
	b := setup(t, func(c *Config) { c.BatchSize, c.Window = 3, window })
	big := window*readAheadWindows + 20 // more clicks than one read returns
	b.status.Store(http.StatusOK)
	ctx := t.Context()
	var other int64
	if _, err := b.db.Pool.Exec(ctx, `UPDATE links SET tags = '{a}' WHERE id = $1`, b.linkID); err != nil {
		t.Fatal(err)
	}
	if err := b.db.Pool.QueryRow(ctx, `INSERT INTO links (slug, original_url, tags) VALUES ('other', 'https://example.com', '{b}') RETURNING id`).Scan(&other); err != nil {
		t.Fatal(err)
	}
	sealed, err := b.s.seal("whsec_test")
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.s.insert(ctx, Webhook{URL: b.url, sealed: sealed, Tags: []string{"a"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Transactions of clicks: (matching, other, bot) in each.
	for _, tx := range [][3]int{{1, 0, 0}, {2, 7, 1}, {0, big, 0}, {25, big, 5}, {0, 3, 2}, {4, 0, 0}} {
		if _, err := b.db.Pool.Exec(ctx, `
INSERT INTO click_logs (event_id, link_id, clicked_at, is_bot)
SELECT gen_random_uuid(), link, $4, bot FROM (
    SELECT $1::bigint AS link, false AS bot FROM generate_series(1, $2)
    UNION ALL SELECT $3, false FROM generate_series(1, $5)
    UNION ALL SELECT $1, true FROM generate_series(1, $6)) c`,
			b.linkID, tx[0], other, b.clock.Now().Add(-time.Minute), tx[1], tx[2]); err != nil {
			t.Fatal(err)
		}
	}
	b.drain(t, w.ID)
	ds, err := b.s.deliveries(ctx, w.ID, MaxListed)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := len(ds) - 1; i >= 0; i-- { // oldest first
		var p Payload
		if err := json.Unmarshal(ds[i].body, &p); err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if e.Slug != "hooked" || e.Bot {
				t.Errorf("delivered a click on %q (bot %v), which the filter leaves out", e.Slug, e.Bot)
			}
			got = append(got, e.ID.String())
		}
	}
	rows, err := b.db.Pool.Query(ctx, `SELECT event_id::text FROM click_logs WHERE link_id = $1 AND NOT is_bot ORDER BY xid, event_id`, b.linkID)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %d events, want the %d matching clicks once each, in position order:\n got %v\nwant %v", len(got), len(want), got, want)
	}
}

// Clicks read ahead for a webhook's next batches are let go when a batch fails: a
// receiver that stays down for hours holds no memory for them, and once it is back
// the next batches are read again, each click once.
func TestReadAheadLetGoWhenABatchFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	w := b.webhook(t)
	b.clicks(t, 250)
	b.status.Store(http.StatusOK)
	if ok, err := b.s.step(ctx, w.ID); !ok || err != nil {
		t.Fatalf("first batch: %v, %v", ok, err)
	}
	held := func() int {
		b.s.mu.Lock()
		defer b.s.mu.Unlock()
		return len(b.s.ahead[w.ID].events)
	}
	if n := held(); n != 150 {
		t.Fatalf("%d clicks read ahead after the first batch of 100, want 150", n)
	}
	b.status.Store(http.StatusInternalServerError)
	if ok, err := b.s.step(ctx, w.ID); ok || err != nil {
		t.Fatalf("second batch, receiver failing: %v, %v; want a failed attempt", ok, err)
	}
	if n := held(); n != 0 {
		t.Fatalf("%d clicks still read ahead after a failed batch, want none", n)
	}
	b.status.Store(http.StatusOK)
	b.clock.Set(b.clock.Now().Add(time.Hour)) // past the retry's backoff
	b.drain(t, w.ID)
	ds, err := b.s.deliveries(ctx, w.ID, MaxListed)
	if err != nil {
		t.Fatal(err)
	}
	events := 0
	for _, d := range ds {
		if d.Status != "delivered" {
			t.Errorf("delivery %d is %s, want delivered", d.ID, d.Status)
		}
		events += d.Events
	}
	if events != 250 {
		t.Fatalf("%d events delivered, want the 250 clicks once each", events)
	}
}

func TestBlockedAddresses(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"127.0.0.1", "127.8.9.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
		"100.100.100.200", "0.0.0.0", "0.1.2.3", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1",
		"fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe"} {
		if !blocked(netip.MustParseAddr(a)) {
			t.Errorf("%s is not blocked", a)
		}
	}
	for _, a := range []string{"8.8.8.8", "93.184.216.34", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"} {
		if blocked(netip.MustParseAddr(a)) {
			t.Errorf("%s is blocked", a)
		}
	}
}

// The guard refuses blocked addresses at dial time too, whatever the URL's host said
// when the webhook was created (DNS rebinding): here a receiver on loopback.
func TestDialTimeGuard(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	g := guard{}
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		resp, err := g.client(time.Second).Get(u)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: dialed a loopback address", u)
		}
		if !errors.Is(err, ErrForbiddenURL) {
			t.Fatalf("%s: %v, want ErrForbiddenURL", u, err)
		}
	}
	if _, err := g.check(context.Background(), srv.URL); !errors.Is(err, ErrForbiddenURL) {
		t.Fatalf("check %s: %v", srv.URL, err)
	}
	allowed := guard{allowPrivate: true}
	resp, err := allowed.client(time.Second).Get(srv.URL)
	if err != nil {
		t.Fatalf("with private addresses allowed: %v", err)
	}
	resp.Body.Close()
}

func TestSignature(t *testing.T) {
	t.Parallel()
	got := Sign("whsec_abc", time.Unix(1733227200, 0), []byte(`{"events":[]}`))
	// echo -n '1733227200.{"events":[]}' | openssl dgst -sha256 -hmac whsec_abc
	const want = "t=1733227200,v1=b50fa6e9b0039c7739df89bdf576bb29e4f9dbd2fc61acf17436424b1854bbdd"
	if got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
}

// FuzzDecodeChange: a PATCH body decodes to a change of only the fields it has, or is
// refused; applied to any webhook and checked, an accepted change never yields an empty
// links or tags list, a URL that is not http(s), or a domain that is not a host.
func FuzzDecodeChange(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://example.com/v2"}`, `{"links":null,"tags":["a"," b "],"domain":"Go.Example"}`,
		`{"include_bots":true}`, `{"links":[]}`, `{"url":null}`, `{}`, `{"x":1}`, `{"tags":"a"}`, `[]`, `null`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			return
		}
		ch, err := decodeChange(raw)
		if err != nil {
			return
		}
		for name, set := range map[string]bool{"url": ch.URL != nil, "links": ch.SetLinks, "tags": ch.SetTags, "domain": ch.SetDomain, "include_bots": ch.IncludeBots != nil} {
			if _, sent := raw[name]; sent != set {
				t.Fatalf("%s sent %v, set %v", name, sent, set)
			}
		}
		n := ch.Apply(NewWebhook{URL: "https://example.com/hook", Links: []string{"a"}, Tags: []string{"t"}})
		if n.check() != nil {
			return
		}
		if u, err := parseURL(n.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			t.Fatalf("accepted url %q", n.URL)
		}
		if (n.Links != nil && len(n.Links) == 0) || (n.Tags != nil && len(n.Tags) == 0) {
			t.Fatalf("accepted an empty list: links %v, tags %v", n.Links, n.Tags)
		}
		if n.Domain != nil && (*n.Domain == "" || strings.ContainsAny(*n.Domain, "/:@ ")) {
			t.Fatalf("accepted domain %q", *n.Domain)
		}
	})
}

func FuzzDecodeCreate(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://example.com/hook"}`,
		`{"url":"https://example.com/hook","links":["a"],"tags":null,"domain":"Go.Example","include_bots":true}`,
		`{"url":"ftp://x"}`, `{"url":"http://u:p@h/"}`, `{"links":[]}`, `[]`, `{"url":"http://[::1]:80/"}`, `{"url":"http://h/#f"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := decodeCreate(strings.NewReader(body))
		if err != nil {
			return
		}
		u, err := parseURL(req.URL)
		if err != nil {
			t.Fatalf("accepted url %q: %v", req.URL, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
			t.Fatalf("accepted %q", req.URL)
		}
		if req.Links != nil && len(req.Links) == 0 {
			t.Fatal("accepted an empty links list")
		}
	})
}

// A slug names one link per domain: a webhook's links are looked up on its domain, or
// on the default domain when it has none, never on whichever domain happens to match.
func TestLinksResolveOnTheWebhooksDomain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	branded := b.brandedHooked(t)
	if _, err := b.db.Pool.Exec(ctx, `
INSERT INTO links (slug, original_url, domain_id) SELECT 'only-branded', 'https://example.org', id FROM domains WHERE host = 'go.example.com'`); err != nil {
		t.Fatal(err)
	}
	host := "go.example.com"
	for _, c := range []struct {
		name   string
		domain *string
		want   int64
	}{
		{"default domain", nil, b.linkID},
		{"branded domain", &host, branded},
	} {
		w, err := b.s.Create(ctx, NewWebhook{URL: b.url, Links: []string{"hooked"}, Domain: c.domain})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got, err := b.s.get(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.linkIDs) != 1 || got.linkIDs[0] != c.want {
			t.Errorf("%s: webhook follows links %v, want [%d]", c.name, got.linkIDs, c.want)
		}
	}
	_, err := b.s.Create(ctx, NewWebhook{URL: b.url, Links: []string{"only-branded"}})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `no link "only-branded"`) {
		t.Fatalf("a slug that exists only on another domain: %v, want ErrInvalid naming it", err)
	}
}

// A webhook's slugs are found by links' (domain_id, slug) key, in the plans PostgreSQL
// may settle on for the prepared statement before links has statistics: not by reading
// every live link of the domain. A deleted link's slug still names no link.
func TestLinkIDsProbeTheSlugKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	// 4,000 links, half on the default domain, half on a branded one; every tenth deleted.
	if _, err := b.db.Pool.Exec(ctx, `
WITH d AS (INSERT INTO domains (host, base_url) VALUES ('go.example.com', 'https://go.example.com') RETURNING id)
INSERT INTO links (slug, original_url, domain_id, deleted_at)
SELECT 's' || i, 'https://example.com', CASE WHEN i % 2 = 0 THEN 1 ELSE d.id END, CASE WHEN i % 10 = 0 THEN now() END
FROM d, generate_series(1, 4000) i`); err != nil {
		t.Fatal(err)
	}
	host := "go.example.com"
	if ids, err := linkIDs(ctx, b.db.Pool, []string{"s3", "s5"}, &host); err != nil || len(ids) != 2 {
		t.Fatalf("live links on the branded domain = %v, %v", ids, err)
	}
	if _, err := linkIDs(ctx, b.db.Pool, []string{"s2", "s10"}, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"s10"`) {
		t.Fatalf("a deleted link's slug: %v, want ErrInvalid naming it", err)
	}

	conn := testenv.Conn(t, b.db.Pool, `PREPARE ids AS `+linkIDsSQL)
	for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		for _, args := range []string{`'{s2,s4,s6}', NULL`, `'{s3,s5}', 'go.example.com'`} {
			plan := testenv.Plan(t, conn, `EXECUTE ids(`+args+`)`)
			if !strings.Contains(plan, "links_domain_slug_key") || strings.Contains(plan, "links_live_") || strings.Contains(plan, "Seq Scan on links") {
				t.Errorf("%s, (%s): links read other than by (domain_id, slug):\n%s", mode, args, plan)
			}
		}
	}
}

// A read finds the window's clicks through click_logs' xid index only, in the plan
// PostgreSQL settles on for a prepared statement too. A plan that read click_logs by
// link (its unique key leads with link_id) would walk every click those links ever
// had on each read: a cost that grows with the table, not the window.
func TestReadWalksOnlyTheWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	if _, err := b.db.Pool.Exec(ctx, `
INSERT INTO links (slug, original_url) SELECT 'l' || i, 'https://example.com' FROM generate_series(1, 20) i;
INSERT INTO click_logs (event_id, link_id, clicked_at)
SELECT gen_random_uuid(), l.id, now() - i * interval '1 second' FROM links l, generate_series(1, 2000) i;
`); err != nil {
		t.Fatal(err)
	}
	// The tables have no statistics yet, as in a hop's first minute (and a bench's
	// whole run): the state in which PostgreSQL once chose to reach click_logs through
	// links. force_generic_plan asks for the plan a prepared statement may switch to
	// after five runs, one that knows no parameter values.
	conn := testenv.Conn(t, b.db.Pool, `PREPARE batch AS `+windowSQL)
	for name, args := range map[string]string{
		"every click": `'1', '00000000-0000-0000-0000-000000000000', '100', true, NULL, 1000`,
		"some links":  `'1', '00000000-0000-0000-0000-000000000000', '100', false, '{1,2}', 1000`,
	} {
		for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
			if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
				t.Fatal(err)
			}
			plan := testenv.Plan(t, conn, `EXECUTE batch(`+args+`)`)
			if strings.Contains(plan, "click_logs_link_event_key") || strings.Contains(plan, "Seq Scan on click_logs") ||
				!strings.Contains(plan, "click_logs_xid_idx") {
				t.Errorf("%s, %s: click_logs is read other than by its xid index:\n%s", name, mode, plan)
			}
			if strings.Contains(plan, "(xid)::text") {
				t.Errorf("%s, %s: the window is sorted by its xid as text, not in position order:\n%s", name, mode, plan)
			}
		}
	}
}

// A webhook's deliveries do not pile up: past its latest MaxListed (all that
// GET /webhooks/{id}/deliveries can show), delivered batches and pings are deleted,
// while failed batches (re-sendable) and the pending one stay, however old. Pruning
// runs once a minute per webhook the instance delivers.
func TestOldDeliveriesArePruned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	w := b.webhook(t)
	add := func(kind, status string, n int) {
		t.Helper()
		if _, err := b.db.Pool.Exec(ctx, `INSERT INTO webhook_deliveries (webhook_id, kind, status, body, events)
SELECT $1, $2, $3, '\x7b7d', 1 FROM generate_series(1, $4)`, w.ID, kind, status, n); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (all, kept int) {
		t.Helper()
		if err := b.db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'pending' OR (status = 'failed' AND kind = 'events'))
FROM webhook_deliveries WHERE webhook_id = $1`, w.ID).Scan(&all, &kept); err != nil {
			t.Fatal(err)
		}
		return all, kept
	}
	add("events", "failed", 3)
	add("ping", "failed", 2)
	add("events", "pending", 1)
	add("events", "delivered", 150)
	add("ping", "delivered", 1)
	latest, err := b.s.deliveries(ctx, w.ID, MaxListed)
	if err != nil {
		t.Fatal(err)
	}

	owned, pruned := map[int64]bool{w.ID: true}, map[int64]time.Time{}
	b.s.pruneOwned(ctx, owned, pruned)
	// 157 rows: the latest 100 (1 ping, 99 batches) stay, and so do the 3 failed
	// batches and the pending one; 51 delivered batches and 2 failed pings go.
	if all, kept := count(); all != 104 || kept != 4 {
		t.Fatalf("after pruning: %d deliveries, %d of them failed batches or pending; want 104 and 4", all, kept)
	}
	after, err := b.s.deliveries(ctx, w.ID, MaxListed)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != MaxListed || after[0].ID != latest[0].ID || after[MaxListed-1].ID != latest[MaxListed-1].ID {
		t.Fatalf("the latest %d deliveries changed: %d listed, from %d to %d (were %d to %d)", MaxListed, len(after),
			after[0].ID, after[len(after)-1].ID, latest[0].ID, latest[MaxListed-1].ID)
	}

	// Within the minute nothing more is pruned; after it, the rest goes, and a
	// statement deletes at most its batch, repeated until none is left.
	add("events", "delivered", 20)
	b.s.pruneOwned(ctx, owned, pruned)
	if all, _ := count(); all != 124 {
		t.Fatalf("pruned again within a minute: %d deliveries, want 124", all)
	}
	b.clock.Set(b.clock.Now().Add(pruneEvery))
	b.s.pruneOwned(ctx, owned, pruned)
	if all, kept := count(); all != 104 || kept != 4 {
		t.Fatalf("a minute later: %d deliveries (%d failed batches or pending), want 104 (4)", all, kept)
	}
	add("events", "delivered", 23)
	if n, err := b.s.prune(ctx, w.ID, 7); err != nil || n != 23 {
		t.Fatalf("prune in batches of 7 = %d, %v; want 23", n, err)
	}
	if n, err := b.s.prune(ctx, w.ID, 7); err != nil || n != 0 {
		t.Fatalf("prune again = %d, %v; want 0", n, err)
	}
}

// A prune reads only the deliveries it may delete, in the plans PostgreSQL may settle
// on for the prepared statement: not the failed batches a webhook keeps for re-sending,
// which a receiver down for a day leaves by the tens of thousands, and not the other
// webhooks' rows by walking the primary key.
func TestPruneReadsOnlyPrunableDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	w, other := b.webhook(t), b.webhook(t)
	// Old failed batches, then batches of both webhooks delivered in turn, then the
	// pending one.
	if _, err := b.db.Pool.Exec(ctx, `
INSERT INTO webhook_deliveries (webhook_id, status, kind, body, events)
SELECT webhook_id, status, 'events', '\x7b7d', 1 FROM (
    SELECT 1, 0, $1::bigint, 'failed' FROM generate_series(1, 3000)
    UNION ALL SELECT 2, i, w, 'delivered' FROM generate_series(1, 1000) i, unnest(ARRAY[$1, $2]::bigint[]) w
    UNION ALL SELECT 3, 0, $1, 'pending'
) d (part, i, webhook_id, status) ORDER BY part, i, webhook_id`, w.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	conn := testenv.Conn(t, b.db.Pool, `PREPARE prune AS `+pruneSQL)
	// The subqueries' scans are the ones named webhook_deliveries_<n>; the DELETE
	// itself finds each chosen row by the primary key.
	walk := regexp.MustCompile(`Seq Scan on webhook_deliveries|webhook_deliveries_pkey on webhook_deliveries webhook_deliveries_\d`)
	// force_generic_plan asks for the plan a prepared statement may switch to after
	// five runs, one that knows no parameter values; force_custom_plan for the ones
	// before. With statistics and the values known, a few thousand rows are read as
	// fast by walking them, and PostgreSQL may; at 184,000 it used the indexes.
	for _, c := range []struct {
		analyze bool
		mode    string
	}{{false, "force_generic_plan"}, {false, "force_custom_plan"}, {true, "force_generic_plan"}} {
		if c.analyze {
			if _, err := conn.Exec(ctx, `ANALYZE webhook_deliveries`); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+c.mode); err != nil {
			t.Fatal(err)
		}
		plan := testenv.Plan(t, conn, fmt.Sprintf("EXECUTE prune(%d, %d, %d)", w.ID, MaxListed, pruneBatch))
		if !strings.Contains(plan, "webhook_deliveries_prunable_idx") || !strings.Contains(plan, "webhook_deliveries_recent_idx") ||
			walk.MatchString(plan) {
			t.Errorf("statistics %t, %s: prune reads other than the webhook's latest and prunable deliveries by their indexes:\n%s",
				c.analyze, c.mode, plan)
		}
	}
}

// GET /webhooks/{id}/deliveries reads the webhook's latest deliveries by
// webhook_deliveries_recent_idx, in the generic plan PostgreSQL may settle on for the
// prepared statement before and after the table has statistics: not by walking the
// primary key back through other webhooks' deliveries, all of them for a webhook that
// has had none lately.
func TestDeliveriesListReadsOnlyTheWebhook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	busy, other, quiet := b.webhook(t), b.webhook(t), b.webhook(t)
	if _, err := b.db.Pool.Exec(ctx, `
INSERT INTO webhook_deliveries (webhook_id, status, kind, body, events)
SELECT w, 'delivered', 'events', '\x7b7d', 1 FROM generate_series(1, 2000) i, unnest(ARRAY[$1, $2]::bigint[]) w ORDER BY i, w`,
		busy.ID, other.ID); err != nil {
		t.Fatal(err)
	}
	conn := testenv.Conn(t, b.db.Pool, `SET plan_cache_mode = force_generic_plan; PREPARE list AS `+deliveriesSQL)
	for _, analyze := range []bool{false, true} {
		if analyze {
			if _, err := conn.Exec(ctx, `ANALYZE webhook_deliveries`); err != nil {
				t.Fatal(err)
			}
		}
		plan := testenv.Plan(t, conn, fmt.Sprintf("EXECUTE list(%d, %d)", quiet.ID, MaxListed))
		if !strings.Contains(plan, "webhook_deliveries_recent_idx") || strings.Contains(plan, "webhook_deliveries_pkey") ||
			strings.Contains(plan, "Seq Scan on webhook_deliveries") {
			t.Errorf("statistics %t: deliveries read other than by webhook_deliveries_recent_idx:\n%s", analyze, plan)
		}
	}
}

// A failed attempt is recorded and backed off whatever its error says. The error names
// the URL, which may be non-ASCII, and is kept to 500 bytes: cut inside a character,
// it was invalid UTF-8 that PostgreSQL refused, so the attempt went unrecorded and the
// batch was sent again at every wake-up, never backed off, given up or disabled.
func TestFailureWithANonASCIIURLIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.Timeout = 100 * time.Millisecond })
	ctx := t.Context()
	b.hang.Store(true)
	url := b.url + "/hook?q="
	if (500-len(`Post "`+url))%2 == 0 {
		url += "x" // so that the cut at 500 bytes falls inside a two-byte "é"
	}
	url += strings.Repeat("é", 300)
	sealed, err := b.s.seal("whsec_test")
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.s.insert(ctx, Webhook{URL: url, sealed: sealed}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.clicks(t, 2)
	if ok, err := b.s.step(ctx, w.ID); ok || err != nil {
		t.Fatalf("attempt against a hanging receiver: %v, %v; want a failed attempt, recorded", ok, err)
	}
	d, err := b.s.head(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Attempts != 1 || len(d.Error) > 500 || !utf8.ValidString(d.Error) || !strings.Contains(d.Error, "éé") {
		t.Fatalf("after a failed attempt: %d attempts, error of %d bytes %q; want 1 and the error cut to valid UTF-8",
			d.Attempts, len(d.Error), d.Error)
	}
	if want := b.clock.Now().Add(750 * time.Millisecond); d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(want) {
		t.Fatalf("next attempt at %v, want %v (the first backoff)", d.NextAttemptAt, want)
	}
	hits := b.hits.Load()
	if _, err := b.s.step(ctx, w.ID); err != nil || b.hits.Load() != hits {
		t.Fatalf("a batch that is not due was sent again (%v)", err)
	}
}

// POST /webhooks/{id}/test records the ping's answer even when the API client hangs
// up first: the ping never stays pending, where nothing would ever send it and
// pruning would keep it for ever.
func TestPingIsRecordedWhenTheCallerHangsUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, hangUp := context.WithCancel(t.Context())
	defer hangUp()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hangUp() // the API client leaves while the receiver answers
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	b.url = srv.URL
	w := b.webhook(t)
	d, err := b.s.Ping(ctx, w.ID)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	ds, err := b.s.deliveries(t.Context(), w.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "delivered" || len(ds) != 1 || ds[0].Kind != "ping" || ds[0].Status != "delivered" || ds[0].Attempts != 1 {
		t.Fatalf("ping answered %+v, deliveries %+v; want one ping, delivered on its one attempt", d, ds)
	}
}

// apiServer serves the webhook API as app does, errors as problem JSON.
func apiServer(t *testing.T, s *Service) string {
	t.Helper()
	e := echo.New()
	e.HTTPErrorHandler = problemtest.ErrorHandler(problemtest.Describe(map[error]string{
		ErrInvalid: "400 invalid-webhook", ErrNotFound: "404 webhook-not-found", ErrNoDelivery: "404 delivery-not-found",
		ErrForbiddenURL: "400 webhook-url-forbidden",
	}))
	s.Routes(e.Group(""))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv.URL
}

// call sends body to url with method and decodes the JSON answer.
func call(t *testing.T, method, url, contentType, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, got, resp.Header
}

// POST /webhooks refuses what it could never serve, as a problem that says why: a body
// not sent as JSON, and a domain hop does not have (whose filter would pass no click).
// Tags are trimmed as a link's are, so " launch " follows links tagged "launch".
func TestCreateRefusesWhatItCannotServe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	if _, err := b.db.Pool.Exec(ctx, `INSERT INTO domains (host, base_url) VALUES ('go.example.com', 'https://go.example.com')`); err != nil {
		t.Fatal(err)
	}
	api := apiServer(t, b.s)
	var (
		location string
		header   http.Header
	)
	post := func(contentType, body string) (int, map[string]any) {
		t.Helper()
		var status int
		var got map[string]any
		status, got, header = call(t, http.MethodPost, api+"/webhooks", contentType, body)
		location = header.Get("Location")
		return status, got
	}
	hook := `{"url":"` + b.url + `"`
	for _, c := range []struct {
		name, contentType, body string
		status                  int
		detail                  string
	}{
		{"text/plain", "text/plain", hook + `}`, http.StatusUnsupportedMediaType, "Content-Type: application/json"},
		{"no such domain", "application/json", hook + `,"domain":"nope.example"}`, http.StatusBadRequest, `no domain "nope.example"`},
	} {
		status, got := post(c.contentType, c.body)
		if detail, _ := got["detail"].(string); status != c.status || !strings.Contains(detail, c.detail) {
			t.Errorf("%s: %d %v; want %d saying %q", c.name, status, got, c.status, c.detail)
		}
	}
	if hooks, err := b.s.List(ctx); err != nil || len(hooks) != 0 {
		t.Fatalf("refused webhooks were stored: %v, %v", hooks, err)
	}
	status, got := post("application/json", hook+`,"domain":"Go.Example.com","tags":[" launch "]}`)
	if status != http.StatusCreated || got["domain"] != "go.example.com" || fmt.Sprint(got["tags"]) != "[launch]" {
		t.Fatalf("a webhook on a domain hop has: %d %v; want 201, domain go.example.com, tags [launch]", status, got)
	}
	if want := fmt.Sprintf("/webhooks/%v", got["id"]); location != want {
		t.Fatalf("Location %q, want %q", location, want)
	}
	if cc := header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("the answer with the secret has Cache-Control %q, want no-store", cc)
	}
}

// A create with a form nonce already used makes nothing and hands back the webhook the
// first made, without its secret, even when both are sent at once, and makes nothing
// after that webhook is deleted; creates without a nonce are never taken for one another.
func TestCreateWithAUsedFormNonceMakesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	nonce := uuid.New()
	var wg sync.WaitGroup
	var made, sent atomic.Int32
	ids := make([]int64, 8)
	for i := range ids {
		wg.Go(func() {
			w, err := b.s.Create(ctx, NewWebhook{URL: b.url, FormNonce: &nonce})
			switch {
			case err == nil && w.Secret != "":
				made.Add(1)
			case errors.Is(err, ErrFormSent) && w.Secret == "":
				sent.Add(1)
			default:
				t.Errorf("create %d: %+v, %v", i, w, err)
			}
			ids[i] = w.ID
		})
	}
	wg.Wait()
	if made.Load() != 1 || sent.Load() != int32(len(ids)-1) {
		t.Fatalf("%d made, %d told the form was sent; want 1 and %d", made.Load(), sent.Load(), len(ids)-1)
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("creates answered webhooks %v, want one", ids)
		}
	}
	// Sent again with what no longer passes the checks, it is still the form that made
	// the webhook, and makes nothing.
	if w, err := b.s.Create(ctx, NewWebhook{URL: "ftp://nope", FormNonce: &nonce}); !errors.Is(err, ErrFormSent) || w.ID != ids[0] {
		t.Fatalf("resent with a bad URL: %+v, %v", w, err)
	}
	// Once its webhook is deleted the form stays used: it never brings the webhook back.
	if err := b.s.Delete(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if w, err := b.s.Create(ctx, NewWebhook{URL: b.url, FormNonce: &nonce}); !errors.Is(err, ErrFormSent) || w.ID != 0 {
		t.Fatalf("resent after its webhook was deleted: %+v, %v", w, err)
	}
	for range 2 {
		if _, err := b.s.Create(ctx, NewWebhook{URL: b.url}); err != nil {
			t.Fatal(err)
		}
	}
	if hooks, err := b.s.List(ctx); err != nil || len(hooks) != 2 {
		t.Fatalf("%d webhooks (%v), want the 2 made without a nonce", len(hooks), err)
	}
}

// PATCH /webhooks/{id} changes what it is sent and checks it as POST does: a refused
// change leaves the webhook as it was. Links are slugs on the domain the webhook ends
// up with; unchanged ones keep their link even after it is deleted, so a new URL alone
// never fails over them.
func TestUpdateWebhook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	branded := b.brandedHooked(t)
	strict, err := New(ctx, Config{}, b.db.Pool, nil, slog.New(slog.DiscardHandler)) // the SSRF guard on
	if err != nil {
		t.Fatal(err)
	}
	api, guarded := apiServer(t, b.s), apiServer(t, strict)
	w, err := b.s.Create(ctx, NewWebhook{URL: b.url, Links: []string{"hooked"}})
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/webhooks/%d", w.ID)
	patch := func(base, path, body string) (int, map[string]any) {
		t.Helper()
		status, got, _ := call(t, http.MethodPatch, base+path, "application/json", body)
		return status, got
	}
	stored := func() Webhook {
		t.Helper()
		got, err := b.s.get(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	before := stored()
	for _, c := range []struct {
		name, base, path, body string
		status                 int
		detail                 string
	}{
		{"empty", api, path, `{}`, http.StatusBadRequest, "must change at least one of url, links, tags, domain, include_bots"},
		{"unknown field", api, path, `{"secret":"mine"}`, http.StatusBadRequest, `unknown field "secret"`},
		{"null url", api, path, `{"url":null}`, http.StatusBadRequest, "url cannot be null"},
		{"empty url", api, path, `{"url":""}`, http.StatusBadRequest, "url is required"},
		{"null include_bots", api, path, `{"include_bots":null}`, http.StatusBadRequest, "include_bots cannot be null"},
		{"no links", api, path, `{"links":[]}`, http.StatusBadRequest, "links must be null or a list"},
		{"no such link", api, path, `{"links":["hooked","nope"]}`, http.StatusBadRequest, `no link "nope"`},
		{"no such domain", api, path, `{"links":null,"domain":"nope.example"}`, http.StatusBadRequest, `no domain "nope.example"`},
		{"wrong type", api, path, `{"tags":"spring"}`, http.StatusBadRequest, `"tags" must be an array`},
		{"private address", guarded, path, `{"url":"http://127.0.0.1/hook"}`, http.StatusBadRequest, "a loopback, private"},
		{"no such webhook", api, "/webhooks/999", `{"include_bots":true}`, http.StatusNotFound, "not found"},
	} {
		status, got := patch(c.base, c.path, c.body)
		if detail, _ := got["detail"].(string); status != c.status || !strings.Contains(detail, c.detail) {
			t.Errorf("%s: %d %v; want %d saying %q", c.name, status, got, c.status, c.detail)
		}
	}
	if got := stored(); !slices.Equal(got.linkIDs, before.linkIDs) || got.URL != before.URL || got.IncludeBots || got.Tags != nil || got.Domain != nil {
		t.Fatalf("refused changes changed the webhook: %+v", got)
	}

	// The link moves to go.example.com's "hooked" with the domain; tags are trimmed.
	status, got := patch(api, path, `{"domain":"Go.Example.com","tags":[" spring "],"include_bots":true}`)
	if status != http.StatusOK || got["domain"] != "go.example.com" || fmt.Sprint(got["links"]) != "[hooked]" || fmt.Sprint(got["tags"]) != "[spring]" || got["include_bots"] != true || got["secret"] != nil {
		t.Fatalf("moving to a domain: %d %v", status, got)
	}
	if got := stored(); len(got.linkIDs) != 1 || got.linkIDs[0] != branded {
		t.Fatalf("links %v after moving to go.example.com, want [%d]", got.linkIDs, branded)
	}
	// A deleted link stays followed while the links and domain stay as they are.
	if _, err := b.db.Pool.Exec(ctx, `UPDATE links SET deleted_at = now() WHERE id = $1`, branded); err != nil {
		t.Fatal(err)
	}
	if status, got := patch(api, path, `{"url":"`+b.url+`/v2","links":["hooked"]}`); status != http.StatusOK || got["url"] != b.url+"/v2" {
		t.Fatalf("a new URL with a deleted link followed: %d %v", status, got)
	}
	// Moving finds the slugs again on the new domain, where a deleted link is none.
	if status, got := patch(api, path, `{"domain":null}`); status != http.StatusOK || got["domain"] != nil {
		t.Fatalf("moving to the default domain: %d %v", status, got)
	}
	if got := stored(); len(got.linkIDs) != 1 || got.linkIDs[0] != b.linkID {
		t.Fatalf("links %v after moving to the default domain, want [%d]", got.linkIDs, b.linkID)
	}
	if status, got := patch(api, path, `{"domain":"go.example.com"}`); status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(got["detail"]), `no link "hooked" on go.example.com`) {
		t.Fatalf("moving back to the domain whose link was deleted: %d %v", status, got)
	}
	// null: every link, every tag, every domain again.
	status, got = patch(api, path, `{"links":null,"tags":null,"domain":null}`)
	if status != http.StatusOK || got["links"] != nil || got["tags"] != nil || got["domain"] != nil {
		t.Fatalf("clearing the filters: %d %v", status, got)
	}
	if got := stored(); got.linkIDs != nil || got.Tags != nil || got.Domain != nil || got.URL != b.url+"/v2" || !got.IncludeBots {
		t.Fatalf("after clearing the filters: %+v", got)
	}
}

// New filters apply to clicks read ahead before the change: after it, the webhook
// gets none of the clicks it no longer follows, and each one it does follow once.
func TestNewFiltersApplyToClicksReadAhead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.status.Store(http.StatusOK)
	ctx := t.Context()
	var other int64
	if err := b.db.Pool.QueryRow(ctx, `INSERT INTO links (slug, original_url, tags) VALUES ('other', 'https://example.com', '{b}') RETURNING id`).Scan(&other); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Pool.Exec(ctx, `UPDATE links SET tags = '{a}' WHERE id = $1`, b.linkID); err != nil {
		t.Fatal(err)
	}
	w := b.webhook(t)
	// 300 clicks in one transaction, alternating between the two links.
	if _, err := b.db.Pool.Exec(ctx, `
INSERT INTO click_logs (event_id, link_id, clicked_at)
SELECT gen_random_uuid(), CASE WHEN i % 2 = 0 THEN $1::bigint ELSE $2::bigint END, $3 FROM generate_series(1, 300) i`,
		b.linkID, other, b.clock.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.s.step(ctx, w.ID); !ok || err != nil {
		t.Fatalf("first batch: %v, %v", ok, err)
	}
	b.s.mu.Lock()
	held := len(b.s.ahead[w.ID].events)
	b.s.mu.Unlock()
	if held != 200 {
		t.Fatalf("%d clicks read ahead after the first batch, want 200", held)
	}
	if _, err := b.s.Update(ctx, w.ID, Change{SetTags: true, Tags: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	b.drain(t, w.ID)
	ds, err := b.s.deliveries(ctx, w.ID, MaxListed)
	if err != nil {
		t.Fatal(err)
	}
	slugs := map[string]int{}
	seen := map[uuid.UUID]bool{}
	first := 0                          // clicks on other in the first batch, made before the change
	for i := len(ds) - 1; i >= 0; i-- { // oldest first
		var p Payload
		if err := json.Unmarshal(ds[i].body, &p); err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			if seen[e.ID] {
				t.Fatalf("event %s delivered twice", e.ID)
			}
			seen[e.ID] = true
			switch {
			case i == len(ds)-1 && e.Slug == "other":
				first++
			case e.Slug != "hooked":
				t.Errorf("after the change, delivery %d carried a click on %q", ds[i].ID, e.Slug)
			}
			slugs[e.Slug]++
		}
	}
	if len(ds) < 2 || slugs["hooked"] != 150 || slugs["other"] != first {
		t.Fatalf("%d deliveries carried %v; want the first batch's %d clicks on other and all 150 on hooked", len(ds), slugs, first)
	}
}

// A new signing secret signs what is sent next, retries of a batch made before it
// included, and the old one no longer does. POST /webhooks/{id}/secret shows it once.
func TestRotatedSecretSignsWhatIsSentNext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	var (
		mu   sync.Mutex
		sigs []string
		fail = true
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		sigs = append(sigs, r.Header.Get("Hop-Signature")+"|"+string(body))
		if fail {
			w.WriteHeader(http.StatusUnauthorized) // a receiver that has not got the new secret yet
		}
	}))
	t.Cleanup(receiver.Close)
	created, err := b.s.Create(ctx, NewWebhook{URL: receiver.URL})
	if err != nil {
		t.Fatal(err)
	}
	b.clicks(t, 3)
	b.drain(t, created.ID) // the batch is made, sent once and refused
	resp, err := http.Post(apiServer(t, b.s)+fmt.Sprintf("/webhooks/%d/secret", created.ID), "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rotated Webhook
	if err := json.NewDecoder(resp.Body).Decode(&rotated); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(rotated.Secret, "whsec_") || rotated.Secret == created.Secret || rotated.ID != created.ID ||
		resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("rotation answered %d %+v, Cache-Control %q", resp.StatusCode, rotated, resp.Header.Get("Cache-Control"))
	}
	if got, _ := b.s.Get(ctx, created.ID); got.Secret != "" {
		t.Fatal("the secret is shown again after the rotation")
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	b.clock.Set(b.clock.Now().Add(time.Hour)) // past the retry's backoff
	b.drain(t, created.ID)
	mu.Lock()
	defer mu.Unlock()
	if len(sigs) != 2 {
		t.Fatalf("%d requests, want the refused one and its retry", len(sigs))
	}
	verifies := func(sent, secret string) bool {
		sig, body, _ := strings.Cut(sent, "|")
		ts, _, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",")
		sec, err := strconv.ParseInt(ts, 10, 64)
		return err == nil && Sign(secret, time.Unix(sec, 0), []byte(body)) == sig
	}
	if !verifies(sigs[0], created.Secret) || verifies(sigs[0], rotated.Secret) {
		t.Error("the request before the rotation is not signed with the first secret alone")
	}
	if !verifies(sigs[1], rotated.Secret) || verifies(sigs[1], created.Secret) {
		t.Error("the retry after the rotation is not signed with the new secret alone")
	}
}

// A new URL is tried at once: a batch waiting out the old receiver's backoff goes now,
// and the failing time starts again. The cursor and a disabled state stay (a
// successful ping or retry enables the webhook again, as ever).
func TestNewURLIsTriedAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	w := b.webhook(t)
	b.clicks(t, 3)
	for range 4 { // four failures: the next attempt is 8 s away
		b.drain(t, w.ID)
		b.clock.Set(b.clock.Now().Add(5 * time.Second))
	}
	before, err := b.s.get(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if before.FailingSince == nil {
		t.Fatal("the webhook is not failing")
	}
	if _, err := b.db.Pool.Exec(ctx, `UPDATE webhooks SET disabled_at = now() WHERE id = $1`, w.ID); err != nil {
		t.Fatal(err)
	}
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(ok.Close)
	url := ok.URL
	after, err := b.s.Update(ctx, w.ID, Change{URL: &url})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := b.s.get(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.FailingSince != nil || stored.FailingSince != nil || !after.Disabled || after.cursor != before.cursor {
		t.Fatalf("after a new URL: failing since %v (stored %v), disabled %v, cursor %v (was %v)",
			after.FailingSince, stored.FailingSince, after.Disabled, after.cursor, before.cursor)
	}
	if _, err := b.db.Pool.Exec(ctx, `UPDATE webhooks SET disabled_at = NULL WHERE id = $1`, w.ID); err != nil {
		t.Fatal(err)
	}
	b.drain(t, w.ID) // the clock has not moved since the last failure
	ds, err := b.s.deliveries(ctx, w.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Status != "delivered" || ds[0].Events != 3 {
		t.Fatalf("the waiting batch after a new URL: %+v", ds)
	}
}

// A send still on its way to the old URL when a new one is saved fails for nothing: the
// batch is tried at the new URL at once, and neither its age nor the webhook's failing
// time, a day old here, disables the webhook or gives the batch up.
func TestFailureAtTheOldURLCountsForNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	w := b.webhook(t)
	b.clicks(t, 2)
	b.drain(t, w.ID) // one failure at the old URL
	if _, err := b.db.Pool.Exec(ctx, `UPDATE webhooks SET failing_since = $2 WHERE id = $1`, w.ID, b.clock.Now().Add(-25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	b.clock.Set(b.clock.Now().Add(time.Hour))
	old, err := b.s.get(ctx, w.ID) // as the dispatcher read it before its send
	if err != nil {
		t.Fatal(err)
	}
	head, err := b.s.head(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	ok := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(ok.Close)
	if _, err := b.s.Update(ctx, w.ID, Change{URL: &ok.URL}); err != nil { // saved during the send
		t.Fatal(err)
	}
	if sent, err := b.s.attempt(ctx, old, head, false); sent || err != nil {
		t.Fatalf("the send to the old URL: %v, %v; want a failure recorded", sent, err)
	}
	now, err := b.s.get(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	d, err := b.s.delivery(ctx, w.ID, head.ID)
	if err != nil {
		t.Fatal(err)
	}
	if now.Disabled || now.FailingSince != nil || d.Status != "pending" || d.NextAttemptAt == nil || d.NextAttemptAt.After(b.clock.Now()) {
		t.Fatalf("after a failure at the old URL: disabled %v, failing since %v, batch %s next %v",
			now.Disabled, now.FailingSince, d.Status, d.NextAttemptAt)
	}
	b.drain(t, w.ID)
	if d, _ := b.s.delivery(ctx, w.ID, head.ID); d.Status != "delivered" {
		t.Fatalf("the batch at the new URL: %s", d.Status)
	}
}
