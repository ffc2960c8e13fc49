// Package redirect answers GET /{slug}: the hot path of hop. It resolves the slug
// through a client-side cache, checks expiry, limits and passwords, hands a click event
// to ingest — answering only once that hand-off is durable — and sends the 3xx. It
// also serves what visitors meet around the links: hop's own pages for unknown, gone
// and protected links (or the configured fallback redirects), /, robots.txt and the
// favicon. Nothing here logs per request except errors.
package redirect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/ingest"
	"github.com/hop-dev/hop/modules/links"
)

// Publisher takes a click event; it returns once the event is durably handed off (or
// counted as dropped). ingest.Publisher implements it.
type Publisher interface {
	Publish(ctx context.Context, ev ingest.Event)
}

// Fallbacks are where visitors are redirected (302) instead of seeing hop's own page;
// an empty field shows the page. A link's own expired_url comes before Expired.
type Fallbacks struct {
	Root     string // GET /
	NotFound string // unknown slugs
	Expired  string // deleted, expired and used-up links
}

// Config configures the redirect handler.
type Config struct {
	RedisPrefix    string         // key prefix shared with the rest of hop
	BaseURL        string         // public origin, for QR codes of short URLs
	TrustedProxies []netip.Prefix // peers whose CF-IPCountry header is believed
	Fallbacks      Fallbacks      // of the default (today: only) domain
	RobotsAllow    bool           // robots.txt lets crawlers follow short links
}

// noStore is shared by every response; net/http only reads header values.
var noStore = []string{"no-store"}

// Errors rendered as problems (or as pages, for browsers).
var (
	errNotFound     = problem.New(http.StatusNotFound, "link-not-found", "no link has this slug")
	errGone         = problem.New(http.StatusGone, "link-gone", "this link was deleted")
	errExpired      = problem.New(http.StatusGone, "link-expired", "this link has expired")
	errLimitReached = problem.New(http.StatusGone, "link-limit-reached", "this link has reached its click limit")
	errLimitDown    = problem.New(http.StatusServiceUnavailable, "click-limit-unavailable", "this link's click limit cannot be checked right now; try again in a moment")
)

// wrongPassword is shown above the form after a wrong password.
const wrongPassword = "Wrong password. Try again."

// outcome is what resolving a slug found.
type outcome byte

const (
	found outcome = iota
	notFound
	deleted
	expired
	limitReached
)

// Handler serves redirects.
type Handler struct {
	cache     *cache
	store     Store
	pub       Publisher
	trusted   []netip.Prefix
	baseURL   string
	fallbacks Fallbacks
	robots    []byte
	pages     *pageSet
	takes     [64]chan struct{} // see takeClick
	logger    *slog.Logger
	metrics   *metrics
	now       func() time.Time
}

// New returns a redirect handler. rdb may be nil (no Redis: in-process cache).
func New(cfg Config, rdb rueidis.Client, store Store, pub Publisher, reg prometheus.Registerer, logger *slog.Logger) (*Handler, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	h := &Handler{
		cache:     &cache{rdb: rdb, prefix: cfg.RedisPrefix, finder: store, metrics: m},
		store:     store,
		pub:       pub,
		trusted:   cfg.TrustedProxies,
		baseURL:   strings.TrimRight(cfg.BaseURL, "/"),
		fallbacks: cfg.Fallbacks,
		robots:    robotsTxt(cfg.RobotsAllow),
		pages:     pages,
		logger:    logger.With("module", "redirect"),
		metrics:   m,
		now:       time.Now,
	}
	for i := range h.takes {
		h.takes[i] = make(chan struct{}, 1)
	}
	return h, nil
}

// Invalidated takes Redis' client-side caching invalidation messages; the app passes it
// to rueidis as ClientOption.OnInvalidations. It must be fast: it runs on rueidis' reader.
func (h *Handler) Invalidated(msgs []rueidis.RedisMessage) { h.cache.invalidated(msgs) }

