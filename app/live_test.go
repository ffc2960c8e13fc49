package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/browsertest"
	"github.com/hop-dev/hop/internal/testenv"
	"github.com/hop-dev/hop/modules/apikey"
)

// sseEvent is one Server-Sent Event as a client parses it.
type sseEvent struct {
	Event, ID, Data string
	At              time.Time // when the client read it
}

// sseStream is an open event stream; Events carries parsed events, and live is
// closed once the server says the client is live (": live").
type sseStream struct {
	resp   *http.Response
	events chan sseEvent
	live   chan struct{}
	done   chan struct{}
	cancel context.CancelFunc
}

// openLive opens path (/live or /links/{slug}/live) with the API key, resuming after
// lastID when set, and waits until the stream is live.
func (h *instance) openLive(t testing.TB, path, lastID string) *sseStream {
	t.Helper()
	return h.openLiveAs(t, path, lastID, "Authorization", "Bearer "+h.Key)
}

// openLiveAs is openLive with the credentials in header name: an API key, or a
// dashboard session's cookie.
func (h *instance) openLiveAs(t testing.TB, path, lastID, name, value string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(name, value)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: status %d, content type %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sseStream{resp: resp, events: make(chan sseEvent, 100_000), live: make(chan struct{}), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" || ev.Data != "" {
					ev.At = time.Now()
					s.events <- ev
				}
				ev = sseEvent{}
			case line == ": live":
				close(s.live)
			case strings.HasPrefix(line, "event: "):
				ev.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				ev.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				ev.Data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	t.Cleanup(s.Close)
	select {
	case <-s.live:
	case <-s.done:
		t.Fatalf("stream %s ended before it was live", path)
	case <-time.After(30 * time.Second):
		t.Fatalf("stream %s never said it was live", path)
	}
	return s
}

// Close ends the stream.
func (s *sseStream) Close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// next returns n events, failing the test when they do not come within a bound.
func (s *sseStream) next(t testing.TB, n int) []sseEvent {
	t.Helper()
	out := make([]sseEvent, 0, n)
	deadline := time.After(30 * time.Second)
	for len(out) < n {
		select {
		case ev := <-s.events:
			out = append(out, ev)
		case <-deadline:
			t.Fatalf("got %d events, want %d", len(out), n)
		}
	}
	return out
}

// liveClick sends one redirect and fails unless it is answered with a 302.
func (h *instance) liveClick(t testing.TB, slug, ua string) time.Time {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/"+slug, nil)
	req.Header.Set("User-Agent", ua)
	req.Header.Set("Referer", "https://news.example.org/item?id=1")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect status %d", resp.StatusCode)
	}
	return time.Now()
}

const (
	firefoxUA = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
	botUA     = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
)

// p95 returns the 95th percentile of ds.
func p95(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*95+99)/100-1]
}

// A click shows up on a connected stream, in both modes, with exactly the fields of
// the contract and never the IP or visitor hash; ?bots=false leaves bots out. The p95
// from the answered redirect to the event is logged.
func TestLiveClickAppears(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"redis", "no-redis"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := startHop(t, func(cfg map[string]any) {
				if mode == "no-redis" {
					cfg["redis_url"] = ""
				}
			})
			slug := h.createLink(t, map[string]any{"url": "https://example.com/live"})["slug"].(string)
			all := h.openLive(t, "/live", "")
			humans := h.openLive(t, "/links/"+slug+"/live?bots=false", "")

			h.liveClick(t, slug, botUA)
			const n = 40
			var lat []time.Duration
			for range n {
				at := h.liveClick(t, slug, firefoxUA)
				ev := humans.next(t, 1)[0]
				lat = append(lat, ev.At.Sub(at))
			}
			evs := all.next(t, n+1)
			var first map[string]any
			if err := json.Unmarshal([]byte(evs[0].Data), &first); err != nil {
				t.Fatal(err)
			}
			if evs[0].Event != "click" || first["id"] != evs[0].ID || first["bot"] != true || first["slug"] != slug {
				t.Fatalf("first event %+v, data %v: want the bot click", evs[0], first)
			}
			var keys []string
			for k := range first {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			want := []string{"bot", "bot_reason", "browser", "clicked_at", "country", "device", "domain", "id", "os", "referer", "slug"}
			if !slices.Equal(keys, want) {
				t.Fatalf("event fields %v, want %v", keys, want)
			}
			if first["domain"] != "hop.test" || first["referer"] != "news.example.org" {
				t.Fatalf("domain %v, referer %v", first["domain"], first["referer"])
			}
			select {
			case ev := <-humans.events:
				t.Fatalf("?bots=false stream got an extra event %+v", ev)
			default:
			}
			t.Logf("%s: live feed redirect->event over %d clicks: p95 %s, max %s", mode, n, p95(lat), slices.Max(lat))
		})
	}
}

