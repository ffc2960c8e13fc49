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
	recentTo := h.recentEnd()
	raw, err := h.store.linkStats(context.Background(), slug, q, recentTo.Add(-48*time.Hour), recentTo, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h.shapeLinkStats(slug, q, recentTo, raw)
}

func fromHandler(t *testing.T, h *Handler, slug string, q rangeQuery) LinkStats {
	t.Helper()
	recentTo := h.recentEnd()
	raw, err := h.read(context.Background(), slug, q, recentTo, -1)
	if err != nil {
		t.Fatal(err)
	}
	return h.shapeLinkStats(slug, q, recentTo, raw)
}

// Held rollups answer every UTC range exactly as PostgreSQL does, and follow every
// tick: after new clicks, the next answer includes them.
func TestHeldRollupsAnswerAsPostgreSQL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(7, 11))
	var ids []int64
	for i := range 4 {
		ids = append(ids, createLink(t, b.pool, fmt.Sprintf("held%d", i)))
	}
	for round := range 3 {
		seedSpread(t, b, rng, ids, 1500)
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
	b.h.rollups.mu.Lock()
	held := len(b.h.rollups.links)
	b.h.rollups.mu.Unlock()
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
	if r, err := b.h.rollups.get(t.Context(), id, version); r == nil || r.version != version {
		t.Fatalf("rollups with 5e9 clicks not held at version %d: %v, %v", version, r, err)
	}
}

// A full cache admits no new link, so it never churns: other links read their range
// from PostgreSQL, exactly. Links unused for a sweep interval make room.
func TestHeldRollupsStayWithinBudget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rng := rand.New(rand.NewPCG(3, 5))
	var ids []int64
	for i := range 12 {
		ids = append(ids, createLink(t, b.pool, fmt.Sprintf("bud%d", i)))
	}
	seedSpread(t, b, rng, ids, 3000)
	largest := 0
	for _, id := range ids {
		r, err := b.h.store.loadRollups(t.Context(), id, fixedNow)
		if err != nil || r == nil {
			t.Fatalf("load: %v, %v", r, err)
		}
		largest = max(largest, r.size())
	}
	budget := largest * 4 // room for 4 or 5 of the 12 links
	c := newRollupCache(budget, b.h.rollups.load)
	clock := fixedNow
	c.now = func() time.Time { return clock }
	b.h.rollups = c
	held := func() map[int64]bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		m, sum := map[int64]bool{}, 0
		for id, h := range c.links {
			m[id] = true
			sum += h.size
		}
		if sum != c.bytes || c.bytes > budget+budget/4 {
			t.Fatalf("budget %d: %d bytes counted, %d held", budget, c.bytes, sum)
		}
		return m
	}
	ask := func(i int) {
		t.Helper()
		slug, q := fmt.Sprintf("bud%d", i), randomQuery(rng)
		if want, got := fromPostgreSQL(t, b.h, slug, q), fromHandler(t, b.h, slug, q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %+v:\n held %+v\n   pg %+v", slug, q, got, want)
		}
	}
	for range 100 {
		ask(rng.IntN(len(ids)))
	}
	first := held()
	if n := len(first); n < 4 || n > 5 {
		t.Fatalf("%d links held, want 4 or 5 of 12", n)
	}
	// Full: asking every link again changes nothing held.
	for i := range ids {
		ask(i)
	}
	if again := held(); !reflect.DeepEqual(again, first) {
		t.Fatalf("a full cache changed: %v, then %v", first, again)
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
		}
	}
	now := held()
	if !now[ids[keep]] {
		t.Fatalf("the link in use was dropped")
	}
	newcomers := 0
	for id := range now {
		if !first[id] {
			newcomers++
		}
	}
	if newcomers == 0 {
		t.Fatalf("no link admitted after the sweep: before %v, after %v", first, now)
	}
}

// Requests racing ticks (run with -race) get consistent answers, and once the clicks
// stop every range reads exactly as in PostgreSQL.
func TestHeldRollupsUnderConcurrentTicks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []int64
	for i := range 3 {
		ids = append(ids, createLink(t, b.pool, fmt.Sprintf("conc%d", i)))
	}
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
	load := b.h.rollups.load
	b.h.rollups = newRollupCache(1000, func(ctx context.Context, id int64) (*linkRollups, error) {
		loads.Add(1)
		return load(ctx, id)
	})
	for range 5 {
		q := randomQuery(rng)
		if want, got := fromPostgreSQL(t, b.h, "big", q), fromHandler(t, b.h, "big", q); !reflect.DeepEqual(got, want) {
			t.Fatalf("%+v:\n held %+v\n   pg %+v", q, got, want)
		}
	}
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
	b.h = NewHandler(HandlerConfig{}, db.Pool, reg, nil)
	b.h.now = func() time.Time { return fixedNow }
	b.e = echo.New()
	b.e.HTTPErrorHandler = problemErrorHandler
	b.h.Routes(b.e.Group(""))
	id := createLink(t, b.pool, "metered")
	seedSpread(t, b, rand.New(rand.NewPCG(2, 2)), []int64{id}, 50)
	for _, target := range []string{
		"/links/metered/stats", "/links/metered/stats?start=2025-02-01", "/links/metered/stats?limit=3",
		"/links/metered/stats?tz=Europe/Paris",
	} {
		if rec := b.get(t, target); rec.Code != http.StatusOK {
			t.Fatalf("%s: %d", target, rec.Code)
		}
	}
	want := map[string]float64{
		`hop_stats_link_reads_total{source="memory"}`:   3,
		`hop_stats_link_reads_total{source="postgres"}`: 1,
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
