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
	"mime"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/ingest"
	"github.com/hop-dev/hop/modules/links"
)

// Publisher takes a click event; it returns once the event is durably handed off (or
// counted as dropped). ingest.Publisher implements it.
type Publisher interface {
	Publish(ctx context.Context, ev ingest.Event)
}

// Attempts limits password attempts per key; ratelimit.Limiter implements it. Hit
// counts an attempt before the password is checked, Undo takes it back when the
// password was right, so only wrong answers use up the limit.
type Attempts interface {
	Hit(ctx context.Context, key string) (retry time.Duration, ok bool)
	Undo(ctx context.Context, key string)
}

// Domains tells which short domain a request's host names, the default domain when
// it names none; domains.Registry implements it from memory, with no round trip.
type Domains interface {
	ForHost(host string) domains.Domain
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
	// LookupTimeout bounds a slug's lookup in PostgreSQL; past it the redirect answers
	// 503. Default 2 s.
	LookupTimeout time.Duration
	// PasswordChecks is how many password checks (bcrypt) may run at once; more are
	// answered 429 at once, so they cannot starve redirects of CPU. Default: half the
	// CPUs, at least 1.
	PasswordChecks int
	// LinkAttempts limits wrong passwords per link from all addresses together, and
	// ClientAttempts per client address. Nil: no limit.
	LinkAttempts, ClientAttempts Attempts
	Fallbacks                    Fallbacks // of the default domain, when Domains is nil
	RobotsAllow                  bool      // robots.txt lets crawlers follow short links
	// Domains picks each request's domain by its Host (X-Forwarded-Host from a trusted
	// proxy). Nil: one domain, the default, with BaseURL and Fallbacks.
	Domains Domains
	// Describe is app's error table: the status of a failure (for the metrics) and its
	// words (for the page a browser is shown).
	Describe problem.Describe
}

// noStore is shared by every response; net/http only reads header values.
var noStore = []string{"no-store"}

