package stats

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// linkRollups is one link's rollups at one stats version, held in memory so that a
// stats request over any range of UTC dates is answered without reading the rollups
// from PostgreSQL: a request costs the primary-key lookup of the link's stats version,
// and the rollups are read again, in the background, only when that version has moved (the aggregator
// bumps it in the transaction that adds the link's clicks). So every answer is exactly
// what the rollups hold at the version PostgreSQL reports — never stale.
//
// Each day is one varint-encoded record in a single byte slice, about 40 bytes for a
// day with 15 breakdown values (16 KB for such a year), and nothing in it holds a
// pointer, so the garbage collector never scans it.
type linkRollups struct {
	version int64

	days []int32  // unix days with rollup rows, ascending
	at   []uint32 // the record of days[i] is data[at[i]:at[i+1]]
	// data holds per day: clicks, unique visitors, bot clicks, the number n of
	// breakdown rows, then n pairs of (index in values, clicks); all uvarints.
	data   []byte
	values []dimensionRow // distinct (dimension, value); clicks unused

	recent     []recentHour // hourly rows from recentFrom on
	recentFrom time.Time    // the load's time minus recentMargin
}

type recentHour struct {
	hour              int64 // unix seconds
	clicks, botClicks int64
}

// size is an estimate of the bytes held, for the cache's budget.
func (r *linkRollups) size() int {
	n := 160 + cap(r.days)*4 + cap(r.at)*4 + cap(r.data) + cap(r.recent)*24
	for _, v := range r.values {
		n += 48 + len(v.value)
	}
	return n
}

// covers reports whether the held hourly rows cover a last-48-hours window from
// recentFrom: a window starting before the load's margin was not read.
func (r *linkRollups) covers(recentFrom time.Time) bool { return !recentFrom.Before(r.recentFrom) }

// raw returns what linkStatsSQL would return for q at this version: UTC dates only.
func (r *linkRollups) raw(q rangeQuery, recentFrom, recentTo time.Time) rawLinkStats {
	first, last := unixDay(q.start), unixDay(q.end)
	out := rawLinkStats{found: true, version: r.version, daily: make([]dayRow, 0, q.days())}
	sums := make([]int64, len(r.values))
	i, _ := slices.BinarySearch(r.days, first)
	for ; i < len(r.days) && r.days[i] <= last; i++ {
		rec := r.data[r.at[i]:r.at[i+1]]
		next := func() int64 {
			v, n := binary.Uvarint(rec)
			rec = rec[n:]
			return int64(v)
		}
		d := dayRow{index: int(r.days[i] - first), clicks: next(), uniques: next(), botClicks: next()}
		if d.clicks != 0 || d.uniques != 0 || d.botClicks != 0 {
			out.daily = append(out.daily, d)
		}
		for n := next(); n > 0; n-- {
			v := next()
			sums[v] += next()
		}
	}
	nonzero := 0
	for _, n := range sums {
		if n != 0 {
			nonzero++
		}
	}
	out.dimensions = make([]dimensionRow, 0, nonzero)
	for v, n := range sums {
		if n != 0 {
			out.dimensions = append(out.dimensions, dimensionRow{dimension: r.values[v].dimension, value: r.values[v].value, clicks: n})
		}
	}
	from, to := recentFrom.Unix(), recentTo.Unix()
	out.recentHours = make([]hourRow, 0, min(len(r.recent), 48))
	for _, h := range r.recent {
		if h.hour >= from && h.hour < to {
			out.recentHours = append(out.recentHours, hourRow{hour: time.Unix(h.hour, 0), clicks: h.clicks, botClicks: h.botClicks})
		}
	}
	return out
}

func unixDay(t time.Time) int32 { return int32(t.Unix() / (24 * 60 * 60)) }

// recentMargin is how far before its load a linkRollups holds hourly rows: the last 48
// hours of any later request, whose window ends at the end of its current hour.
const recentMargin = 49 * time.Hour

// linkRollupsSQL reads all of a link's rollups and its stats version in one statement,
// so in one snapshot: the version is exactly the version of the rows.
// Columns: kind, dimension, value, day or hour, a, b, c (the shape scanKindRow reads).
const linkRollupsSQL = `
SELECT 0, '', '', stats_version, 0::int8, 0::int8, 0::int8 FROM links WHERE id = $1
UNION ALL
SELECT 1, '', '', (day - DATE '1970-01-01')::int8, clicks, unique_visitors, bot_clicks
FROM daily_stats WHERE link_id = $1
UNION ALL
SELECT 2, dimension, value, (day - DATE '1970-01-01')::int8, clicks, 0, 0
FROM dimension_stats WHERE link_id = $1
UNION ALL
SELECT 4, '', '', extract(epoch FROM hour)::int8, clicks, bot_clicks, 0
FROM hourly_stats WHERE link_id = $1 AND hour >= $2`

// errTooLarge reports a link whose rollups are not held in memory.
var errTooLarge = errors.New("rollups not held")

