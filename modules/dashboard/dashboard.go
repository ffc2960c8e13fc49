// Package dashboard is hop's built-in web UI at /dashboard: server-rendered pages over
// the same links and stats the REST API serves, behind a session sign-in with an API
// key. It is not on the click path; it reads what the aggregator has rolled up and
// manages links, domains and webhooks through their modules' own methods, each behind
// a small interface declared here.
// Templates, CSS and JS are embedded; nothing is loaded from a CDN.
package dashboard

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/stats"
)

//go:embed assets
var assets embed.FS

// DefaultSessionTTL is how long a sign-in lasts when Config.SessionTTL is zero.
const DefaultSessionTTL = 12 * time.Hour

// Config configures the dashboard.
type Config struct {
	// BaseURL is hop's public origin. Its scheme decides whether the session cookie is
	// Secure, and its host is accepted in Origin/Referer checks besides the request's Host.
	BaseURL string
	// SessionTTL is how long a sign-in lasts; DefaultSessionTTL when zero.
	SessionTTL time.Duration
	// BaseURLFromRequest shows short URLs on the origin the dashboard is visited on,
	// for when no public origin was configured and BaseURL is only a default.
	BaseURLFromRequest bool
	// LoginLimit, when set, runs on POST /dashboard/login only (for a rate limiter
	// against key guessing). It may return errors; they render as HTML error pages.
	LoginLimit echo.MiddlewareFunc
	// Describe is app's error table: the status and words of a failure the dashboard
	// shows as a page.
	Describe problem.Describe
	// Webhooks, when set, adds the webhook management pages under /dashboard/webhooks.
	Webhooks WebhookService
	// Domains, when set, adds the domain management pages under /dashboard/domains
	// and, once there is more than the default domain, a domain picker on the create
	// forms and a domain column and filter in the links list.
	Domains DomainService
}

// LinkService reads, creates, edits and deletes links: the links module's Service. A
// link is named by its domain's host ("" is the default domain) and its slug. Errors
// the user can fix (validation, a taken slug, a bad cursor, an unknown slug) are
// errors app's error table answers with a 4xx status; the dashboard shows their
// detail. Anything else is an internal error.
type LinkService interface {
	List(ctx context.Context, q links.ListQuery) (links.Page, error)
	Get(ctx context.Context, host, slug string) (links.Link, error)
	Create(ctx context.Context, n links.NewLink) (links.Link, error)
	Update(ctx context.Context, host, slug string, p links.Patch) (links.Link, error)
	Delete(ctx context.Context, host, slug string) error
}

// StatsService reads analytics: the stats module's Reader. Errors follow the
// LinkService convention (a bad range is a 400 problem, an unknown slug 404, a
// deleted link 410).
type StatsService interface {
	LinkStats(ctx context.Context, host, slug string, r stats.Range) (stats.LinkStats, error)
	Overview(ctx context.Context, host string, r stats.Range) (stats.Overview, error)
	RecentHours(ctx context.Context, n int) ([]stats.HourStats, error)
}

// KeyVerifier checks an API key and returns its id. A wrong or revoked key is a
// failure app's error table answers with a 4xx (apikey.ErrUnauthorized); other errors are internal.
type KeyVerifier interface {
	Verify(ctx context.Context, key string) (int64, error)
}

// Handler serves the dashboard.
type Handler struct {
	describe problem.Describe
	links    LinkService
	stats    StatsService
	webhooks WebhookService // nil: no webhook pages
	domains  DomainService  // nil: one domain, no domain pages
	keys     KeyVerifier
	sessions *sessionStore
	pages    map[string]*template.Template
	static   map[string]staticFile
	cssURL   string
	jsURL    string
	ttl      time.Duration
	secure   bool     // session cookie Secure attribute
	origins  []string // hosts accepted in Origin/Referer
	base     string   // BaseURL without a trailing slash
	defHost  string   // the default domain's host: BaseURL's
	fromReq  bool     // Config.BaseURLFromRequest
	login    echo.MiddlewareFunc
	logger   *slog.Logger
	now      func() time.Time
}

