package redirect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/modules/links"
)

// Store is the system of record of links; links.Store implements it.
type Store interface {
	// FindInDomain loads a domain's link, deleted or not; links.ErrNotFound if there
	// is none.
	FindInDomain(ctx context.Context, domainID int64, slug string) (links.Link, error)
	// TakeClick counts one click against the link's max_clicks, atomically across
	// instances: false once the limit is reached.
	TakeClick(ctx context.Context, id int64) (bool, error)
}

// Cache TTLs. Live entries are invalidated on change, so they can live long; links with
// a click limit are refreshed more often because clicks_used changes without an edit
// (it only decides whether a used-up link can be answered without asking PostgreSQL).
const (
	liveTTL      = 10 * time.Minute
	limitedTTL   = 5 * time.Second
	negativeTTL  = 30 * time.Second
	hotTTL       = 10 * time.Second       // bound on a hot entry's life; invalidations normally end it first
	ownChangeTTL = 200 * time.Millisecond // an own change shown before Redis' invalidation arrives
	untrackedTTL = time.Second            // an answer no invalidation can reach
	redisTimeout = 50 * time.Millisecond  // on the redirect path: PostgreSQL answers instead
	// redisRetry is how long lookups go straight to PostgreSQL after Redis failed; one
	// lookup per interval tries Redis again. Without it every lookup of a double
	// outage would wait out redisTimeout before its stale answer.
	redisRetry = 100 * time.Millisecond
	// invalidateTimeout bounds Invalidate's Redis calls. It runs after an edit, off the
	// redirect path, and a failure leaves other instances on the old link (a limit
	// not enforced, a target not changed) until the entry expires: worth waiting for.
	invalidateTimeout = 2 * time.Second
	localMax          = 100_000
)

// cache resolves slugs: a map of decoded targets in front of rueidis' server-assisted
// client-side cache (DoCache) in front of Redis in front of PostgreSQL. The map saves
// decoding and rueidis' locking on every hit; Redis' invalidation messages (delivered
// to Invalidated) clear it exactly when rueidis' own cache is cleared. Without Redis the
// map alone caches, with TTLs. Redis failing never fails a resolve: PostgreSQL answers.
//
// A fill of the map is versioned: it is kept only if no invalidation came in since its
// lookup started, checked and stored under fillMu, which every invalidation also takes,
// so a lookup that read a link just before a PATCH or DELETE can never put the old
// target back after that change dropped it.
//
// Stale if error: when Redis disconnects, rueidis cannot promise invalidations any
// more, so the map's entries stop being trusted (epoch moves on) but are kept, as are
// expired ones, until replaced or the map's bound clears them. Lookups treat them as
// misses; only when PostgreSQL fails too may the redirect answer from one (see stale).
type cache struct {
	rdb           rueidis.Client // nil: local map only
	prefix        string
	finder        Store
	lookupTimeout time.Duration // bound on one PostgreSQL lookup

	local   sync.Map // linkKey -> localEntry
	localN  atomic.Int64
	gen     atomic.Uint64 // bumped by every invalidation; a fill racing one is dropped
	epoch   atomic.Uint64 // bumped when every entry must go: older entries are unverified
	fillMu  sync.Mutex    // orders fills after the invalidations they raced
	metrics *metrics
	logger  *slog.Logger
	// staleOn is set from the first stale answer until PostgreSQL answers again, so
	// each transition is logged once, not per request.
	staleOn atomic.Bool
	// redisBackoff is when (unix nanos) a lookup may try Redis again after it failed;
	// 0 while Redis answers.
	redisBackoff atomic.Int64
}

type localEntry struct {
	t       target
	expires int64  // unix nanos
	epoch   uint64 // cache.epoch at the fill; another one means unverified
}

// linkKey names a link: its domain and its slug there.
type linkKey struct {
	domain int64
	slug   string
}

// defaultDomain is the default domain's id (domains.DefaultID).
const defaultDomain int64 = 1

// key is the link's Redis key: "link:{slug}" on the default domain, as before there
// were domains, "link:{domain id}:{slug}" on others (a slug has no ':').
func (c *cache) key(k linkKey) string {
	if k.domain == defaultDomain {
		return c.prefix + "link:" + k.slug
	}
	return c.prefix + "link:" + strconv.FormatInt(k.domain, 10) + ":" + k.slug
}

// keyOf parses what key made, after the prefix and "link:".
func keyOf(s string) (linkKey, bool) {
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return linkKey{domain: defaultDomain, slug: s}, true
	}
	id, err := strconv.ParseInt(s[:i], 10, 64)
	return linkKey{domain: id, slug: s[i+1:]}, err == nil
}

