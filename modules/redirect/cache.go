package redirect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/modules/links"
)

// Finder loads a link by slug from the system of record; links.Store implements it.
type Finder interface {
	FindBySlug(ctx context.Context, slug string) (links.Link, error)
}

// Cache TTLs. Live entries are invalidated on change, so they can live long; links with
// a click limit are refreshed often because total_clicks changes without an edit.
const (
	liveTTL      = 10 * time.Minute
	limitedTTL   = 5 * time.Second
	negativeTTL  = 30 * time.Second
	redisTimeout = 50 * time.Millisecond
	localMax     = 100_000
)

// cache resolves slugs: rueidis server-assisted client-side cache (DoCache) in front of
// Redis in front of PostgreSQL. Without Redis it keeps a bounded in-process map. Redis
// failing never fails a resolve: PostgreSQL answers instead.
type cache struct {
	rdb    rueidis.Client // nil: local map only
	prefix string
	finder Finder

	local   sync.Map // slug -> localEntry, used without Redis
	localN  atomic.Int64
	metrics *metrics
}

type localEntry struct {
	t       target
	expires int64 // unix nanos
}

func (c *cache) key(slug string) string { return c.prefix + "link:" + slug }

// resolve returns the target of slug. A stateNotFound target is a valid answer.
func (c *cache) resolve(ctx context.Context, slug string) (target, error) {
	if c.rdb == nil {
		return c.resolveLocal(ctx, slug)
	}
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	resp := c.rdb.DoCache(rctx, c.rdb.B().Get().Key(c.key(slug)).Cache(), liveTTL)
	cancel()
	v, err := resp.ToString()
	if err == nil {
		if t, ok := decodeTarget(v); ok {
			if resp.IsCacheHit() {
				c.metrics.cacheHits.Inc()
			} else {
				c.metrics.cacheRedis.Inc()
			}
			return t, nil
		}
	} else if !rueidis.IsRedisNil(err) {
		// Redis is failing: answer from PostgreSQL without caching.
		c.metrics.cacheErrors.Inc()
		return c.load(ctx, slug)
	}
	c.metrics.cacheMisses.Inc()
	t, err := c.load(ctx, slug)
	if err != nil {
		return t, err
	}
	c.fill(ctx, slug, t, true)
	return t, nil
}

func (c *cache) load(ctx context.Context, slug string) (target, error) {
	l, err := c.finder.FindBySlug(ctx, slug)
	if errors.Is(err, links.ErrNotFound) {
		return target{state: stateNotFound}, nil
	}
	if err != nil {
		return target{}, fmt.Errorf("resolve %q: %w", slug, err)
	}
	return targetOf(l), nil
}

func ttlOf(t target) time.Duration {
	switch {
	case t.state == stateNotFound:
		return negativeTTL
	case t.maxClicks != 0:
		return limitedTTL
	}
	return liveTTL
}

// fill stores t in Redis. Fills after a miss use NX so they never overwrite a newer
// value written by Invalidate between our read of PostgreSQL and this write.
func (c *cache) fill(ctx context.Context, slug string, t target, onlyIfAbsent bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), redisTimeout)
	defer cancel()
	set := c.rdb.B().Set().Key(c.key(slug)).Value(t.encode())
	var cmd rueidis.Completed
	if onlyIfAbsent {
		cmd = set.Nx().Px(ttlOf(t)).Build()
	} else {
		cmd = set.Px(ttlOf(t)).Build()
	}
	if err := c.rdb.Do(ctx, cmd).Error(); err != nil && !rueidis.IsRedisNil(err) {
		c.metrics.cacheErrors.Inc()
		return fmt.Errorf("cache %q: %w", slug, err)
	}
	return nil
}

func (c *cache) resolveLocal(ctx context.Context, slug string) (target, error) {
	now := time.Now().UnixNano()
	if v, ok := c.local.Load(slug); ok {
		if e := v.(localEntry); e.expires > now {
			c.metrics.cacheHits.Inc()
			return e.t, nil
		}
	}
	c.metrics.cacheMisses.Inc()
	t, err := c.load(ctx, slug)
	if err != nil {
		return t, err
	}
	if c.localN.Add(1) > localMax {
		// Bounded memory under slug scanning: start over rather than grow.
		c.local.Clear()
		c.localN.Store(0)
	}
	c.local.Store(slug, localEntry{t: t, expires: now + int64(ttlOf(t))})
	return t, nil
}

// Invalidate makes every instance see the current state of slug: it re-reads the link
// and overwrites the Redis entry, which makes Redis tell every tracking client to drop
// its local copy.
func (c *cache) Invalidate(ctx context.Context, slug string) error {
	if c.rdb == nil {
		c.local.Delete(slug)
		return nil
	}
	t, err := c.load(ctx, slug)
	if err != nil {
		return err
	}
	return c.fill(ctx, slug, t, false)
}
