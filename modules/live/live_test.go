package live

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hop-dev/hop/internal/horizon"
	"github.com/hop-dev/hop/internal/problem/problemtest"
	"github.com/hop-dev/hop/internal/testenv"
)

// setup runs a feed on a fresh database behind an Echo server; inflight counts the
// stream handlers still running.
func setup(t *testing.T, cfg Config) (f *Feed, db *testenv.DB, url string, inflight *atomic.Int64) {
	t.Helper()
	db = testenv.NewDB(t)
	f, err := New(cfg, db.Pool, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	inflight = &atomic.Int64{}
	e := echo.New()
	e.HTTPErrorHandler = problemtest.ErrorHandler(problemtest.Describe(map[error]string{
		ErrNotFound: "404 link-not-found", ErrGone: "410 link-gone",
	}))
	g := e.Group("", func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			inflight.Add(1)
			defer inflight.Add(-1)
			return next(c)
		}
	})
	f.Routes(g)
	srv := httptest.NewServer(e)
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return f, db, srv.URL, inflight
}

// newLink stores a link and returns its id.
func newLink(t *testing.T, db *testenv.DB, slug string) int64 {
	t.Helper()
	var id int64
	if err := db.Pool.QueryRow(t.Context(), `INSERT INTO links (slug, original_url) VALUES ($1, 'https://example.com') RETURNING id`, slug).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// insertClick stores a click on linkID made at at, with a UUIDv7 of that time, as the
// ingest would, and returns its id.
func insertClick(t *testing.T, db *testenv.DB, linkID int64, at time.Time) uuid.UUID {
	t.Helper()
	id := idAt(at)
	if _, err := db.Pool.Exec(t.Context(), `INSERT INTO click_logs (event_id, link_id, clicked_at, user_agent) VALUES ($1, $2, $3, 'x')`, id, linkID, at); err != nil {
		t.Fatal(err)
	}
	return id
}

// waitFeedPastClicks returns once the feed has moved past every click stored so far.
func waitFeedPastClicks(t *testing.T, f *Feed, db *testenv.DB) {
	t.Helper()
	var last uint64
	if err := db.Pool.QueryRow(t.Context(), `SELECT max(xid::text::bigint) FROM click_logs`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the feed past the clicks stored so far", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.pos.XID > last
	})
}

func (f *Feed) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subs
}

// A client that stops reading is cut off (its write deadline passes), its handler
// ends, and the feed goes on serving a client that reads: a stalled client holds its
// socket buffers and a position in the shared ring, never the clicks it misses.
func TestStalledClientIsCutOff(t *testing.T) {
	t.Parallel()
	f, db, url, inflight := setup(t, Config{Buffer: 2000, Page: 500, WriteTimeout: 300 * time.Millisecond, Heartbeat: time.Hour, Poll: 50 * time.Millisecond})
	ctx := t.Context()
	linkID := newLink(t, db, "stall")

	// The stalled client: sends its request and never reads a byte.
	stalled, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	_ = stalled.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := stalled.Write([]byte("GET /live HTTP/1.1\r\nHost: hop\r\n\r\n")); err != nil {
		t.Fatal(err)
	}

	// The reading client counts click events.
	resp, err := http.Get(url + "/live")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got atomic.Int64
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() == "event: click" {
				got.Add(1)
			}
		}
	}()
	testenv.Eventually(t, 10*time.Second, "two subscribers", func() bool { return f.subscribers() == 2 })

	const n = 30_000
	for i := 0; i < n; i += 5000 {
		if _, err := db.Pool.Exec(ctx, `
INSERT INTO click_logs (event_id, link_id, clicked_at, country, referer_host, user_agent, browser, os, device)
SELECT gen_random_uuid(), $1, now(), 'DE', 'news.example.org', repeat('x', 200), 'Firefox', 'Linux', 'desktop'
FROM generate_series(1, 5000)`, linkID); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the stalled client cut off and its handler ended", func() bool {
		return f.subscribers() == 1 && inflight.Load() == 1
	})
	testenv.Eventually(t, 30*time.Second, "every click reached the reading client", func() bool { return got.Load() == n })
	if c := testutil.ToFloat64(f.clients); c != 1 {
		t.Fatalf("clients gauge %v, want 1", c)
	}
}