// Invalidate drops slug from every instance's cache (links.Invalidator).
func (h *Handler) Invalidate(ctx context.Context, slug string) error {
	return h.cache.Invalidate(ctx, slug)
}

// Register adds the visitor routes; mw (the rate limiter) applies to the slug routes.
// /{slug}/ is the same as /{slug}: people add the slash when they type a link.
func (h *Handler) Register(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	e.GET("/", h.root)
	e.HEAD("/", h.root)
	e.GET("/robots.txt", h.robotsTxt)
	e.HEAD("/robots.txt", h.robotsTxt)
	e.GET("/favicon.ico", h.favicon)
	e.HEAD("/favicon.ico", h.favicon)
	e.GET("/:slug", h.redirect, mw...)
	e.HEAD("/:slug", h.redirect, mw...)
	e.POST("/:slug", h.unlock, mw...)
	e.GET("/:slug/", h.redirect, mw...)
	e.HEAD("/:slug/", h.redirect, mw...)
	e.GET("/:slug/qr", h.qr, mw...)
}

// fallbacksFor is the one place that picks a request's fallbacks, so that branded
// domains can each have their own.
func (h *Handler) fallbacksFor(*http.Request) Fallbacks { return h.fallbacks }

func (h *Handler) redirect(c echo.Context) error {
	slug := c.Param("slug")
	t, o, err := h.resolve(c.Request().Context(), slug)
	if err != nil {
		return h.failed(c, err)
	}
	if o != found {
		return h.unavailable(c, o, t)
	}
	if t.password {
		return h.passwordForm(c, slug, http.StatusOK, "")
	}
	return h.follow(c, slug, t)
}

// resolve maps a slug to its target and what it found. Only a failing lookup is an error.
func (h *Handler) resolve(ctx context.Context, slug string) (target, outcome, error) {
	if !links.ValidSlugSyntax(slug) {
		return target{}, notFound, nil
	}
	t, err := h.cache.resolve(ctx, slug)
	if err != nil {
		return t, found, err
	}
	switch {
	case t.state == stateNotFound:
		return t, notFound, nil
	case t.state == stateGone:
		return t, deleted, nil
	case t.expired(h.now()):
		return t, expired, nil
	case t.usedUp():
		return t, limitReached, nil
	}
	return t, found, nil
}

// follow answers with the target in the link's status, after taking the click from
// the link's limit and handing it to ingest. HEAD only looks: it takes and records
// nothing.
func (h *Handler) follow(c echo.Context, slug string, t target) error {
	r := c.Request()
	if r.Method != http.MethodHead {
		if t.maxClicks != 0 {
			gen := h.cache.gen.Load()
			ok, err := h.takeClick(r.Context(), t.id)
			if err != nil {
				if r.Context().Err() == nil { // a visitor who left is not an error
					h.logger.Error("take click", "slug", slug, "err", err)
				}
				return h.failed(c, errLimitDown)
			}
			if !ok {
				h.cache.usedUp(slug, t, gen)
				return h.unavailable(c, limitReached, t)
			}
		}
		h.pub.Publish(r.Context(), h.event(c, t))
	}
	location := t.location
	if t.forward && r.URL.RawQuery != "" {
		location = []string{forwardQuery(t.url, r.URL.RawQuery)}
	}
	if r.Method == http.MethodPost && prefersHTML(r.Header.Get("Accept")) {
		// After the password form a browser is sent on by a page, not a 303: a
		// redirect answering a form is checked against the form page's CSP
		// form-action, which cannot name the target without showing it to anyone who
		// opens the form.
		return h.continuePage(c, location[0])
	}
	status := t.status
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther // after the password form: GET the target
	}
	hdr := c.Response().Header()
	hdr["Location"] = location
	hdr["Cache-Control"] = noStore
	c.Response().WriteHeader(status)
	h.metrics.redirectsByStatus[status].Inc()
	return nil
}