// New returns the dashboard handler. Sessions are kept in pool's dashboard_sessions
// table, which joins api_keys so a revoked key ends its sessions at once.
func New(cfg Config, ls LinkService, ss StatsService, keys KeyVerifier, pool *pgxpool.Pool, logger *slog.Logger) (*Handler, error) {
	switch {
	case ls == nil:
		return nil, errors.New("dashboard: nil LinkService")
	case ss == nil:
		return nil, errors.New("dashboard: nil StatsService")
	case keys == nil:
		return nil, errors.New("dashboard: nil KeyVerifier")
	case pool == nil:
		return nil, errors.New("dashboard: nil pool")
	}
	if cfg.SessionTTL < 0 {
		return nil, fmt.Errorf("dashboard: negative session TTL %s", cfg.SessionTTL)
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("dashboard: base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		describe: cfg.Describe,
		links:    ls,
		stats:    ss,
		webhooks: cfg.Webhooks,
		domains:  cfg.Domains,
		keys:     keys,
		sessions: &sessionStore{pool: pool},
		ttl:      cmp.Or(cfg.SessionTTL, DefaultSessionTTL),
		secure:   base.Scheme == "https",
		origins:  []string{strings.ToLower(base.Host)},
		base:     strings.TrimRight(cfg.BaseURL, "/"),
		defHost:  defaultHost(base),
		fromReq:  cfg.BaseURLFromRequest,
		login:    cfg.LoginLimit,
		logger:   logger.With("module", "dashboard"),
		now:      time.Now,
	}
	if h.static, err = loadStatic(); err != nil {
		return nil, err
	}
	h.cssURL = staticPrefix + "style.css?v=" + h.static["style.css"].etag
	h.jsURL = staticPrefix + "app.js?v=" + h.static["app.js"].etag
	if h.pages, err = loadPages(template.FuncMap{"linkpath": h.linkPath}); err != nil {
		return nil, err
	}
	return h, nil
}

// defaultHost is the default domain's host as links name it: lower-cased, without the
// port or a trailing dot, and an IPv6 address in brackets, as a Host header has it.
func defaultHost(base *url.URL) string {
	h := strings.TrimSuffix(strings.ToLower(base.Hostname()), ".")
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return h
}

// Register adds the dashboard routes, all under /dashboard. mw (a request log, say)
// applies to every one of them; Config.LoginLimit to the sign-in POST only. Errors,
// including those mw returns, are answered with HTML pages, not problem JSON.
func (h *Handler) Register(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	// htmlErrors runs twice: inside mw, so a middleware that renders errors itself (the
	// request log with HandleError) sees the finished HTML page, and outside mw, for the
	// errors mw returns.
	with := func(own ...echo.MiddlewareFunc) []echo.MiddlewareFunc {
		chain := append([]echo.MiddlewareFunc{h.htmlErrors, h.headers}, mw...)
		return append(append(chain, h.htmlErrors), own...)
	}
	get := []string{http.MethodGet, http.MethodHead}
	login := with(h.guardPost(maxLogin))
	if h.login != nil {
		login = append(login, h.login)
	}
	e.Match(get, staticPrefix+"*", h.serveStatic, with()...)
	e.Match(get, "/dashboard/login", h.loginForm, with()...)
	e.POST("/dashboard/login", h.loginSubmit, login...)
	// Signed-in forms are read only once the session is known.
	e.POST("/dashboard/logout", h.logout, with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)...)
	e.Match(get, "/dashboard", h.overview, with(h.authenticated)...)
	e.Match(get, "/dashboard/", h.slashRedirect, with()...)
	e.POST("/dashboard/links", h.createLink, with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)...)
	e.Match(get, "/dashboard/new", h.newLinkPage, with(h.authenticated)...)
	e.Match(get, "/dashboard/links/:slug", h.linkPage, with(h.authenticated)...)
	e.Match(get, "/dashboard/links/:slug/edit", h.editPage, with(h.authenticated)...)
	e.POST("/dashboard/links/:slug", h.updateLink, with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)...)
	e.Match(get, "/dashboard/links/:slug/delete", h.deletePage, with(h.authenticated)...)
	e.POST("/dashboard/links/:slug/delete", h.deleteLink, with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)...)
	e.Match(get, "/dashboard/links/:slug/qr", h.qr, with(h.authenticated)...)
	if h.webhooks != nil {
		h.registerWebhooks(e, with)
	}
	if h.domains != nil {
		h.registerDomains(e, with)
	}
	e.RouteNotFound("/dashboard/*", h.notFound, with()...)
}