// maxHeldRows bounds the breakdown rows of one held link, and so the memory a read
// takes before the link's size is known (~10 MB at most).
const maxHeldRows = 200_000

// loadRollups reads a link's rollups. It returns errTooLarge for a link with more
// breakdown rows than maxHeldRows, or with a negative counter (never written by the
// aggregator, but the varint layout cannot hold one), and nil for a link that is gone.
func (s *store) loadRollups(ctx context.Context, id int64, now time.Time) (*linkRollups, error) {
	r := &linkRollups{version: -1, recentFrom: now.Add(-recentMargin)}
	rows, err := s.pool.Query(ctx, linkRollupsSQL, id, r.recentFrom.Truncate(time.Hour))
	if err != nil {
		return nil, fmt.Errorf("query link rollups: %w", err)
	}
	defer rows.Close()
	type dayTotals struct {
		day                int32
		clicks, uniq, bots int64
	}
	type dimRow struct {
		day    int32
		value  int
		clicks int64
	}
	var (
		totals []dayTotals
		dims   []dimRow
		index  = map[dimensionRow]int{}
		fields = rows.FieldDescriptions()
		n      [7]int64
	)
	for rows.Next() {
		vals := rows.RawValues()
		if err := scanKindRow(fields, vals, &n); err != nil {
			return nil, fmt.Errorf("scan link rollups: %w", err)
		}
		kind, at, a, b, c := n[0], n[3], n[4], n[5], n[6]
		if a < 0 || b < 0 || c < 0 {
			return nil, errTooLarge
		}
		switch kind {
		case kindLink:
			r.version = at
		case kindDay:
			totals = append(totals, dayTotals{day: int32(at), clicks: a, uniq: b, bots: c})
		case kindDimension:
			if len(dims) >= maxHeldRows {
				return nil, errTooLarge
			}
			key := dimensionRow{dimension: dimensionName(vals[1]), value: string(vals[2])}
			v, ok := index[key]
			if !ok {
				v = len(r.values)
				index[key] = v
				r.values = append(r.values, key)
			}
			dims = append(dims, dimRow{day: int32(at), value: v, clicks: a})
		case kindRecentHour:
			r.recent = append(r.recent, recentHour{hour: at, clicks: a, botClicks: b})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read link rollups: %w", err)
	}
	if r.version < 0 {
		return nil, nil // the link is gone: nothing to hold
	}
	// Each branch is read in primary-key order; sorting again costs nothing then and
	// keeps the layout right whatever plan PostgreSQL picks.
	slices.SortStableFunc(totals, func(a, b dayTotals) int { return cmp.Compare(a.day, b.day) })
	slices.SortStableFunc(dims, func(a, b dimRow) int { return cmp.Compare(a.day, b.day) })

	// Merge the two day-ordered lists into one record per day.
	var data []byte
	for ti, di := 0, 0; ti < len(totals) || di < len(dims); {
		day := int32(math.MaxInt32)
		if ti < len(totals) {
			day = totals[ti].day
		}
		if di < len(dims) {
			day = min(day, dims[di].day)
		}
		var t dayTotals
		for ti < len(totals) && totals[ti].day == day { // one row per day; summed to be safe
			t.clicks, t.uniq, t.bots = t.clicks+totals[ti].clicks, t.uniq+totals[ti].uniq, t.bots+totals[ti].bots
			ti++
		}
		end := di
		for end < len(dims) && dims[end].day == day {
			end++
		}
		r.days = append(r.days, day)
		r.at = append(r.at, uint32(len(data)))
		data = binary.AppendUvarint(data, uint64(t.clicks))
		data = binary.AppendUvarint(data, uint64(t.uniq))
		data = binary.AppendUvarint(data, uint64(t.bots))
		data = binary.AppendUvarint(data, uint64(end-di))
		for ; di < end; di++ {
			data = binary.AppendUvarint(data, uint64(dims[di].value))
			data = binary.AppendUvarint(data, uint64(dims[di].clicks))
		}
		if len(data) > math.MaxUint32/2 {
			return nil, errTooLarge
		}
	}
	r.at = append(r.at, uint32(len(data)))
	// Held for long: keep exactly what is used, not append's spare capacity.
	r.days, r.at, r.data = slices.Clone(r.days), slices.Clone(r.at), slices.Clone(data)
	r.recent, r.values = slices.Clone(r.recent), slices.Clone(r.values)
	return r, nil
}

// rollupCache holds linkRollups by link id within a byte budget.
//
// Reading a link's whole history costs many range reads, so the cache must never
// churn. A link is held only if it fits in what is left of the
// budget when its read ends — a reread after the link's version moved included. A
// link that does not fit is marked (a few bytes) and its requests read their range
// from PostgreSQL, as before rollups were held, until the next sweep: when the cache
// is full and a minute has passed, marks and links unused since the previous sweep
// are dropped. So a working set that fits is held, one that does not costs what it
// did before, and a link that cools down leaves within two sweeps.
type rollupCache struct {
	load    func(ctx context.Context, id int64) (*linkRollups, error)
	budget  int
	now     func() time.Time
	onError func(id int64, err error)

	mu        sync.Mutex
	links     map[int64]*heldRollups
	held      int // bytes of held rollups (marks count nothing): at most budget
	lastSweep time.Time
	reading   map[int64]bool // links being read whole, at most concurrentReads
	readers   sync.WaitGroup
}

// heldRollups is a held link, or a mark for a link not held (nil linkRollups). Marks
// are outside the budget, which is for rollups; they are bounded by the rate of
// whole-link reads. A link marked too large stays marked while it is used (rollups
// only grow); one marked for want of room is tried again after the next sweep.
type heldRollups struct {
	*linkRollups
	size   int         // of the rollups; 0 for a mark
	used   atomic.Bool // asked for since the last sweep
	noRoom bool        // a mark for want of room: dropped by the next sweep
}

// defaultRollupBudget holds about 1,400 links with a year of 15 breakdown values a
// day. It is small on purpose: the process runs under a 64 MiB soft memory limit.
const defaultRollupBudget = 24 << 20

// sweepEvery is how long a held link may go unused before a full cache drops it.
const sweepEvery = time.Minute

// concurrentReads is how many links may be read whole at once, which bounds the
// memory and PostgreSQL time the reads take.
const concurrentReads = 2

// readTimeout bounds one whole-link read.
const readTimeout = 30 * time.Second

func newRollupCache(budget int, load func(ctx context.Context, id int64) (*linkRollups, error)) *rollupCache {
	return &rollupCache{load: load, budget: budget, now: time.Now, onError: func(int64, error) {},
		links: map[int64]*heldRollups{}, reading: map[int64]bool{}}
}

// get returns the rollups of link id if they are held at version or later. Otherwise
// it returns nil — the caller reads its range from PostgreSQL — and, when the link may
// be held, starts reading it whole in the background: no request waits for a
// whole-link read, however long the link's history.
func (c *rollupCache) get(id, version int64) *linkRollups {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.links[id]
	if h != nil {
		h.used.Store(true)
		if h.linkRollups == nil {
			return nil // marked: reading it again would be wasted
		}
		if h.version >= version {
			return h.linkRollups
		}
	}
	if h != nil || c.held < c.budget || c.sweep() {
		c.startRead(id)
	}
	return nil
}

// startRead reads link id whole in the background, unless it is being read or
// concurrentReads reads are running (a later request starts it then). c.mu is held.
func (c *rollupCache) startRead(id int64) {
	if c.reading[id] || len(c.reading) >= concurrentReads {
		return
	}
	c.reading[id] = true
	c.readers.Go(func() {
		defer func() {
			c.mu.Lock()
			delete(c.reading, id)
			c.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		r, err := c.load(ctx, id)
		switch {
		case errors.Is(err, errTooLarge):
			c.put(id, nil)
		case err != nil:
			c.onError(id, err)
		case r != nil:
			c.put(id, r)
		}
	})
}

// wait returns once no whole-link read is running (for tests and shutdown).
func (c *rollupCache) wait() { c.readers.Wait() }

// sweep drops the links unused since the last sweep and every mark for want of room,
// at most once per sweepEvery, and reports whether there is room now. c.mu is held.
func (c *rollupCache) sweep() bool {
	now := c.now()
	if now.Sub(c.lastSweep) < sweepEvery {
		return false
	}
	c.lastSweep = now
	for id, h := range c.links {
		if !h.used.Swap(false) || h.noRoom {
			c.drop(id, h)
		}
	}
	return c.held < c.budget
}

// drop forgets link id. c.mu is held.
func (c *rollupCache) drop(id int64, h *heldRollups) {
	delete(c.links, id)
	c.held -= h.size
}

// holding returns how many links are held and the bytes they take.
func (c *rollupCache) holding() (links, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.links {
		if h.linkRollups != nil { // not a mark
			links++
		}
	}
	return links, c.held
}

// put holds r as link id's rollups if it fits in the budget, replacing an older copy.
// Otherwise it marks the link: too large when r is nil or takes more than a quarter
// of the budget (one link may not take the room of many), no room when the budget
// is spent. It reports whether r is held.
func (c *rollupCache) put(id int64, r *linkRollups) bool {
	h := &heldRollups{linkRollups: r}
	if r != nil {
		if h.size = r.size(); h.size > c.budget/4 {
			h.linkRollups, h.size = nil, 0
		}
	}
	h.used.Store(true)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.links[id]; old != nil {
		if old.linkRollups != nil && h.linkRollups != nil && old.version > r.version {
			return false
		}
		c.drop(id, old)
	}
	if h.linkRollups != nil && c.held+h.size > c.budget && (!c.sweep() || c.held+h.size > c.budget) {
		h.linkRollups, h.size, h.noRoom = nil, 0, true
	}
	c.held += h.size
	c.links[id] = h
	return h.linkRollups != nil
}
