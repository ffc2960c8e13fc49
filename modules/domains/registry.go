package domains

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/problem"
)

// Config configures the registry.
type Config struct {
	// BaseURL is HOP_BASE_URL: the default domain's host and public origin.
	BaseURL string
	// The default domain's fallback redirects (HOP_*_REDIRECT); empty: hop's page.
	RootRedirect, NotFoundRedirect, ExpiredRedirect string
	// Refresh is how often the registry reloads the domains, so that a domain added or
	// changed through another instance is served here. Default 2 s. Changes made
	// through this instance are loaded at once.
	Refresh time.Duration
	// Redis, when set, carries changes to every instance at once: each instance reads
	// the key RedisPrefix+"domains" through rueidis' client-side cache, a change
	// writes it, and Redis' invalidation of it (passed to Invalidated) wakes a reload.
	Redis       rueidis.Client
	RedisPrefix string
}

// Registry holds the live domains in memory for the redirect's hot path and the
// management API. Lookups never touch the database; the map is swapped whole on each
// reload, so readers take no lock.
type Registry struct {
	store     *Store
	cfg       Config
	snap      atomic.Pointer[snapshot]
	reloading sync.Mutex // one reload at a time, so an older read never replaces a newer
	wake      chan struct{}
	logger    *slog.Logger
}

type snapshot struct {
	byHost map[string]Domain
	byID   map[int64]Domain
	def    Domain
}

// NewRegistry stores the configured default domain and loads every domain.
func NewRegistry(ctx context.Context, cfg Config, store *Store, logger *slog.Logger) (*Registry, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("domains: base URL %q has no host", cfg.BaseURL)
	}
	cfg.Refresh = cmp.Or(cfg.Refresh, 2*time.Second)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Registry{store: store, cfg: cfg, wake: make(chan struct{}, 1), logger: logger.With("module", "domains")}
	// u.Host, not u.Hostname(): an IPv6 host keeps its brackets, as a Host header has them.
	if err := store.SyncDefault(ctx, requestHost(u.Host), cfg.BaseURL); err != nil {
		return nil, err
	}
	if err := r.Refresh(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Refresh reloads the domains from PostgreSQL.
func (r *Registry) Refresh(ctx context.Context) error {
	r.reloading.Lock()
	defer r.reloading.Unlock()
	r.track(ctx)
	ds, err := r.store.load(ctx)
	if err != nil {
		return err
	}
	s := &snapshot{byHost: make(map[string]Domain, len(ds)), byID: make(map[int64]Domain, len(ds))}
	for _, d := range ds {
		if d.Default {
			d = r.withConfig(d)
			s.def = d
		}
		s.byHost[d.Host] = d
		s.byID[d.ID] = d
	}
	if s.def.ID == 0 {
		return fmt.Errorf("domains: the default domain is missing from the database")
	}
	r.snap.Store(s)
	return nil
}

// redisTimeout bounds the registry's Redis calls; a failure leaves other instances
// to their next periodic reload.
const redisTimeout = time.Second

// track reads the change key through the client-side cache, before the domains are
// read, so a change written after that read is announced to this instance.
func (r *Registry) track(ctx context.Context) {
	if r.cfg.Redis == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, redisTimeout)
	defer cancel()
	c := r.cfg.Redis
	if err := c.DoCache(ctx, c.B().Get().Key(r.cfg.RedisPrefix+"domains").Cache(), time.Hour).Error(); err != nil && !rueidis.IsRedisNil(err) {
		r.logger.Warn("track domain changes", "err", err)
	}
}

// changed tells every instance that the domains changed, then reloads this one's.
func (r *Registry) changed(ctx context.Context) error {
	if c := r.cfg.Redis; c != nil {
		rctx, cancel := context.WithTimeout(ctx, redisTimeout)
		err := c.Do(rctx, c.B().Incr().Key(r.cfg.RedisPrefix+"domains").Build()).Error()
		cancel()
		if err != nil {
			r.logger.Warn("announce domain change; other instances see it within their refresh", "err", err)
		}
	}
	return r.Refresh(ctx)
}