// A client that falls a whole ring behind is cut off, counted, and the feed holds no
// more events than the ring, however many are published.
func TestClientARingBehindIsCut(t *testing.T) {
	t.Parallel()
	f, err := New(Config{Buffer: 100, Page: 10}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	slow, fast := &sub{f: filter{bots: true}}, &sub{f: filter{bots: true}}
	var out []*click
	for i := range 25 {
		batch := make([]*click, 10)
		for j := range batch {
			batch[j] = &click{pos: horizon.Position{XID: uint64(i*10 + j + 1)}}
		}
		f.publish(batch, batch[9].pos)
		if out, _, err = f.take(fast, 1000, out[:0]); err != nil || len(out) != 10 {
			t.Fatalf("fast client: %d events, %v", len(out), err)
		}
	}
	if _, _, err := f.take(slow, 1000, nil); !errors.Is(err, errCut) {
		t.Fatalf("slow client: %v, want errCut", err)
	}
	if c := testutil.ToFloat64(f.cuts); c != 1 || len(f.ring) != 100 || f.head != 250 {
		t.Fatalf("cuts %v, ring %d, head %d", c, len(f.ring), f.head)
	}
}

func FuzzLastEventID(f *testing.F) {
	for _, s := range []string{"", "0193a7b2-6c1e-7cc3-9a52-3d1f0b2e4a11", "garbage", strings.Repeat("a", 100), "{0193a7b2-6c1e-7cc3-9a52-3d1f0b2e4a11}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := httptest.NewRequest(http.MethodGet, "/live", nil)
		r.Header.Set("Last-Event-ID", v)
		id, ok := lastEventID(r)
		if ok && id.String() == "" {
			t.Fatal("accepted an empty id")
		}
		if !ok && id != [16]byte{} {
			t.Fatal("rejected id is not zero")
		}
	})
}

// blockOf frames texts back to back in one shared block, as read does.
func blockOf(texts ...string) []*click {
	var block []byte
	out := make([]*click, len(texts))
	for i, t := range texts {
		off := len(block)
		block = append(block, t...)
		out[i] = &click{off: off, end: len(block)}
	}
	for _, c := range out {
		c.block = block
	}
	return out
}

// writeBatch writes exactly the frames of the batch, in order, whether a run of them
// is long enough to go out from the shared block or is gathered in the buffer, and
// whether or not a filter left gaps between them.
func TestWriteBatchKeepsOrder(t *testing.T) {
	t.Parallel()
	f, err := New(Config{}, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("b", bigRun)
	a := blockOf("a0.", "a1.", big, "a3.", "a4.")
	b := blockOf("b0.", big+"!", "b2.")
	batch := []*click{a[0], a[1], a[2], a[4], b[0], b[1], b[2]} // a[3] filtered out
	want := "a0.a1." + big + "a4.b0." + big + "!b2."
	rec := httptest.NewRecorder()
	buf, err := f.writeBatch(rec, http.NewResponseController(rec), batch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Body.String(); got != want {
		t.Fatalf("wrote %d bytes, want %d: %.40q…", len(got), len(want), got)
	}
	if !rec.Flushed || len(buf) != 0 {
		t.Fatalf("flushed %v, buffer left %d bytes", rec.Flushed, len(buf))
	}
}

// With nobody connected the feed reads no clicks, only moves on; a client that then
// resumes from a click of that quiet spell still gets every later click, in order,
// from the database, and then live ones.
func TestIdleFeedReadsNothingAndResumeStillWorks(t *testing.T) {
	t.Parallel()
	f, db, url, _ := setup(t, Config{Heartbeat: time.Hour, Poll: 20 * time.Millisecond})
	ctx := t.Context()
	linkID := newLink(t, db, "idle")
	insert := func(n int) []uuid.UUID {
		ids := make([]uuid.UUID, n)
		for i := range ids {
			ids[i] = insertClick(t, db, linkID, time.Now())
		}
		return ids
	}
	quiet := insert(5)
	waitFeedPastClicks(t, f, db)
	if n := testutil.ToFloat64(f.events); n != 0 {
		t.Fatalf("read %v clicks with nobody connected", n)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/live", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Last-Event-ID", quiet[1].String())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				got <- id
			}
		}
		close(got)
	}()
	want := append([]string{}, quiet[2].String(), quiet[3].String(), quiet[4].String())
	testenv.Eventually(t, 10*time.Second, "subscribed", func() bool { return f.subscribers() == 1 })
	for _, id := range insert(2) {
		want = append(want, id.String())
	}
	for i, w := range want {
		select {
		case id := <-got:
			if id != w {
				t.Fatalf("event %d: %s, want %s", i, id, w)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("event %d (%s) never came", i, w)
		}
	}
}