// Errors rendered as problems (or as pages, for browsers); app's error table says how.
var (
	ErrNotFound     = errors.New("link not found")
	ErrGone         = errors.New("link deleted")
	ErrExpired      = errors.New("link expired")
	ErrLimitReached = errors.New("link click limit reached")
	ErrLimitDown    = errors.New("click limit unavailable")
	ErrUnavailable  = errors.New("link lookup timed out")
	ErrLookupFailed = errors.New("link lookup failed")
	errFormType     = problem.With(problem.ErrUnsupportedMedia, "the password form must be sent as application/x-www-form-urlencoded")
	errFormSize     = problem.With(problem.ErrTooLarge, "the password form is larger than 4 KiB")
	errFormBad      = problem.Invalid("the password form could not be read")
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

// maxForm bounds the password form's body; it holds one password of at most 72 bytes.
const maxForm = 4 << 10

// Handler serves redirects.
type Handler struct {
	cache     *cache
	store     Store
	pub       Publisher
	trusted   []netip.Prefix
	baseURL   string
	describe  problem.Describe
	fallbacks Fallbacks
	domains   Domains
	robots    []byte
	pages     *pageSet
	takes     [64]chan struct{} // see takeClick
	logger    *slog.Logger
	metrics   *metrics
	now       func() time.Time
	checks    chan struct{} // password checks running; its capacity is the bound
	linkTry   Attempts
	clientTr  Attempts
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
	logger = logger.With("module", "redirect")
	h := &Handler{
		cache: &cache{rdb: rdb, prefix: cfg.RedisPrefix, finder: store, metrics: m, logger: logger,
			lookupTimeout: cmp.Or(cfg.LookupTimeout, 2*time.Second)},
		store:     store,
		pub:       pub,
		trusted:   cfg.TrustedProxies,
		baseURL:   strings.TrimRight(cfg.BaseURL, "/"),
		fallbacks: cfg.Fallbacks,
		domains:   cfg.Domains,
		robots:    robotsTxt(cfg.RobotsAllow),
		describe:  cfg.Describe,
		pages:     pages,
		logger:    logger,
		metrics:   m,
		now:       time.Now,
		checks:    make(chan struct{}, cmp.Or(cfg.PasswordChecks, max(1, runtime.GOMAXPROCS(0)/2))),
		linkTry:   cfg.LinkAttempts,
		clientTr:  cfg.ClientAttempts,
	}
	for i := range h.takes {
		h.takes[i] = make(chan struct{}, 1)
	}
	return h, nil
}

// Invalidated takes Redis' client-side caching invalidation messages; the app passes it
// to rueidis as ClientOption.OnInvalidations. It must be fast: it runs on rueidis' reader.
func (h *Handler) Invalidated(msgs []rueidis.RedisMessage) { h.cache.invalidated(msgs) }

// Invalidate drops slug of the default domain from every instance's cache.
func (h *Handler) Invalidate(ctx context.Context, slug string) error {
	return h.cache.Invalidate(ctx, linkKey{domain: defaultDomain, slug: slug})
}

// InvalidateLink drops a domain's slug from every instance's cache
// (links.Invalidator).
func (h *Handler) InvalidateLink(ctx context.Context, domainID int64, slug string) error {
	return h.cache.Invalidate(ctx, linkKey{domain: domainID, slug: slug})
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
	visit := append([]echo.MiddlewareFunc{h.visitorPages}, mw...)
	e.GET("/:slug", h.redirect, visit...)
	e.HEAD("/:slug", h.redirect, visit...)
	e.POST("/:slug", notOnOwnPaths(e, h.unlock), visit...)
	e.GET("/:slug/", h.redirect, visit...)
	e.HEAD("/:slug/", h.redirect, visit...)
	e.Match([]string{http.MethodGet, http.MethodHead}, "/:slug/qr", h.qr, mw...)
}

// notOnOwnPaths keeps POST /{slug} (a password form) off the one-segment paths e
// already serves, /live or /health say: Echo's router falls back to it for a method
// they do not take, which would answer 404 for an unknown link where HTTP says 405.
// It reads e's routes as they are when called, so Register calls it last.
func notOnOwnPaths(e *echo.Echo, next echo.HandlerFunc) echo.HandlerFunc {
	methods := map[string][]string{}
	for _, r := range e.Routes() {
		if name, ok := strings.CutPrefix(r.Path, "/"); ok && name != "" && !strings.ContainsAny(name, "/:*") {
			if !slices.Contains(methods[name], r.Method) {
				methods[name] = append(methods[name], r.Method)
			}
		}
	}
	allow := make(map[string]string, len(methods))
	for name, ms := range methods {
		if !slices.Contains(ms, http.MethodPost) {
			ms = append(ms, http.MethodOptions) // as Echo's own 405 lists it
			slices.Sort(ms)
			allow[name] = strings.Join(ms, ", ")
		}
	}
	return func(c echo.Context) error {
		if a, ok := allow[c.Param("slug")]; ok {
			c.Response().Header().Set(echo.HeaderAllow, a)
			return echo.ErrMethodNotAllowed
		}
		return next(c)
	}
}

// fallbacksFor picks the fallbacks of the request's domain.
func (h *Handler) fallbacksFor(r *http.Request) Fallbacks {
	if h.domains == nil {
		return h.fallbacks
	}
	d := h.domains.ForHost(h.host(r))
	return Fallbacks{Root: d.RootRedirect, NotFound: d.NotFoundRedirect, Expired: d.ExpiredRedirect}
}

// baseURLFor is the public origin of the request's domain.
func (h *Handler) baseURLFor(r *http.Request) string {
	if h.domains == nil {
		return h.baseURL
	}
	return h.domains.ForHost(h.host(r)).BaseURL
}

// host is the host the visitor asked for: X-Forwarded-Host when a trusted proxy
// passed the request on (its first value: the one the client sent), else Host. From
// anyone else X-Forwarded-Host is ignored, so a visitor cannot pick another domain's
// link by a header.
func (h *Handler) host(r *http.Request) string {
	if len(h.trusted) > 0 {
		if v := r.Header.Get("X-Forwarded-Host"); v != "" && h.peerTrusted(r.RemoteAddr) {
			if i := strings.IndexByte(v, ','); i >= 0 {
				v = v[:i]
			}
			return strings.TrimSpace(v)
		}
	}
	return r.Host
}

// keyOf names the link a request asks for: its domain and slug.
func (h *Handler) keyOf(c echo.Context) linkKey {
	k := linkKey{domain: defaultDomain, slug: c.Param("slug")}
	if h.domains != nil {
		k.domain = h.domains.ForHost(h.host(c.Request())).ID
	}
	return k
}

func (h *Handler) redirect(c echo.Context) error {
	slug := h.keyOf(c)
	t, o, err := h.resolve(c.Request().Context(), slug)
	if err != nil {
		return h.lookupFailed(c, err)
	}
	if o != found {
		return h.unavailable(c, o, t)
	}
	if t.password {
		return h.passwordForm(c, slug.slug, http.StatusOK, "")
	}
	return h.follow(c, slug, t)
}

// resolve maps a slug to its target and what it found. Only a failing lookup is an
// error; see lookupFailed for how to answer it.
func (h *Handler) resolve(ctx context.Context, slug linkKey) (target, outcome, error) {
	if !links.ValidSlugSyntax(slug.slug) {
		return target{}, notFound, nil
	}
	t, err := h.cache.resolve(ctx, slug)
	if err != nil {
		// Stale if error: the link as this instance last knew it beats no answer while
		// PostgreSQL is down, but never a link known to be unfollowable.
		st, ok := h.cache.stale(slug)
		if !ok || ctx.Err() != nil || st.expired(h.now()) || st.usedUp() {
			return t, found, err
		}
		h.cache.servedStale(slug, err)
		return st, found, nil
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

// lookupFailed answers a failed lookup: the context's error when the client left
// (which the app does not count as a failure), else a 503 with Retry-After, as a page
// for browsers (see failed). PostgreSQL too slow or out of reach is a passing state
// to the visitor, not a broken link: a 500 would tell crawlers and caches otherwise.
func (h *Handler) lookupFailed(c echo.Context, err error) error {
	if c.Request().Context().Err() != nil {
		h.metrics.redirects.WithLabelValues("499").Inc()
		return err
	}
	c.Response().Header().Set("Retry-After", "1")
	// The cause is logged, never shown.
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	} else {
		err = fmt.Errorf("%w: %w", ErrLookupFailed, err)
	}
	return h.failed(err)
}

// follow answers with the target in the link's status, after taking the click from
// the link's limit and handing it to ingest. HEAD only looks: it takes and records
// nothing.
func (h *Handler) follow(c echo.Context, slug linkKey, t target) error {
	r := c.Request()
	if r.Method != http.MethodHead {
		if t.maxClicks != 0 {
			gen := h.cache.gen.Load()
			ok, err := h.takeClick(r.Context(), t.id)
			if err != nil {
				if r.Context().Err() == nil { // a visitor who left is not an error
					h.logger.Error("take click", "slug", slug.slug, "domain_id", slug.domain, "err", err)
				}
				return h.failed(ErrLimitDown)
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
	var err error
	switch o {
	case notFound:
		to, err = fb.NotFound, ErrNotFound
	case deleted:
		to, err = fb.Expired, ErrGone
	case expired:
		to, err = cmp.Or(t.expiredURL, fb.Expired), ErrExpired
	case limitReached:
		to, err = cmp.Or(t.expiredURL, fb.Expired), ErrLimitReached
	default:
		return fmt.Errorf("redirect: unexpected outcome %d", o)
	}
	if to != "" {
		return h.fallback(c, to)
	}
	return h.failed(err)
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

// visitorPages answers every error of a visitor's route, the handler's and mw's (a
// rate limit's 429), with hop's page when a browser asks; other clients get the problem
// the app's error handler renders, and which it logs when it is a 5xx.
func (h *Handler) visitorPages(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil || c.Response().Committed || !prefersHTML(c.Request().Header.Get("Accept")) {
			return err
		}
		p := h.describe(err)
		if p.Status >= http.StatusInternalServerError {
			h.logger.Error("redirect failed", "method", c.Request().Method, "err", err)
		}
		return h.errorPage(c, p, err)
	}
}

// failed counts a redirect that could not be answered with its target and returns err,
// which visitorPages answers.
func (h *Handler) failed(err error) error {
	h.metrics.redirectsFailed(h.describe(err).Status).Inc()
	return err
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
	// Campaign parameters are kept whether or not the link forwards its query: they
	// say how the visitor arrived, not where the visitor goes.
	if r.URL.RawQuery != "" {
		c := campaignOf(r.URL.RawQuery)
		ev.UTMSource, ev.UTMMedium, ev.UTMCampaign = c.source, c.medium, c.name
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

// unlock handles the password form of a protected link. The password is read only
// from a small form body. Each check is bounded three ways before bcrypt runs: a few
// at a time in this process (more are refused at once), a few wrong answers per
// client address, and a few per link from all addresses together; a right answer
// gives its attempt back.
func (h *Handler) unlock(c echo.Context) error {
	slug := h.keyOf(c)
	t, o, err := h.resolve(c.Request().Context(), slug)
	if err != nil {
		return h.lookupFailed(c, err)
	}
	if o != found {
		return h.unavailable(c, o, t)
	}
	if !t.password {
		return h.follow(c, slug, t)
	}
	form := slug.slug
	pw, err := readPassword(c)
	if err != nil {
		return h.failed(err)
	}
	select {
	case h.checks <- struct{}{}:
		defer func() { <-h.checks }()
	default:
		return h.tooMany(c, form, time.Second, "Too many password checks are running right now. Try again in a moment.")
	}
	ctx := c.Request().Context()
	client, link := "ip:"+c.RealIP(), "link:"+strconv.FormatInt(t.id, 10)
	if h.clientTr != nil {
		if retry, ok := h.clientTr.Hit(ctx, client); !ok {
			return h.tooMany(c, form, retry, "Too many wrong passwords from your address. Try again later.")
		}
	}
	if h.linkTry != nil {
		if retry, ok := h.linkTry.Hit(ctx, link); !ok {
			if h.clientTr != nil {
				h.clientTr.Undo(ctx, client) // this link refused it; it was no guess
			}
			return h.tooMany(c, form, retry, "Too many wrong passwords for this link. Try again later.")
		}
	}
	l, err := h.cache.find(ctx, slug)
	if err != nil {
		return h.lookupFailed(c, err)
	}
	if !links.CheckPassword(l.PasswordHash, pw) {
		return h.passwordForm(c, form, http.StatusUnauthorized, wrongPassword)
	}
	if h.clientTr != nil {
		h.clientTr.Undo(ctx, client)
	}
	if h.linkTry != nil {
		h.linkTry.Undo(ctx, link)
	}
	return h.follow(c, slug, t)
}

// readPassword reads the password from the form body only: a password in the query
// string would end up in logs and browser history. The body must be a small
// urlencoded form, so no upload is ever spooled to disk or held in memory.
func readPassword(c echo.Context) (string, error) {
	r := c.Request()
	mt, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	if err != nil || mt != echo.MIMEApplicationForm {
		return "", errFormType
	}
	if r.ContentLength > maxForm {
		return "", errFormSize
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", errFormSize
		}
		return "", errFormBad
	}
	return r.PostForm.Get("password"), nil
}

// tooMany answers the password form again with 429 and Retry-After.
func (h *Handler) tooMany(c echo.Context, slug string, retry time.Duration, msg string) error {
	c.Response().Header().Set("Retry-After", strconv.Itoa(max(int(retry/time.Second), 1)))
	return h.passwordForm(c, slug, http.StatusTooManyRequests, msg)
}
