package stats

import (
	"sync"
	"time"
)

// responseCache keeps encoded link stats with the link's stats version. The aggregator
// bumps links.stats_version in the transaction that adds a link's clicks; every request
// compares the held version with the link's current one (from linkHead, or sent with
// the range query, which then returns no rollups). So a held response is served only
// while it is exactly what the rollups would give — never stale — and a dashboard
// polling a link costs a primary-key lookup and no encoding.
//
// It is small on purpose (1,000 responses of a few KB): its use is the same link and
// range asked again, and a larger map only feeds the garbage collector when every
// request asks something new. docs/architecture.md says why it exists.
type responseCache struct {
	mu      sync.Mutex
	entries map[cacheKey]cachedStats
	max     int
}

// cacheKey is everything a link stats response depends on besides the rollups.
type cacheKey struct {
	domain     int64
	slug       string
	start, end int64 // unix days of the range
	tz         string
	limit      int
	recentTo   int64 // end of the last-48-hours window
}

type cachedStats struct {
	version int64
	body    []byte
}

func newResponseCache(max int) *responseCache {
	return &responseCache{entries: make(map[cacheKey]cachedStats), max: max}
}

func (c *responseCache) get(k cacheKey) (cachedStats, bool) {
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	return e, ok
}

// put holds e under k; a cache of size 0 holds nothing.
func (c *responseCache) put(k cacheKey, e cachedStats) {
	if c.max == 0 {
		return
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		clear(c.entries) // bounded memory: start over
	}
	c.entries[k] = e
	c.mu.Unlock()
}

func keyOf(slug string, q rangeQuery, recentTo time.Time) cacheKey {
	const day = 24 * 60 * 60
	return cacheKey{domain: q.domain, slug: slug, start: q.start.Unix() / day, end: q.end.Unix() / day,
		tz: q.tz, limit: q.limit, recentTo: recentTo.Unix()}
}