// openStream connects to /live with an optional Last-Event-ID. It returns the event
// ids written before the ": live" comment (the catch-up from the database) and the
// lines that follow, after which every new click reaches the client.
func openStream(t *testing.T, url, lastEventID string) (caughtUp []string, lines <-chan string) {
	t.Helper()
	return openFeed(t, url+"/live", lastEventID)
}

// openFeed is openStream for any feed's URL.
func openFeed(t *testing.T, url, lastEventID string) (caughtUp []string, lines <-chan string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	for line := range ch {
		if line == ": live" {
			return caughtUp, ch
		}
		if id, ok := strings.CutPrefix(line, "id: "); ok {
			caughtUp = append(caughtUp, id)
		}
	}
	t.Fatal("the stream ended before it was live")
	return nil, nil
}

// A quiet stream carries a heartbeat comment every Heartbeat (15 s unless set), so
// proxies and clients keep an idle connection open.
func TestHeartbeatOnQuietStream(t *testing.T) {
	t.Parallel()
	var def Config
	def.defaults()
	if def.Heartbeat != 15*time.Second || def.Resume != 10*time.Minute {
		t.Fatalf("defaults: heartbeat %s, resume window %s; want 15s and 10m", def.Heartbeat, def.Resume)
	}
	_, _, url, _ := setup(t, Config{Heartbeat: 20 * time.Millisecond})
	_, lines := openStream(t, url, "")
	beats := 0
	for beats < 3 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the stream ended after %d heartbeats", beats)
			}
			switch {
			case line == ": heartbeat":
				beats++
			case line != "":
				t.Fatalf("a quiet stream sent %q", line)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d heartbeats, want 3", beats)
		}
	}
}

// idAt is a UUIDv7 whose timestamp is at, as the redirect would have made at that time.
func idAt(at time.Time) uuid.UUID {
	id := uuid.Must(uuid.NewV7())
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	return id
}

// Last-Event-ID reaches back as far as the resume window (10 minutes by default): a
// client resuming from a click 9 minutes old gets every later click once, in order;
// one resuming from a click 11 minutes old starts from now and gets only new clicks.
// A client resuming from a click the feed may not have read yet never gets that click
// or an older one again.
func TestResumeWindow(t *testing.T) {
	t.Parallel()
	f, db, url, _ := setup(t, Config{Heartbeat: time.Hour, Poll: 20 * time.Millisecond})
	linkID := newLink(t, db, "window")
	insert := func(at time.Time) uuid.UUID { return insertClick(t, db, linkID, at) }
	now := time.Now()
	tooOld := insert(now.Add(-11 * time.Minute))
	inWindow := insert(now.Add(-9 * time.Minute))
	recent := []uuid.UUID{insert(now), insert(now)}
	// At once, so the feed may or may not have read these clicks yet.
	laggedPre, lagged := openStream(t, url, recent[0].String())

	waitFeedPastClicks(t, f, db)
	resumedPre, resumed := openStream(t, url, inWindow.String())
	freshPre, fresh := openStream(t, url, tooOld.String())
	testenv.Eventually(t, 10*time.Second, "three clients subscribed", func() bool { return f.subscribers() == 3 })
	newer := insert(time.Now())

	ids := func(got []string, lines <-chan string, n int) []string {
		for len(got) < n {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("the stream ended after %v", got)
				}
				if id, ok := strings.CutPrefix(line, "id: "); ok {
					got = append(got, id)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("got %v, want %d events", got, n)
			}
		}
		return got
	}
	for _, c := range []struct {
		name  string
		pre   []string
		lines <-chan string
		want  []uuid.UUID
	}{
		{"resumed from a click 9 minutes old", resumedPre, resumed, []uuid.UUID{recent[0], recent[1], newer}},
		{"resumed from a click 11 minutes old", freshPre, fresh, []uuid.UUID{newer}},
		{"resumed from a click the feed may not have read", laggedPre, lagged, []uuid.UUID{recent[1], newer}},
	} {
		var want []string
		for _, id := range c.want {
			want = append(want, id.String())
		}
		if got := ids(c.pre, c.lines, len(want)); !slices.Equal(got, want) {
			t.Fatalf("%s: got %v, want %v", c.name, got, want)
		}
	}
}