// takeClick takes one click of a limited link, one take per link at a time in this
// instance. PostgreSQL queues concurrent takes on the link's row lock anyway, each
// holding a pool connection while it waits; queueing here instead keeps one busy
// limited link from holding every connection of the pool. Links share the stripes by
// id, so the memory is fixed; two links sharing one only take turns.
func (h *Handler) takeClick(ctx context.Context, id int64) (bool, error) {
	stripe := h.takes[uint64(id)%uint64(len(h.takes))]
	select {
	case stripe <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-stripe }()
	return h.store.TakeClick(ctx, id)
}

// unavailable answers a slug that cannot be followed: the link's expired_url or the
// fallback redirect if there is one, else hop's page for browsers and a problem for
// everyone else.
func (h *Handler) unavailable(c echo.Context, o outcome, t target) error {
	fb := h.fallbacksFor(c.Request())
	var to string
	var err *problem.Error
	switch o {
	case notFound:
		to, err = fb.NotFound, errNotFound
	case deleted:
		to, err = fb.Expired, errGone
	case expired:
		to, err = cmp.Or(t.expiredURL, fb.Expired), errExpired
	case limitReached:
		to, err = cmp.Or(t.expiredURL, fb.Expired), errLimitReached
	default:
		return fmt.Errorf("redirect: unexpected outcome %d", o)
	}
	if to != "" {
		return h.fallback(c, to)
	}
	return h.failed(c, err)
}

// fallback sends the visitor elsewhere with a 302 that is not a click of any link.
func (h *Handler) fallback(c echo.Context, to string) error {
	hdr := c.Response().Header()
	hdr.Set("Location", to)
	hdr["Cache-Control"] = noStore
	c.Response().WriteHeader(http.StatusFound)
	h.metrics.redirectsByStatus[http.StatusFound].Inc()
	return nil
}

// failed answers err: as hop's page when a browser asks, else as the problem it is
// (rendered by the app's error handler).
func (h *Handler) failed(c echo.Context, err error) error {
	var p *problem.Error
	ok := errors.As(err, &p)
	if !ok {
		p = &problem.Error{Status: http.StatusInternalServerError, Title: http.StatusText(http.StatusInternalServerError),
			Detail: "something went wrong on our side; it has been logged"}
	}
	h.metrics.redirectsFailed(p.Status).Inc()
	if !prefersHTML(c.Request().Header.Get("Accept")) {
		return err
	}
	if !ok {
		h.logger.Error("redirect failed", "method", c.Request().Method, "err", err)
	}
	return h.errorPage(c, p.Status, p)
}

func (h *Handler) event(c echo.Context, t target) ingest.Event {
	r := c.Request()
	// ID is left to Publish, which makes the UUIDv7 during this redirect.
	ev := ingest.Event{
		LinkID:         t.id,
		Time:           h.now().UTC(),
		IP:             c.RealIP(),
		UserAgent:      r.Header.Get("User-Agent"),
		Referer:        r.Header.Get("Referer"),
		AcceptLanguage: r.Header.Get("Accept-Language"),
	}
	if len(h.trusted) > 0 && h.peerTrusted(r.RemoteAddr) {
		ev.Country = r.Header.Get("CF-IPCountry")
	}
	return ev
}

func (h *Handler) peerTrusted(remoteAddr string) bool {
	if len(h.trusted) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range h.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// unlock handles the password form of a protected link.
func (h *Handler) unlock(c echo.Context) error {
	slug := c.Param("slug")
	t, o, err := h.resolve(c.Request().Context(), slug)
	if err != nil {
		return h.failed(c, err)
	}
	if o != found {
		return h.unavailable(c, o, t)
	}
	if !t.password {
		return h.follow(c, slug, t)
	}
	l, err := h.store.FindBySlug(c.Request().Context(), slug)
	if err != nil {
		return err
	}
	if !links.CheckPassword(l.PasswordHash, c.FormValue("password")) {
		return h.passwordForm(c, slug, http.StatusUnauthorized, wrongPassword)
	}
	return h.follow(c, slug, t)
}
