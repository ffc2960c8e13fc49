package stats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// responseCache keeps encoded link stats by link version. The aggregator bumps
// links.stats_version in the transaction that adds a link's clicks, and every request
// reads the current version first, so a cached response is served only while it is
// exactly what the rollups would give: never stale, and a dashboard polling a busy link
// costs one primary-key lookup per poll instead of a scan of its rollups.
type responseCache struct {
	mu      sync.Mutex
	entries map[cacheKey][]byte
	max     int
}

// cacheKey is everything a link stats response depends on.
type cacheKey struct {
	linkID, version int64
	start, end      int64 // unix days of the range
	tz              string
	limit           int
	recentTo        int64 // end of the last-48-hours window
}

func newResponseCache(max int) *responseCache {
	return &responseCache{entries: make(map[cacheKey][]byte), max: max}
}

func (c *responseCache) get(k cacheKey) ([]byte, bool) {
	c.mu.Lock()
	b, ok := c.entries[k]
	c.mu.Unlock()
	return b, ok
}

func (c *responseCache) put(k cacheKey, b []byte) {
	c.mu.Lock()
	if len(c.entries) >= c.max {
		// Bounded memory: start over. Entries of old versions are never read again anyway.
		clear(c.entries)
	}
	c.entries[k] = b
	c.mu.Unlock()
}

// linkVersion is a link's identity and stats version.
type linkVersion struct {
	id, version int64
}

const linkVersionSQL = `SELECT id, deleted_at IS NOT NULL, stats_version FROM links WHERE slug = $1`

// version returns the link's stats version; ErrNotFound or ErrGone for unknown and
// deleted links.
func (s *store) version(ctx context.Context, slug string) (linkVersion, error) {
	var v linkVersion
	var deleted bool
	err := s.pool.QueryRow(ctx, linkVersionSQL, slug).Scan(&v.id, &deleted, &v.version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return v, ErrNotFound
	case err != nil:
		return v, fmt.Errorf("link stats version: %w", err)
	case deleted:
		return v, ErrGone
	}
	return v, nil
}

func keyOf(v linkVersion, q rangeQuery, recentTo time.Time) cacheKey {
	const day = 24 * 60 * 60
	return cacheKey{linkID: v.id, version: v.version, start: q.start.Unix() / day, end: q.end.Unix() / day,
		tz: q.tz, limit: q.limit, recentTo: recentTo.Unix()}
}
