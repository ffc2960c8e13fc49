// Package redirect answers GET /{slug}: the hot path of hop. It resolves the slug
// through a client-side cache, checks expiry, limits and passwords, hands a click event
// to ingest — answering only once that hand-off is durable — and sends the 3xx.
// Nothing here logs per request except errors.
package redirect

import (
	"context"
	"html/template"
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

// Config configures the redirect handler.
type Config struct {
	RedisPrefix    string         // key prefix shared with the rest of hop
	BaseURL        string         // public origin, for QR codes of short URLs
	TrustedProxies []netip.Prefix // peers whose CF-IPCountry header is believed
}

// noStore is shared by every response; net/http only reads header values.
var noStore = []string{"no-store"}

// Errors rendered as problems.
var (
	errNotFound = problem.New(http.StatusNotFound, "link-not-found", "no link has this slug")
	errGone     = problem.New(http.StatusGone, "link-gone", "this link was deleted or has expired")
)

// Handler serves redirects.
type Handler struct {
	cache   *cache
	finder  Finder
	pub     Publisher
	trusted []netip.Prefix
	baseURL string
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
}

// New returns a redirect handler. rdb may be nil (no Redis: in-process cache).
func New(cfg Config, rdb rueidis.Client, finder Finder, pub Publisher, reg prometheus.Registerer, logger *slog.Logger) (*Handler, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Handler{
		cache:   &cache{rdb: rdb, prefix: cfg.RedisPrefix, finder: finder, metrics: m},
		finder:  finder,
		pub:     pub,
		trusted: cfg.TrustedProxies,
		baseURL: strings.TrimRight(cfg.BaseURL, "/"),
		logger:  logger.With("module", "redirect"),
		metrics: m,
		now:     time.Now,
	}, nil
}

// Invalidated takes Redis' client-side caching invalidation messages; the app passes it
// to rueidis as ClientOption.OnInvalidations. It must be fast: it runs on rueidis' reader.
func (h *Handler) Invalidated(msgs []rueidis.RedisMessage) { h.cache.invalidated(msgs) }

// Invalidate drops slug from every instance's cache (links.Invalidator).
func (h *Handler) Invalidate(ctx context.Context, slug string) error {
	return h.cache.Invalidate(ctx, slug)
}

// Register adds the redirect routes; mw (the rate limiter) applies to them only.
func (h *Handler) Register(e *echo.Echo, mw ...echo.MiddlewareFunc) {
	e.GET("/:slug", h.redirect, mw...)
	e.HEAD("/:slug", h.redirect, mw...)
	e.POST("/:slug", h.unlock, mw...)
	e.GET("/:slug/qr", h.qr, mw...)
}

func (h *Handler) redirect(c echo.Context) error {
	slug := c.Param("slug")
	t, err := h.resolve(c.Request().Context(), slug)
	if err != nil {
		return err
	}
	if t.password {
		return h.passwordForm(c, slug, http.StatusOK, "")
	}
	return h.follow(c, t)
}

// resolve maps a slug to a followable target or the problem to answer.
func (h *Handler) resolve(ctx context.Context, slug string) (target, error) {
	if !links.ValidSlugSyntax(slug) {
		h.metrics.redirects.WithLabelValues("404").Inc()
		return target{}, errNotFound
	}
	t, err := h.cache.resolve(ctx, slug)
	if err != nil {
		h.metrics.redirects.WithLabelValues("500").Inc()
		return t, err
	}
	switch {
	case t.state == stateNotFound:
		h.metrics.redirects.WithLabelValues("404").Inc()
		return t, errNotFound
	case t.state == stateGone || t.expired(h.now()):
		h.metrics.redirects.WithLabelValues("410").Inc()
		return t, errGone
	}
	return t, nil
}

// follow records the click (not for HEAD) and answers with the link's status.
func (h *Handler) follow(c echo.Context, t target) error {
	r := c.Request()
	status := t.status
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther // after the password form: GET the target
	}
	if r.Method != http.MethodHead {
		h.pub.Publish(r.Context(), h.event(c, t))
	}
	hdr := c.Response().Header()
	hdr["Location"] = t.location
	hdr["Cache-Control"] = noStore
	c.Response().WriteHeader(status)
	h.metrics.redirectsByStatus[status].Inc()
	return nil
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
	t, err := h.resolve(c.Request().Context(), slug)
	if err != nil {
		return err
	}
	if !t.password {
		return h.follow(c, t)
	}
	l, err := h.finder.FindBySlug(c.Request().Context(), slug)
	if err != nil {
		return err
	}
	if !links.CheckPassword(l.PasswordHash, c.FormValue("password")) {
		return h.passwordForm(c, slug, http.StatusUnauthorized, "Wrong password.")
	}
	return h.follow(c, t)
}

var passwordPage = template.Must(template.New("pw").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Protected link</title>
<style>body{font:16px system-ui,sans-serif;max-width:24rem;margin:15vh auto;padding:0 1rem}input,button{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;margin:.25rem 0}.err{color:#b00020}</style>
</head><body><h1>This link is protected</h1>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="post" action="/{{.Slug}}"><label for="pw">Password</label>
<input id="pw" name="password" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Continue</button></form></body></html>`))

func (h *Handler) passwordForm(c echo.Context, slug string, status int, msg string) error {
	hdr := c.Response().Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().WriteHeader(status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	return passwordPage.Execute(c.Response(), struct{ Slug, Error string }{slug, msg})
}