// A client on one link's feed that resumes reads what it missed through click_logs'
// xid index alone, even planned with the link id and without statistics (a hop's first
// minutes, or CI's): intersecting the window with the link's entries in the unique key
// reads the link's whole history, a cost that grows with its clicks.
func TestLinkReadWalksOnlyTheWindow(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := t.Context()
	if _, err := db.Pool.Exec(ctx, `
INSERT INTO links (slug, original_url) SELECT 'l' || i, 'https://example.com' FROM generate_series(1, 20) i;
INSERT INTO click_logs (event_id, link_id, clicked_at)
SELECT gen_random_uuid(), 1 + i % 20, now() - i * interval '1 second' FROM generate_series(1, 40000) i;`); err != nil {
		t.Fatal(err)
	}
	conn := testenv.Conn(t, db.Pool, `SET plan_cache_mode = force_custom_plan; PREPARE page AS `+readSQL)
	plan := testenv.Plan(t, conn, `EXECUTE page('1', '00000000-0000-0000-0000-000000000000', '100000', 7, true, 1000)`)
	if strings.Contains(plan, "click_logs_link_event_key") || !strings.Contains(plan, "click_logs_xid_idx") {
		t.Errorf("one link's page is read other than by the xid index alone:\n%s", plan)
	}
}

// /live?domain= carries only the clicks on that short domain's links, live and when
// resuming; it was accepted and ignored, so such a client got every domain's clicks.
// A domain hop does not have is refused.
func TestLiveDomainFilter(t *testing.T) {
	t.Parallel()
	f, db, url, _ := setup(t, Config{Heartbeat: time.Hour, Poll: 20 * time.Millisecond})
	ctx := t.Context()
	var branded int64
	if err := db.Pool.QueryRow(ctx, `
WITH d AS (INSERT INTO domains (host, base_url) VALUES ('go.example.com', 'https://go.example.com') RETURNING id)
INSERT INTO links (slug, original_url, domain_id) SELECT 'launch', 'https://example.org', id FROM d RETURNING id`).Scan(&branded); err != nil {
		t.Fatal(err)
	}
	plain := newLink(t, db, "launch")
	first := insertClick(t, db, branded, time.Now())
	missed := []uuid.UUID{insertClick(t, db, plain, time.Now()), insertClick(t, db, branded, time.Now())}
	waitFeedPastClicks(t, f, db)

	feed := url + "/live?domain=Go.Example.com"
	resumedPre, resumed := openFeed(t, feed, first.String())
	livePre, live := openFeed(t, feed, "")
	if want := []string{missed[1].String()}; !slices.Equal(resumedPre, want) || len(livePre) != 0 {
		t.Fatalf("caught up with %v and %v; want %v and nothing", resumedPre, livePre, want)
	}
	testenv.Eventually(t, 10*time.Second, "two subscribers", func() bool { return f.subscribers() == 2 })
	insertClick(t, db, plain, time.Now())
	want := insertClick(t, db, branded, time.Now()).String()
	for name, lines := range map[string]<-chan string{"resumed": resumed, "live": live} {
		for got := ""; got == ""; {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("%s: the stream ended", name)
				}
				if id, ok := strings.CutPrefix(line, "id: "); ok {
					got = id
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: no event came", name)
			}
			if got != "" && got != want {
				t.Fatalf("%s: got click %s, want only the branded domain's %s", name, got, want)
			}
		}
	}

	resp, err := http.Get(url + "/live?domain=nope.example")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("an unknown domain: %d %s, want a 400 problem", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
