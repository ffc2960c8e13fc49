package stats

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hop-dev/hop/internal/testenv"
)

// seedSpread inserts n random clicks over links within the 40 days before fixedNow
// and aggregates them.
func seedSpread(t *testing.T, b *bundle, rng *rand.Rand, links []int64, n int) {
	t.Helper()
	clicks := make([]click, n)
	for i := range clicks {
		clicks[i] = randomClick(rng, links, fixedNow)
		clicks[i].at = fixedNow.Add(-time.Duration(rng.Int64N(int64(40 * 24 * time.Hour))))
	}
	insertClicks(t, b.pool, clicks)
	drain(t, b.agg)
}

// randomQuery draws a UTC range around the seeded days, with a random limit.
func randomQuery(rng *rand.Rand) rangeQuery {
	start := fixedNow.Truncate(24*time.Hour).AddDate(0, 0, -45+rng.IntN(48))
	end := start.AddDate(0, 0, rng.IntN(50))
	return rangeQuery{start: start, end: end, tz: "UTC", loc: time.UTC, limit: 1 + rng.IntN(12)}
}

// fromPostgreSQL is the answer read from the rollups in PostgreSQL, as every request
// was answered before rollups were held in memory.
func fromPostgreSQL(t *testing.T, h *Handler, slug string, q rangeQuery) LinkStats {
	t.Helper()
	recentTo := h.reader.recentEnd()
	raw, err := h.reader.store.linkStats(context.Background(), slug, q, recentTo.Add(-48*time.Hour), recentTo, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h.reader.shapeLinkStats(slug, q, recentTo, raw)
}

func fromHandler(t *testing.T, h *Handler, slug string, q rangeQuery) LinkStats {
	t.Helper()
	recentTo := h.reader.recentEnd()
	raw, err := h.reader.read(context.Background(), slug, q, recentTo, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h.reader.shapeLinkStats(slug, q, recentTo, raw)
}

// heldWithin returns the links c holds (not marks), after checking that its count of
// held bytes is what they take and within budget.
func heldWithin(t *testing.T, c *rollupCache, budget int, when string) map[int64]bool {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	m, bytes := map[int64]bool{}, 0
	for id, h := range c.links {
		if h.linkRollups != nil {
			m[id] = true
			bytes += h.size
		} else if h.size != 0 {
			t.Fatalf("%s: a mark counts %d bytes", when, h.size)
		}
	}
	if bytes != c.held || c.held > budget {
		t.Fatalf("%s: budget %d, %d held bytes counted, %d present", when, budget, c.held, bytes)
	}
	return m
}

// largestRollups is the size of the largest of the links' rollups, read whole.
func largestRollups(t *testing.T, b *bundle, ids []int64) int {
	t.Helper()
	largest := 0
	for _, id := range ids {
		r, err := b.h.reader.store.loadRollups(t.Context(), id, fixedNow)
		if err != nil || r == nil {
			t.Fatalf("load: %v, %v", r, err)
		}
		largest = max(largest, r.size())
	}
	return largest
}

// hold asks for each slug until its rollups are held at its current stats version
// (reads are in the background, two at a time) and fails if one never is.
func hold(t *testing.T, h *Handler, slugs ...string) {
	t.Helper()
	for _, slug := range slugs {
		for try := 0; ; try++ {
			head, err := h.reader.store.linkHead(context.Background(), slug)
			if err != nil || !head.found {
				t.Fatalf("%s: %v, found %v", slug, err, head.found)
			}
			if h.reader.rollups.get(head.id, head.version) != nil {
				break
			}
			h.reader.rollups.wait()
			if try == 20 {
				t.Fatalf("%s: rollups not held after %d reads", slug, try)
			}
		}
	}
}

// Held rollups answer every UTC range exactly as PostgreSQL does, and follow every
// tick: after new clicks, the next answer includes them.
func TestHeldRollupsAnswerAsPostgreSQL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(7, 11))
	ids := createLinks(t, b.pool, "held", 4)
	for round := range 3 {
		seedSpread(t, b, rng, ids, 1500)
		hold(t, b.h, "held0", "held1", "held2", "held3") // so every answer below is from memory
		for range 60 {
			slug := fmt.Sprintf("held%d", rng.IntN(len(ids)))
			q := randomQuery(rng)
			want, got := fromPostgreSQL(t, b.h, slug, q), fromHandler(t, b.h, slug, q)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d, %s %s..%s limit %d:\n held %+v\n   pg %+v", round, slug,
					q.start.Format(dateLayout), q.end.Format(dateLayout), q.limit, got, want)
			}
			if want.TotalClicks == 0 && q.start.Before(fixedNow.AddDate(0, 0, -30)) && q.end.After(fixedNow.AddDate(0, 0, -10)) {
				t.Fatalf("round %d: no clicks in %+v: the seed is wrong", round, q)
			}
		}
	}
	b.h.reader.rollups.mu.Lock()
	held := len(b.h.reader.rollups.links)
	b.h.reader.rollups.mu.Unlock()
	if held != len(ids) {
		t.Fatalf("%d links held, want %d", held, len(ids))
	}
	// A held link deleted afterwards is gone for every range.
	if _, err := b.pool.Exec(t.Context(), "UPDATE links SET deleted_at = now() WHERE id = $1", ids[0]); err != nil {
		t.Fatal(err)
	}
	if rec := b.get(t, "/links/held0/stats?start=2025-02-01&end=2025-02-03"); rec.Code != http.StatusGone {
		t.Fatalf("deleted link: %d", rec.Code)
	}
}

