// Package dashboard is hop's built-in web UI at /dashboard: server-rendered pages over
// the same links and stats the REST API serves, behind a session sign-in with an API
// key. It is not on the click path; it reads what the aggregator has rolled up and
// creates links through the links module, both through small interfaces declared here.
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
	"net/url"
	"strings"
	"time"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
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
}

// Link is a short link as the dashboard shows it.
type Link struct {
	Slug           string
	ShortURL       string
	OriginalURL    string
	Tags           []string
	TotalClicks    int64
	HasPassword    bool
	ExpiresAt      *time.Time
	CreatedAt      time.Time
	Status         string // StatusActive, StatusExpired or StatusLimitReached
	RedirectStatus int
	MaxClicks      *int64
	ClicksUsed     int64 // what MaxClicks counts
	ForwardQuery   bool
	ExpiredURL     string // "" when none
}

// A link's status, as the links module reports it.
const (
	StatusActive       = "active"
	StatusExpired      = "expired"
	StatusLimitReached = "limit_reached"
)

// ListQuery asks for one page of live links, newest first. Cursor is the opaque
// NextCursor of the previous page; Q matches slug or URL; Tag filters by one tag.
type ListQuery struct {
	Limit  int
	Cursor string
	Q      string
	Tag    string
}

// LinkPage is one page of links; NextCursor is empty on the last page.
type LinkPage struct {
	Links      []Link
	NextCursor string
}

// NewLink is what the "new link" form submits: every option a link is created with.
// Empty Slug means generate one; zero values are the links module's defaults.
type NewLink struct {
	URL            string
	Slug           string
	Tags           []string
	ExpiresAt      *time.Time
	MaxClicks      *int64
	Password       string
	RedirectStatus int
	ForwardQuery   bool
	ExpiredURL     string
}

// LinkEdit is what the edit form submits: every setting of the link as it should be
// from now on. Password is nil to keep the current one, "" to remove it.
type LinkEdit struct {
	URL            string
	Tags           []string
	ExpiresAt      *time.Time
	MaxClicks      *int64
	Password       *string
	RedirectStatus int
	ForwardQuery   bool
	ExpiredURL     string
}

// Range is a stats range as the user entered it: inclusive YYYY-MM-DD dates and an
// IANA zone, each empty for the service's default (the 30 days ending today, UTC).
// Limit caps the breakdowns; 0 means the service's default.
type Range struct {
	Start, End, TZ string
	Limit          int
}

// Day is one date of a daily series.
type Day struct {
	Date           string // YYYY-MM-DD
	Clicks         int64
	UniqueVisitors int64
}

// Hour is one hour of an hourly series: its start (RFC 3339, in the range's zone),
// human clicks and bot clicks.
type Hour struct {
	Hour      string
	Clicks    int64
	BotClicks int64
}

// LinkStats is one link's analytics over a range. Breakdown maps hold the top values
// plus "other".
type LinkStats struct {
	Start, End, TZ string
	TotalClicks    int64
	UniqueVisitors int64
	BotClicks      int64
	Daily          []Day
	Countries      map[string]int64
	Referers       map[string]int64
	Browsers       map[string]int64
	OS             map[string]int64
	Devices        map[string]int64
	// Campaign parameters of the short link's query; "(none)" counts clicks without.
	UTMSources, UTMMediums, UTMCampaigns map[string]int64
	// Hourly is the last 24 hours or more, oldest first, the current hour last; the
	// dashboard charts the last 24.
	Hourly []Hour
}

// Overview is every link together over a range.
type Overview struct {
	Start, End, TZ string
	TotalClicks    int64
	UniqueVisitors int64
	BotClicks      int64
	Links          int64
	Daily          []Day
	TopLinks       []TopLink
	// Hourly is every link's last 24 hours or more (UTC), as LinkStats.Hourly.
	Hourly []Hour
}

// TopLink is one entry of the overview's top links.
type TopLink struct {
	Slug   string
	Clicks int64
}

// LinkService reads, creates, edits and deletes links. Errors the user can fix
// (validation, a taken slug, a bad cursor, an unknown slug) are errors app's error
// table answers with a 4xx status;
// the dashboard shows their detail. Anything else is an internal error.
type LinkService interface {
	List(ctx context.Context, q ListQuery) (LinkPage, error)
	Get(ctx context.Context, slug string) (Link, error)
	Create(ctx context.Context, n NewLink) (Link, error)
	Update(ctx context.Context, slug string, e LinkEdit) (Link, error)
	Delete(ctx context.Context, slug string) error
}

// StatsService reads analytics; errors follow the LinkService convention (a bad range
// is a 400 problem, an unknown slug 404, a deleted link 410).
type StatsService interface {
	LinkStats(ctx context.Context, slug string, r Range) (LinkStats, error)
	Overview(ctx context.Context, r Range) (Overview, error)
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
	fromReq  bool     // Config.BaseURLFromRequest
	login    echo.MiddlewareFunc
	logger   *slog.Logger
	now      func() time.Time
}

// New returns the dashboard handler. Sessions are kept in pool's dashboard_sessions
// table, which joins api_keys so a revoked key ends its sessions at once.
func New(cfg Config, links LinkService, stats StatsService, keys KeyVerifier, pool *pgxpool.Pool, logger *slog.Logger) (*Handler, error) {
	switch {
	case links == nil:
		return nil, errors.New("dashboard: nil LinkService")
	case stats == nil:
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
		links:    links,
		stats:    stats,
		webhooks: cfg.Webhooks,
		keys:     keys,
		sessions: &sessionStore{pool: pool},
		ttl:      cmp.Or(cfg.SessionTTL, DefaultSessionTTL),
		secure:   base.Scheme == "https",
		origins:  []string{strings.ToLower(base.Host)},
		base:     strings.TrimRight(cfg.BaseURL, "/"),
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
	if h.pages, err = loadPages(); err != nil {
		return nil, err
	}
	return h, nil
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
	login := with(h.guardPost(maxLogin))
	if h.login != nil {
		login = append(login, h.login)
	}
	e.GET(staticPrefix+"*", h.serveStatic, with()...)
	e.GET("/dashboard/login", h.loginForm, with()...)
	e.POST("/dashboard/login", h.loginSubmit, login...)
	// Signed-in forms are read only once the session is known.
	e.POST("/dashboard/logout", h.logout, with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)...)
	e.GET("/dashboard", h.overview, with(h.authenticated)...)
	e.GET("/dashboard/", h.slashRedirect, with()...)
	e.POST("/dashboard/links", h.createLink, with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)...)
	e.GET("/dashboard/new", h.newLinkPage, with(h.authenticated)...)
	e.GET("/dashboard/links/:slug", h.linkPage, with(h.authenticated)...)
	e.GET("/dashboard/links/:slug/edit", h.editPage, with(h.authenticated)...)
	e.POST("/dashboard/links/:slug", h.updateLink, with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)...)
	e.GET("/dashboard/links/:slug/delete", h.deletePage, with(h.authenticated)...)
	e.POST("/dashboard/links/:slug/delete", h.deleteLink, with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)...)
	if h.webhooks != nil {
		h.registerWebhooks(e, with)
	}
	e.RouteNotFound("/dashboard/*", h.notFound, with()...)
}
