package redirect

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/modules/links"
)

// Created makes every instance see new links at once, as Invalidate does for one
// changed link, but for a whole bulk create in one pipelined Redis round trip and no
// PostgreSQL read: the links are at hand. A new slug may be cached as unknown (an
// earlier 404) here or on other instances; overwriting its Redis entry tells every
// tracking client to drop its copy.
func (h *Handler) Created(ctx context.Context, ls []links.Link) error {
	return h.cache.created(ctx, ls)
}

func (c *cache) created(ctx context.Context, ls []links.Link) error {
	slugs := make([]linkKey, len(ls))
	for i, l := range ls {
		slugs[i] = linkKey{domain: l.DomainID, slug: l.Slug}
	}
	c.drop(false, slugs...)
	if c.rdb == nil || len(ls) == 0 {
		return nil
	}
	gen := c.gen.Load()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), invalidateTimeout)
	defer cancel()
	ts := make([]target, len(ls))
	cmds := make(rueidis.Commands, len(ls))
	for i, l := range ls {
		ts[i] = targetOf(l)
		cmds[i] = c.rdb.B().Set().Key(c.key(slugs[i])).Value(ts[i].encode()).Px(ttlOf(ts[i])).Build()
	}
	for _, r := range c.rdb.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			c.metrics.cacheErrors.Inc()
			return fmt.Errorf("cache new links: %w", err)
		}
	}
	// Redis' invalidation of this instance's own client-side cache arrives a moment
	// later; until then the new links are served from the local map.
	expires := time.Now().UnixNano() + int64(ownChangeTTL)
	for i := range ls {
		c.fillLocal(slugs[i], ts[i], expires, gen)
	}
	return nil
}