// resolve returns the target of slug. A stateNotFound target is a valid answer.
func (c *cache) resolve(ctx context.Context, slug linkKey) (target, error) {
	now := time.Now().UnixNano()
	if v, ok := c.local.Load(slug); ok {
		if e := v.(localEntry); e.expires > now && e.epoch == c.epoch.Load() {
			c.metrics.cacheHits.Inc()
			return e.t, nil
		}
	}
	if c.rdb == nil {
		return c.resolveLocal(ctx, slug, now)
	}
	gen := c.gen.Load()
	if c.skipRedis(now) {
		c.metrics.cacheErrors.Inc()
		t, err := c.load(ctx, slug)
		if err == nil {
			c.fillLocal(slug, t, now+int64(untrackedTTL), gen)
		}
		return t, err
	}
	t, tracked, err := c.resolveRedis(ctx, slug)
	if err == nil {
		// An answer read past a failing Redis is not tracked: no invalidation would
		// reach it, so it is kept only briefly.
		ttl := hotTTL
		if !tracked {
			ttl = untrackedTTL
		}
		c.fillLocal(slug, t, now+int64(ttl), gen)
	}
	return t, err
}

// resolveRedis reads slug through rueidis' client-side cache. tracked is false when
// Redis failed and PostgreSQL answered: Redis will not tell this instance of a change.
func (c *cache) resolveRedis(ctx context.Context, slug linkKey) (t target, tracked bool, err error) {
	rctx, cancel := context.WithTimeout(ctx, redisTimeout)
	resp := c.rdb.DoCache(rctx, c.rdb.B().Get().Key(c.key(slug)).Cache(), liveTTL)
	cancel()
	v, err := resp.ToString()
	c.redisAnswered(ctx, err)
	malformed := false
	if err == nil {
		if t, ok := decodeTarget(v); ok {
			if resp.IsCacheHit() {
				c.metrics.cacheHits.Inc()
			} else {
				c.metrics.cacheRedis.Inc()
			}
			return t, true, nil
		}
		malformed = true // written by another version of hop: replace it
	} else if !rueidis.IsRedisNil(err) {
		// Redis is failing: answer from PostgreSQL without caching.
		c.metrics.cacheErrors.Inc()
		t, err := c.load(ctx, slug)
		return t, false, err
	}
	c.metrics.cacheMisses.Inc()
	t, err = c.load(ctx, slug)
	if err != nil {
		return t, false, err
	}
	// The GET that missed registered tracking: later changes reach this instance.
	c.fill(ctx, slug, t, !malformed, redisTimeout)
	return t, true, nil
}

// skipRedis tells whether a lookup should leave Redis out because it failed lately;
// one lookup per redisRetry is let through to try it again.
func (c *cache) skipRedis(now int64) bool {
	until := c.redisBackoff.Load()
	if until == 0 {
		return false
	}
	return now < until || !c.redisBackoff.CompareAndSwap(until, now+int64(redisRetry))
}

// redisAnswered records how Redis answered a lookup: a failure (not the client
// leaving) starts the backoff, an answer ends it.
func (c *cache) redisAnswered(ctx context.Context, err error) {
	switch {
	case err == nil || rueidis.IsRedisNil(err):
		if c.redisBackoff.Load() != 0 {
			c.redisBackoff.Store(0)
		}
	case ctx.Err() == nil:
		c.redisBackoff.Store(time.Now().UnixNano() + int64(redisRetry))
	}
}

func (c *cache) load(ctx context.Context, slug linkKey) (target, error) {
	l, err := c.find(ctx, slug)
	if errors.Is(err, links.ErrNotFound) {
		return target{state: stateNotFound}, nil
	}
	if err != nil {
		return target{}, err
	}
	if c.staleOn.Load() && c.staleOn.CompareAndSwap(true, false) {
		c.logger.Info("PostgreSQL answers again: no more redirects from unverified cache entries")
	}
	return targetOf(l), nil
}

// stale returns what this instance last knew of slug, verified or not, when it may
// stand in for a lookup that failed: only a live link without a click limit. A deleted
// or unknown slug answers the failure, and a limited link cannot be followed anyway
// while its limit cannot be taken. The caller checks expiry with its clock.
func (c *cache) stale(slug linkKey) (target, bool) {
	v, ok := c.local.Load(slug)
	if !ok {
		return target{}, false
	}
	t := v.(localEntry).t
	return t, t.state == stateLive && t.maxClicks == 0
}

// servedStale counts an answer from a stale entry; the first one after PostgreSQL
// answered is logged with the failure that caused it.
func (c *cache) servedStale(slug linkKey, cause error) {
	c.metrics.stale.Inc()
	if !c.staleOn.Load() && c.staleOn.CompareAndSwap(false, true) {
		c.logger.Warn("link lookups failing: redirecting cached links from unverified entries until PostgreSQL answers",
			"slug", slug.slug, "domain_id", slug.domain, "err", cause)
	}
}