// Counts beyond 32 bits are held and answered exactly.
func TestHugeCountsAreExact(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := createLink(t, b.pool, "huge")
	insertClicks(t, b.pool, []click{{link: id, at: utc("2025-03-10T08:00:00Z"), visitor: visitor(1), country: "DE", device: "desktop"}})
	drain(t, b.agg)
	for _, sql := range []string{
		`UPDATE daily_stats SET clicks = 5000000000 WHERE link_id = $1`,
		`UPDATE dimension_stats SET clicks = 5000000000 WHERE link_id = $1 AND dimension = 'country'`,
		`UPDATE links SET stats_version = stats_version + 1 WHERE id = $1`,
	} {
		if _, err := b.pool.Exec(t.Context(), sql, id); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.get(t, "/links/huge/stats?start=2025-03-01&end=2025-03-15")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	s := decode[LinkStats](t, rec)
	if s.TotalClicks != 5_000_000_000 || s.Countries["DE"] != 5_000_000_000 || s.Devices["desktop"] != 1 {
		t.Fatalf("got total %d, countries %v, devices %v", s.TotalClicks, s.Countries, s.Devices)
	}
	var version int64
	if err := b.pool.QueryRow(t.Context(), "SELECT stats_version FROM links WHERE id = $1", id).Scan(&version); err != nil {
		t.Fatal(err)
	}
	hold(t, b.h, "huge")
	if r := b.h.reader.rollups.get(id, version); r == nil || r.version != version {
		t.Fatalf("rollups with 5e9 clicks not held at version %d: %v", version, r)
	}
}

// A full cache admits no new link, so it never churns: other links read their range
// from PostgreSQL, exactly. Links unused for a sweep interval make room.
func TestHeldRollupsStayWithinBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(3, 5))
	ids := createLinks(t, b.pool, "bud", 12)
	seedSpread(t, b, rng, ids, 3000)
	budget := largestRollups(t, b, ids) * 4 // room for 3 or 4 of the 12 links
	c := newRollupCache(budget, b.h.reader.rollups.load)
	clock := fixedNow
	c.now = func() time.Time { return clock }
	b.h.reader.rollups = c
	held := func() map[int64]bool { return heldWithin(t, c, budget, "") }
	ask := func(i int) {
		t.Helper()
		slug, q := fmt.Sprintf("bud%d", i), randomQuery(rng)
		if want, got := fromPostgreSQL(t, b.h, slug, q), fromHandler(t, b.h, slug, q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %+v:\n held %+v\n   pg %+v", slug, q, got, want)
		}
	}
	for range 100 {
		ask(rng.IntN(len(ids)))
		c.wait()
	}
	first := held()
	if n := len(first); n < 3 || n > 4 {
		t.Fatalf("%d links held, want 3 or 4 of 12", n)
	}
	// Full: asking every link again changes nothing held.
	for i := range ids {
		ask(i)
		c.wait()
	}
	for id := range first {
		if c.links[id].linkRollups == nil {
			t.Fatalf("a full cache dropped link %d", id)
		}
	}
	// A minute on, links unused since the last sweep go, and others come in.
	var keep int
	for i, id := range ids {
		if first[id] {
			keep = i
			break
		}
	}
	clock = clock.Add(sweepEvery)
	c.mu.Lock()
	c.sweep() // marks every link unused
	c.mu.Unlock()
	ask(keep)
	clock = clock.Add(sweepEvery)
	for i := range ids {
		if i != keep {
			ask(i)
			c.wait()
		}
	}
	held()
	if c.links[ids[keep]] == nil || c.links[ids[keep]].linkRollups == nil {
		t.Fatalf("the link in use was dropped")
	}
	newcomers := 0
	for id, h := range c.links {
		if h.linkRollups != nil && !first[id] {
			newcomers++
		}
	}
	if newcomers == 0 {
		t.Fatalf("no link admitted after the sweep: before %v, after %v", first, held())
	}
}