// A client that reconnects with Last-Event-ID gets exactly the clicks it missed, in
// order, then live ones; /links/{slug}/live of an unknown slug is a 404.
func TestLiveResumeWithoutGaps(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/resume"})["slug"].(string)
	s := h.openLive(t, "/live", "")
	for range 5 {
		h.liveClick(t, slug, firefoxUA)
	}
	seen := s.next(t, 5)
	s.Close()
	for range 7 {
		h.liveClick(t, slug, firefoxUA)
	}
	// Wait until the 7 are stored, so the resume must read them from the database.
	testenv.Eventually(t, 30*time.Second, "12 clicks stored", func() bool {
		return count(t, h.DB, "SELECT count(*) FROM click_logs") == 12
	})
	r := h.openLive(t, "/live", seen[4].ID)
	h.liveClick(t, slug, firefoxUA)
	got := r.next(t, 8)
	ids := map[string]bool{}
	for _, ev := range seen {
		ids[ev.ID] = true
	}
	for i, ev := range got {
		if ids[ev.ID] {
			t.Fatalf("event %d (%s) was seen before the reconnect", i, ev.ID)
		}
		ids[ev.ID] = true
		if i > 0 && ev.ID <= got[i-1].ID {
			t.Fatalf("events out of order: %s after %s", ev.ID, got[i-1].ID)
		}
	}
	if n := count(t, h.DB, "SELECT count(DISTINCT event_id) FROM click_logs"); n != int64(len(ids)) {
		t.Fatalf("%d distinct events seen, %d stored", len(ids), n)
	}
	mustProblem(t, h.api(t, http.MethodGet, "/links/nope-nope/live", nil), http.StatusNotFound)
	mustProblem(t, h.do(t, http.MethodGet, "/live", nil), http.StatusUnauthorized)

	// Open streams end when hop shuts down; they do not hold the drain until its timeout
	// (which would make Stop return the server's shutdown error).
	if err := h.Stop(); err != nil {
		t.Fatalf("stop with an open stream: %v", err)
	}
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end when hop stopped")
	}
}

// A click answered by instance A reaches a client connected to instance B, with and
// without Redis.
func TestLiveAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"redis", "no-redis"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			db := testenv.NewDB(t)
			var rdb *testenv.Redis
			if mode == "redis" {
				rdb = testenv.NewRedis(t)
			}
			a := startWith(t, db, rdb, testConfig(t, db, rdb))
			b := startWith(t, db, rdb, testConfig(t, db, rdb))
			slug := a.createLink(t, map[string]any{"url": "https://example.com/multi"})["slug"].(string)
			s := b.openLive(t, "/live", "")
			for range 3 {
				a.liveClick(t, slug, firefoxUA)
			}
			evs := s.next(t, 3)
			for _, ev := range evs {
				if !strings.Contains(ev.Data, fmt.Sprintf("%q:%q", "slug", slug)) {
					t.Fatalf("event %+v is not a click of %s", ev, slug)
				}
			}
		})
	}
}

// The dashboard's pages reach the feed with their session, under /dashboard/ where
// the session cookie goes; without a session it is a 401 problem.
func TestLiveWithDashboardSession(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/dash-live"})["slug"].(string)
	mustProblem(t, h.do(t, http.MethodGet, "/dashboard/live", nil), http.StatusUnauthorized)

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	h.signIn(t, client, h.Key)
	// The link's page carries the live panel, which loads its script.
	resp, err := client.Get(h.URL + "/dashboard/links/" + slug)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `data-live-src="/dashboard/links/`+slug+`/live"`) || !strings.Contains(string(page), `src="/dashboard/live.js"`) {
		t.Fatalf("the link's page lacks the live panel:\n%.2000s", page)
	}
	js := h.do(t, http.MethodGet, "/dashboard/live.js", nil)
	if js.Status != http.StatusOK || !strings.Contains(string(js.Body), "EventSource") {
		t.Fatalf("live.js: %d", js.Status)
	}
	mustStatus(t, h.do(t, http.MethodGet, "/dashboard/live.js", nil, "If-None-Match", js.Header.Get("ETag")), http.StatusNotModified)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/dashboard/links/"+slug+"/live", nil)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("with a session: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != ": live" {
	}
	h.liveClick(t, slug, firefoxUA)
	for sc.Scan() {
		if sc.Text() == "event: click" {
			return
		}
	}
	t.Fatalf("stream ended without the click: %v", sc.Err())
}

