package stats

import (
	"cmp"
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hop-dev/hop/modules/domains"
)

// Reader reads statistics from the rollups: one link's, the overview of all links
// (or one domain's), and the last hours of every link. The stats handlers and the
// dashboard both call it. A link stats read costs PostgreSQL one primary-key lookup
// when the link's rollups are held in memory (see read), and one more round trip for
// its range otherwise. Nothing stale is ever served: a click is visible as soon as
// the aggregator has taken it.
type Reader struct {
	store   *store
	rollups *rollupCache
	fromMem prometheus.Counter // hop_stats_link_reads_total by source, resolved once
	fromPG  prometheus.Counter
	loads   prometheus.Counter
	hours   atomic.Pointer[labels] // the last-48-hours labels last made
	pool    *pgxpool.Pool
	domains Domains
	logger  *slog.Logger
	now     func() time.Time
}

// Config tunes the reader; the zero value takes the defaults.
type Config struct {
	// HeldBytes is the budget for links' rollups held in memory (default 24 MiB).
	HeldBytes int
	// Domains resolves a domain's host and counts the overview's links; hop always sets
	// it. Nil (tests that read no overview): any host is refused and an overview fails.
	Domains Domains
}

// Domains finds a short domain by host and counts live links; domains.Registry
// implements it.
type Domains interface {
	// Find returns the live domain with host, or domains.ErrNotFound.
	Find(ctx context.Context, host string) (domains.Domain, error)
	// LiveLinks returns the number of live links of each domain that has any, by id.
	LiveLinks(ctx context.Context) (map[int64]int64, error)
}

// NewReader returns the reader over pool; reg may be nil (no metrics).
func NewReader(cfg Config, pool *pgxpool.Pool, reg prometheus.Registerer, logger *slog.Logger) *Reader {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hop_stats_link_reads_total",
		Help: "Link stats answered, by source: memory (held rollups) or postgres (a range read: other time zones, links not held).",
	}, []string{"source"})
	r := &Reader{
		fromMem: reads.WithLabelValues("memory"),
		fromPG:  reads.WithLabelValues("postgres"),
		loads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hop_stats_rollup_loads_total",
			Help: "Links' whole rollups read into memory (first asked, or their stats version moved).",
		}),
		store:   &store{pool: pool},
		pool:    pool,
		domains: cfg.Domains,
		logger:  logger.With("module", "stats"),
		now:     time.Now,
	}
	r.rollups = newRollupCache(cmp.Or(cfg.HeldBytes, defaultRollupBudget), func(ctx context.Context, id int64) (*linkRollups, error) {
		r.loads.Inc()
		return r.store.loadRollups(ctx, id, r.now())
	})
	r.rollups.onError = func(id int64, err error) {
		r.logger.Warn("read link rollups; its stats are read from PostgreSQL meanwhile", "link_id", id, "err", err)
	}
	if reg != nil {
		reg.MustRegister(reads, r.loads,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hop_stats_held_links", Help: "Links whose rollups are held in memory."},
				func() float64 { links, _ := r.rollups.holding(); return float64(links) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hop_stats_held_bytes", Help: "Bytes of rollups held in memory (budget: 3/8 of the soft memory limit)."},
				func() float64 { _, bytes := r.rollups.holding(); return float64(bytes) }))
	}
	return r
}

// Range is a stats range as a person gives it: inclusive YYYY-MM-DD dates and an IANA
// zone, each empty for the default (the 30 days ending today, UTC), and the number of
// values kept per breakdown (0: the default).
type Range struct {
	Start, End, TZ string
	Limit          int
}

// values is rg as the query parameters of the API.
func (rg Range) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"start": rg.Start, "end": rg.End, "tz": rg.TZ} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if rg.Limit != 0 {
		v.Set("limit", strconv.Itoa(rg.Limit))
	}
	return v
}

// parse reads the range parameters v and the domain with host ("": none, 0).
func (r *Reader) parse(ctx context.Context, host string, v url.Values) (rangeQuery, error) {
	q, err := parseRange(v, r.now())
	if err != nil {
		return q, err
	}
	if host != "" {
		if r.domains == nil {
			return q, domains.ErrNotFound
		}
		d, err := r.domains.Find(ctx, host)
		if err != nil {
			return q, err
		}
		q.domain = d.ID
	}
	return q, nil
}

// LinkStats returns the stats of the link with slug on the domain with host ("" is
// the default domain), as GET /links/{slug}/stats does. Bad parameters are 400
// problems; an unknown link is ErrNotFound, a deleted one ErrGone.
func (r *Reader) LinkStats(ctx context.Context, host, slug string, rg Range) (LinkStats, error) {
	q, err := r.parse(ctx, host, rg.values())
	if err != nil {
		return LinkStats{}, err
	}
	recentTo := r.recentEnd()
	raw, err := r.read(ctx, slug, q, recentTo, -1)
	if err != nil {
		return LinkStats{}, err
	}
	return r.shapeLinkStats(slug, q, recentTo, raw), nil
}

// Overview returns every link together, or the links of the domain with host (""
// is every domain), as GET /stats does.
func (r *Reader) Overview(ctx context.Context, host string, rg Range) (Overview, error) {
	q, err := r.parse(ctx, host, rg.values())
	if err != nil {
		return Overview{}, err
	}
	return r.computeOverview(ctx, q)
}