// Requests racing ticks (run with -race) get consistent answers, and once the clicks
// stop every range reads exactly as in PostgreSQL.
func TestHeldRollupsUnderConcurrentTicks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := createLinks(t, b.pool, "conc", 3)
	seedSpread(t, b, rand.New(rand.NewPCG(1, 2)), ids, 500)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for ctx.Err() == nil {
				s := fromHandler(t, b.h, fmt.Sprintf("conc%d", rng.IntN(len(ids))), randomQuery(rng))
				var sum int64
				for _, d := range s.Daily {
					sum += d.Clicks
				}
				if sum != s.TotalClicks {
					t.Errorf("daily sums to %d, total_clicks %d", sum, s.TotalClicks)
					return
				}
			}
		})
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for range 8 {
		seedSpread(t, b, rng, ids, 200)
	}
	cancel()
	wg.Wait()
	hold(t, b.h, "conc0", "conc1", "conc2")
	for range 40 {
		slug, q := fmt.Sprintf("conc%d", rng.IntN(len(ids))), randomQuery(rng)
		if want, got := fromPostgreSQL(t, b.h, slug, q), fromHandler(t, b.h, slug, q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %+v:\n held %+v\n   pg %+v", slug, q, got, want)
		}
	}
}

// A link too large to hold is read whole once; its requests then read their range
// from PostgreSQL, exactly.
func TestTooLargeLinkIsReadOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(8, 8))
	id := createLink(t, b.pool, "big")
	seedSpread(t, b, rng, []int64{id}, 500)
	var loads atomic.Int64
	load := b.h.reader.rollups.load
	b.h.reader.rollups = newRollupCache(1000, func(ctx context.Context, id int64) (*linkRollups, error) {
		loads.Add(1)
		return load(ctx, id)
	})
	for range 5 {
		q := randomQuery(rng)
		if want, got := fromPostgreSQL(t, b.h, "big", q), fromHandler(t, b.h, "big", q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%+v:\n held %+v\n   pg %+v", q, got, want)
		}
	}
	b.h.reader.rollups.wait()
	if n := loads.Load(); n != 1 {
		t.Fatalf("the link's rollups were read whole %d times, want 1", n)
	}
}

// The metrics tell an operator where link stats come from and what is held.
func TestHeldRollupsMetrics(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	reg := prometheus.NewRegistry()
	b := setupPool(t, db.Pool)
	b.h = NewHandler(NewReader(Config{Domains: newDomains(t, db.Pool)}, db.Pool, reg, nil))
	b.h.reader.now = func() time.Time { return fixedNow }
	b.e = echo.New()
	b.e.HTTPErrorHandler = problemErrorHandler
	b.h.Routes(b.e.Group(""))
	id := createLink(t, b.pool, "metered")
	seedSpread(t, b, rand.New(rand.NewPCG(2, 2)), []int64{id}, 50)
	for _, target := range []string{
		"/links/metered/stats", // read from PostgreSQL while the link is read whole
		"/links/metered/stats?start=2025-02-01", "/links/metered/stats?limit=3",
		"/links/metered/stats?tz=Europe/Paris",
	} {
		if rec := b.get(t, target); rec.Code != http.StatusOK {
			t.Fatalf("%s: %d", target, rec.Code)
		}
		b.h.reader.rollups.wait()
	}
	want := map[string]float64{
		`hop_stats_link_reads_total{source="memory"}`:   2,
		`hop_stats_link_reads_total{source="postgres"}`: 2,
		`hop_stats_rollup_loads_total`:                  1,
		`hop_stats_held_links`:                          1,
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			switch {
			case m.GetCounter() != nil:
				got[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[name] = m.GetGauge().GetValue()
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if got["hop_stats_held_bytes"] <= 0 {
		t.Errorf("hop_stats_held_bytes = %v", got["hop_stats_held_bytes"])
	}
}

// Links asked for all at once on an empty cache are held only as far as the budget
// goes, and a held link that outgrows the room left is let go, not kept over budget.
// Every answer stays exact.
func TestHeldRollupsNeverExceedBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(6, 6))
	ids := createLinks(t, b.pool, "rush", 24)
	seedSpread(t, b, rng, ids, 4000)
	budget := largestRollups(t, b, ids) * 4
	c := newRollupCache(budget, b.h.reader.rollups.load)
	b.h.reader.rollups = c
	check := func(when string) int { return len(heldWithin(t, c, budget, when)) }
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			q := rangeQuery{start: fixedNow.Truncate(24*time.Hour).AddDate(0, 0, -30), end: fixedNow.Truncate(24 * time.Hour),
				tz: "UTC", loc: time.UTC, limit: 10}
			slug := fmt.Sprintf("rush%d", i)
			if want, got := fromPostgreSQL(t, b.h, slug, q), fromHandler(t, b.h, slug, q); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: held and PostgreSQL answers differ", slug)
			}
		})
	}
	wg.Wait()
	c.wait()
	check("after the rush")
	// Reads run two at a time in the background: ask until the cache is full.
	for range 10 {
		for i := range ids {
			fromHandler(t, b.h, fmt.Sprintf("rush%d", i), randomQuery(rng))
		}
		c.wait()
		check("while filling")
	}
	if n := check("filled"); n == 0 || n == len(ids) {
		t.Fatalf("%d of %d links held", n, len(ids))
	}
	// Every held link gets many more clicks on new values: rereading them must not
	// take the cache over its budget.
	var held []int64
	c.mu.Lock()
	for id, h := range c.links {
		if h.linkRollups != nil {
			held = append(held, id)
		}
	}
	c.mu.Unlock()
	clicks := make([]click, 0, 3000)
	for i := range cap(clicks) {
		cl := randomClick(rng, held, fixedNow)
		cl.refHost = fmt.Sprintf("site%d.example", i) // a new breakdown value each
		clicks = append(clicks, cl)
	}
	insertClicks(t, b.pool, clicks)
	drain(t, b.agg)
	for range 3 {
		for i := range ids {
			q := randomQuery(rng)
			slug := fmt.Sprintf("rush%d", i)
			if want, got := fromPostgreSQL(t, b.h, slug, q), fromHandler(t, b.h, slug, q); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s after growth: held and PostgreSQL answers differ", slug)
			}
			c.wait()
			check("after growth")
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	marked := 0
	for _, h := range c.links {
		if h.noRoom {
			marked++
		}
	}
	if marked == 0 {
		t.Fatal("no link was let go for want of room: the growth did not test it")
	}
}