// find reads a link from PostgreSQL within lookupTimeout, and no longer than its
// client waits: a stalled database must not pile up requests.
func (c *cache) find(ctx context.Context, slug linkKey) (links.Link, error) {
	ctx, cancel := context.WithTimeout(ctx, c.lookupTimeout)
	defer cancel()
	l, err := c.finder.FindInDomain(ctx, slug.domain, slug.slug)
	if err != nil && !errors.Is(err, links.ErrNotFound) {
		return l, fmt.Errorf("resolve %q on domain %d: %w", slug.slug, slug.domain, err)
	}
	return l, err
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
func (c *cache) fill(ctx context.Context, slug linkKey, t target, onlyIfAbsent bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
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
		return fmt.Errorf("cache %q: %w", slug.slug, err)
	}
	return nil
}

func (c *cache) resolveLocal(ctx context.Context, slug linkKey, now int64) (target, error) {
	c.metrics.cacheMisses.Inc()
	gen := c.gen.Load()
	t, err := c.load(ctx, slug)
	if err != nil {
		return t, err
	}
	c.fillLocal(slug, t, now+int64(ttlOf(t)), gen)
	return t, nil
}

// fillLocal keeps t, looked up from generation gen on, unless an invalidation has
// come in since.
func (c *cache) fillLocal(slug linkKey, t target, expires int64, gen uint64) {
	c.fillMu.Lock()
	defer c.fillMu.Unlock()
	if c.gen.Load() == gen {
		c.remember(slug, t, expires, c.epoch.Load())
	}
}

// drop forgets slug, and fails every fill in flight. With all set it marks every
// entry unverified instead: kept only for stale answers (in O(1), on rueidis' reader).
func (c *cache) drop(all bool, slugs ...linkKey) {
	c.fillMu.Lock()
	defer c.fillMu.Unlock()
	c.gen.Add(1)
	if all {
		c.epoch.Add(1)
		return
	}
	for _, s := range slugs {
		if _, ok := c.local.LoadAndDelete(s); ok {
			c.localN.Add(-1)
		}
	}
}

// remember stores an entry; callers hold fillMu. localN counts slugs, not fills, so
// refreshing hot links never clears the map (and what stale answers would need).
func (c *cache) remember(slug linkKey, t target, expires int64, epoch uint64) {
	e := localEntry{t: t, expires: expires, epoch: epoch}
	if _, loaded := c.local.Swap(slug, e); loaded {
		return
	}
	if c.localN.Add(1) > localMax {
		// Bounded memory under slug scanning: start over rather than grow.
		c.local.Clear()
		c.localN.Store(1)
		c.local.Store(slug, e)
	}
}

// usedUp remembers that the link's limit is reached, so this instance answers the
// next visitors without asking PostgreSQL; gen is the generation read before the
// click was refused, so an edit (a raised limit) since then is never overwritten.
func (c *cache) usedUp(slug linkKey, t target, gen uint64) {
	t.clicksUsed = t.maxClicks
	c.fillLocal(slug, t, time.Now().UnixNano()+int64(limitedTTL), gen)
}

// invalidated receives Redis' client-side caching invalidations (rueidis'
// OnInvalidations): the keys that changed, or nil when everything must go.
func (c *cache) invalidated(msgs []rueidis.RedisMessage) {
	if msgs == nil {
		c.drop(true)
		return
	}
	p := c.prefix + "link:"
	slugs := make([]linkKey, 0, len(msgs))
	for _, m := range msgs {
		if k, err := m.ToString(); err == nil && strings.HasPrefix(k, p) {
			if lk, ok := keyOf(k[len(p):]); ok {
				slugs = append(slugs, lk)
			}
		}
	}
	c.drop(false, slugs...)
}

// Invalidate makes every instance see the current state of slug: it re-reads the link
// and overwrites the Redis entry, which makes Redis tell every tracking client to drop
// its local copy.
func (c *cache) Invalidate(ctx context.Context, slug linkKey) error {
	c.drop(false, slug)
	if c.rdb == nil {
		return nil
	}
	t, err := c.load(ctx, slug)
	if err != nil {
		return err
	}
	if err := c.fill(ctx, slug, t, false, invalidateTimeout); err != nil {
		return err
	}
	// This instance must read its own change at once, but Redis' invalidation of its
	// rueidis cache arrives a moment later. A cached read now registers tracking (so
	// later changes by others reach this instance) and shows whether the local cache
	// already has the new value; if not, the new value is served from the map only
	// until the invalidation on its way has cleared the stale one.
	gen := c.gen.Add(1)
	rctx, cancel := context.WithTimeout(ctx, invalidateTimeout)
	v, err := c.rdb.DoCache(rctx, c.rdb.B().Get().Key(c.key(slug)).Cache(), liveTTL).ToString()
	cancel()
	now := time.Now().UnixNano()
	expires := now + int64(hotTTL)
	if err != nil || v != t.encode() {
		expires = now + int64(ownChangeTTL)
	}
	c.fillLocal(slug, t, expires, gen)
	return nil
}