// Invalidated takes Redis' client-side caching invalidations (the app passes every
// one); the domains' key among them, or nil (everything), wakes a reload. It runs on
// rueidis' reader, so it only signals.
func (r *Registry) Invalidated(msgs []rueidis.RedisMessage) {
	hit := msgs == nil
	for _, m := range msgs {
		if k, err := m.ToString(); err == nil && k == r.cfg.RedisPrefix+"domains" {
			hit = true
		}
	}
	if hit {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// withConfig gives the default domain its configured origin and fallbacks.
func (r *Registry) withConfig(d Domain) Domain {
	d.BaseURL = r.cfg.BaseURL
	d.RootRedirect, d.NotFoundRedirect, d.ExpiredRedirect = r.cfg.RootRedirect, r.cfg.NotFoundRedirect, r.cfg.ExpiredRedirect
	return d
}

// Run reloads the domains every Refresh until ctx ends. A failed reload keeps the
// domains known so far and is logged.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
		}
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.logger.Warn("reload domains", "err", err)
		}
	}
}

// ForHost returns the domain a request's Host header names (any case, port ignored),
// or the default domain when it names none. It runs on every redirect: a map lookup.
func (r *Registry) ForHost(host string) Domain {
	s := r.snap.Load()
	if d, ok := s.byHost[requestHost(host)]; ok {
		return d
	}
	return s.def
}

// Default returns the default domain.
func (r *Registry) Default() Domain { return r.snap.Load().def }

// Find returns the live domain with host as a person may type it ("" is the default
// domain); ErrNotFound if there is none. A host this instance does not know yet may
// have been added through another: the domains are reloaded once before giving up.
func (r *Registry) Find(ctx context.Context, host string) (Domain, error) {
	// The default domain answers to its own host as stored, which may be a name or an
	// IP address NormalizeHost refuses (HOP_BASE_URL=http://10.0.0.5:8080).
	if def := r.Default(); host == "" || strings.EqualFold(strings.TrimSuffix(host, "."), def.Host) {
		return def, nil
	}
	h, err := NormalizeHost(host)
	if err != nil {
		return Domain{}, err
	}
	if d, ok := r.snap.Load().byHost[h]; ok {
		return d, nil
	}
	if err := r.Refresh(ctx); err != nil {
		return Domain{}, err
	}
	if d, ok := r.snap.Load().byHost[h]; ok {
		return d, nil
	}
	return Domain{}, problem.With(ErrNotFound, "no domain has the host %q (see GET /domains)", h)
}

// ByID returns the domain with id, reloading once if this instance does not know it.
func (r *Registry) ByID(ctx context.Context, id int64) (Domain, error) {
	if d, ok := r.snap.Load().byID[id]; ok {
		return d, nil
	}
	if err := r.Refresh(ctx); err != nil {
		return Domain{}, err
	}
	if d, ok := r.snap.Load().byID[id]; ok {
		return d, nil
	}
	return Domain{}, ErrNotFound
}

// Hosts returns the hosts of every live domain: hop's own names, which no link may
// point to.
func (r *Registry) Hosts() []string {
	s := r.snap.Load()
	out := make([]string, 0, len(s.byHost))
	for h := range s.byHost {
		out = append(out, h)
	}
	return out
}

// Choices returns every live domain as this instance holds it in memory, without link
// counts, the default first, then by host: what a form offers to pick from. It reads no
// database, where List counts every live link of every domain.
func (r *Registry) Choices() []Domain {
	s := r.snap.Load()
	out := make([]Domain, 0, len(s.byID))
	for _, d := range s.byID {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Domain) int {
		if a.Default != b.Default {
			if a.Default {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Host, b.Host)
	})
	return out
}

// LiveLinks returns the number of live links of each domain that has any, by id.
func (r *Registry) LiveLinks(ctx context.Context) (map[int64]int64, error) {
	return r.store.LiveLinks(ctx)
}

// List returns every live domain with its link count, the default first, as the
// API shows them.
func (r *Registry) List(ctx context.Context) ([]Domain, error) {
	ds, err := r.store.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ds {
		if ds[i].Default {
			ds[i] = r.withConfig(ds[i])
		}
	}
	return ds, nil
}