// The live panel in Chromium: signed in, a link's page shows a click as it happens,
// in the table of last clicks (its time in UTC, as the rest of the dashboard, in a
// browser whose zone is Tokyo's) and in the per-minute chart, without a reload, and no
// console error or CSP violation on the way.
func TestLivePanelInChromium(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/panel"})["slug"].(string)
	b := browsertest.New(t)
	b.Run(t,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Tokyo"})
			return err
		}),
		chromedp.Navigate(h.URL+"/dashboard/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="api_key"]`), h.Key),
		chromedp.Submit(chromedp.CSS(`input[name="api_key"]`)),
		chromedp.WaitVisible(chromedp.CSS(".live-panel")),
		chromedp.Navigate(h.URL+"/dashboard/links/"+slug),
		chromedp.WaitVisible(chromedp.CSS(".live-panel")),
	)
	testenv.Eventually(t, 30*time.Second, "the panel to connect", func() bool {
		return browsertest.Value(t, b, chromedp.Text(chromedp.CSS(".live-status"))) == "Live"
	})
	h.liveClick(t, slug, firefoxUA)
	h.liveClick(t, slug, botUA)
	testenv.Eventually(t, 30*time.Second, "two rows in the panel", func() bool {
		return browsertest.Value(t, b, chromedp.Evaluate[int](`document.querySelectorAll(".live-clicks tbody tr").length`)) == 2
	})
	testenv.Eventually(t, 30*time.Second, "the clicks in the per-minute chart", func() bool {
		return browsertest.Value(t, b, chromedp.Evaluate[int](`Array.from(document.querySelectorAll(".live-chart rect")).filter(r => Number(r.getAttribute("height")) > 0).length`)) >= 1
	})
	if bars := browsertest.Value(t, b, chromedp.Evaluate[int](`document.querySelectorAll(".live-chart rect").length`)); bars != 60 {
		t.Fatalf("%d bars, want 60", bars)
	}
	shown := browsertest.Value(t, b, chromedp.Evaluate[string](`document.querySelector(".live-clicks tbody td").textContent`))
	at, err := time.Parse("15:04:05 UTC", shown)
	if err != nil {
		t.Fatalf("the last click's time reads %q, want HH:MM:SS UTC", shown)
	}
	now := time.Now().UTC()
	off := (at.Hour()*3600 + at.Minute()*60 + at.Second() - (now.Hour()*3600 + now.Minute()*60 + now.Second()) + 24*3600) % (24 * 3600)
	if off > 5*60 && off < 24*3600-5*60 {
		t.Fatalf("the last click's time reads %s at %s UTC: not UTC", shown, now.Format(time.TimeOnly))
	}
	if p := b.Problems(); len(p) > 0 {
		t.Fatalf("browser problems: %v", p)
	}
}

// A live stream outlives its sign-in, but not its key: revoking the key (here by
// another process, as `hop apikey revoke` does) ends the streams it opened, with the
// key itself and through a dashboard session signed in with it, while other keys'
// streams go on; reconnecting with it is refused.
func TestLiveEndsWhenItsKeyIsRevoked(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	slug := h.createLink(t, map[string]any{"url": "https://example.com/revoked-live"})["slug"].(string)
	store := apikey.NewStore(h.DB.Pool, slog.New(slog.DiscardHandler))
	k, key, err := store.Create(t.Context(), "watcher")
	if err != nil {
		t.Fatal(err)
	}

	resp := h.signIn(t, noRedirect, key)
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) == 0 {
		t.Fatalf("sign-in with the new key: %d, %d cookies", resp.StatusCode, len(cookies))
	}
	session := cookies[0].Name + "=" + cookies[0].Value

	byKey := h.openLiveAs(t, "/live", "", "Authorization", "Bearer "+key)
	bySession := h.openLiveAs(t, "/dashboard/live", "", "Cookie", session)
	other := h.openLive(t, "/live", "")

	if err := store.Revoke(t.Context(), k.ID); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*sseStream{"the key's stream": byKey, "the session's stream": bySession} {
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s is still open 30 s after its key was revoked", name)
		}
	}
	h.liveClick(t, slug, firefoxUA)
	if ev := other.next(t, 1)[0]; ev.Event != "click" || !strings.Contains(ev.Data, `"slug":"`+slug+`"`) {
		t.Fatalf("another key's stream got %+v, want the click on %s", ev, slug)
	}
	mustProblem(t, h.do(t, http.MethodGet, "/live", nil, "Authorization", "Bearer "+key), http.StatusUnauthorized)
	mustProblem(t, h.do(t, http.MethodGet, "/dashboard/live", nil, "Cookie", session), http.StatusUnauthorized)
}

// untilRefused keeps a stream whose check fails for another reason than a refusal
// (PostgreSQL away), so an outage does not cut every client at once, and ends it at
// the first change after which its credentials are refused.
func TestUntilRefusedKeepsStreamsThroughFailedChecks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	next := make(chan struct{})
	changes := func() <-chan struct{} { mu.Lock(); defer mu.Unlock(); return next }
	change := func() { mu.Lock(); defer mu.Unlock(); close(next); next = make(chan struct{}) }
	answers := make(chan error) // nil: refused; errAway: could not tell
	checked := make(chan struct{}, 10)
	allowed := func(ctx context.Context, r *http.Request) (bool, error) {
		checked <- struct{}{}
		select {
		case err := <-answers:
			return false, err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	ended := make(chan struct{})
	handler := untilRefused(changes, allowed, slog.New(slog.DiscardHandler))(func(c echo.Context) error {
		<-c.Request().Context().Done()
		close(ended)
		return nil
	})
	e := echo.New()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/live", nil), httptest.NewRecorder())
	go handler(c)

	errAway := errors.New("connection refused")
	<-checked
	answers <- errAway // the first check cannot tell
	change()
	<-checked
	answers <- errAway // nor the one after a change
	select {
	case <-ended:
		t.Fatal("a check that could not tell ended the stream")
	default:
	}
	change()
	<-checked
	answers <- nil // refused
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("a refused check did not end the stream")
	}
}