// A breakdown row with no clicks (never written by the aggregator, but possible by
// hand) is left out of the breakdowns on both paths alike.
func TestZeroClickRowsAnswerAlike(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := createLink(t, b.pool, "zero")
	insertClicks(t, b.pool, []click{{link: id, at: utc("2025-03-10T08:00:00Z"), visitor: visitor(1), country: "DE"}})
	drain(t, b.agg)
	if _, err := b.pool.Exec(t.Context(), `INSERT INTO dimension_stats (link_id, day, dimension, value, clicks)
VALUES ($1, '2025-03-10', 'country', 'FR', 0)`, id); err != nil {
		t.Fatal(err)
	}
	q := rangeQuery{start: utc("2025-03-01T00:00:00Z"), end: utc("2025-03-15T00:00:00Z"), tz: "UTC", loc: time.UTC, limit: 1}
	hold(t, b.h, "zero")
	want, got := fromPostgreSQL(t, b.h, "zero", q), fromHandler(t, b.h, "zero", q)
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(got.Countries, map[string]int64{"DE": 1}) {
		t.Fatalf("countries: held %v, PostgreSQL %v; want only DE: 1", got.Countries, want.Countries)
	}
}

// Rollups held since an earlier hour answer later requests, whose last-48-hours
// window has moved on, exactly as PostgreSQL does.
func TestHeldRollupsAsTimeMovesOn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(9, 9))
	id := createLink(t, b.pool, "moving")
	clicks := make([]click, 400)
	for i := range clicks {
		clicks[i] = randomClick(rng, []int64{id}, fixedNow)
	}
	insertClicks(t, b.pool, clicks)
	drain(t, b.agg)
	q := rangeQuery{start: utc("2025-03-01T00:00:00Z"), end: utc("2025-03-20T00:00:00Z"), tz: "UTC", loc: time.UTC, limit: 5}
	hold(t, b.h, "moving") // as of fixedNow
	for _, later := range []time.Duration{time.Minute, time.Hour, 5 * time.Hour, 30 * time.Hour, 72 * time.Hour} {
		now := fixedNow.Add(later)
		b.h.reader.now = func() time.Time { return now }
		if want, got := fromPostgreSQL(t, b.h, "moving", q), fromHandler(t, b.h, "moving", q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s later:\n held %+v\n   pg %+v", later, got.Hourly, want.Hourly)
		}
	}
	b.h.reader.rollups.mu.Lock()
	defer b.h.reader.rollups.mu.Unlock()
	if n := b.h.reader.rollups.links[id]; n == nil || n.linkRollups == nil {
		t.Fatal("the link is not held")
	}
}
