// Package redirect answers GET /{slug}: the hot path of hop. It resolves the slug
// through a client-side cache, checks expiry, limits and passwords, hands a click event
// to ingest — answering only once that hand-off is durable — and sends the 3xx.
// Nothing here logs per request except errors.
package redirect

import (
	"cmp"
	"context"
	"errors"
	"html/template"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
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

// Attempts limits password attempts per key; ratelimit.Limiter implements it. Hit
// counts an attempt before the password is checked, Undo takes it back when the
// password was right, so only wrong answers use up the limit.
type Attempts interface {
	Hit(ctx context.Context, key string) (retry time.Duration, ok bool)
	Undo(ctx context.Context, key string)
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
}

// noStore is shared by every response; net/http only reads header values.
var noStore = []string{"no-store"}

// Errors rendered as problems.
var (
	errNotFound    = problem.New(http.StatusNotFound, "link-not-found", "no link has this slug")
	errGone        = problem.New(http.StatusGone, "link-gone", "this link was deleted or has expired")
	errUnavailable = problem.New(http.StatusServiceUnavailable, "lookup-timeout", "the link could not be looked up in time; retry in a moment")
	errFormType    = problem.New(http.StatusUnsupportedMediaType, "unsupported-media-type", "the password form must be sent as application/x-www-form-urlencoded")
	errFormSize    = problem.New(http.StatusRequestEntityTooLarge, "body-too-large", "the password form is larger than 4 KiB")
	errFormBad     = problem.Invalid("the password form could not be read")
)

// maxForm bounds the password form's body; it holds one password of at most 72 bytes.
const maxForm = 4 << 10

// Handler serves redirects.
type Handler struct {
	cache    *cache
	finder   Finder
	pub      Publisher
	trusted  []netip.Prefix
	baseURL  string
	logger   *slog.Logger
	metrics  *metrics
	now      func() time.Time
	checks   chan struct{} // password checks running; its capacity is the bound
	linkTry  Attempts
	clientTr Attempts
}

// New returns a redirect handler. rdb may be nil (no Redis: in-process cache).
func New(cfg Config, rdb rueidis.Client, finder Finder, pub Publisher, reg prometheus.Registerer, logger *slog.Logger) (*Handler, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Handler{
		cache: &cache{rdb: rdb, prefix: cfg.RedisPrefix, finder: finder, metrics: m,
			lookupTimeout: cmp.Or(cfg.LookupTimeout, 2*time.Second)},
		finder:   finder,
		pub:      pub,
		trusted:  cfg.TrustedProxies,
		baseURL:  strings.TrimRight(cfg.BaseURL, "/"),
		logger:   logger.With("module", "redirect"),
		metrics:  m,
		now:      time.Now,
		checks:   make(chan struct{}, cmp.Or(cfg.PasswordChecks, max(1, runtime.GOMAXPROCS(0)/2))),
		linkTry:  cfg.LinkAttempts,
		clientTr: cfg.ClientAttempts,
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
	t, err := h.resolve(c, slug)
	if err != nil {
		return err
	}
	if t.password {
		return h.passwordForm(c, slug, http.StatusOK, "")
	}
	return h.follow(c, t)
}

// resolve maps a slug to a followable target or the problem to answer. A lookup
// that outlasts its timeout is a 503 with Retry-After; one abandoned by its client
// returns the context's error, which the app does not count as a failure.
func (h *Handler) resolve(c echo.Context, slug string) (target, error) {
	if !links.ValidSlugSyntax(slug) {
		h.metrics.redirects.WithLabelValues("404").Inc()
		return target{}, errNotFound
	}
	t, err := h.cache.resolve(c.Request().Context(), slug)
	if err != nil {
		return t, h.lookupFailed(c, err)
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

// lookupFailed counts a failed lookup and returns what to answer: a 503 with
// Retry-After when PostgreSQL was too slow, the context's error when the client left.
func (h *Handler) lookupFailed(c echo.Context, err error) error {
	switch {
	case c.Request().Context().Err() != nil:
		h.metrics.redirects.WithLabelValues("499").Inc()
		return err
	case errors.Is(err, context.DeadlineExceeded):
		h.metrics.redirects.WithLabelValues("503").Inc()
		c.Response().Header().Set("Retry-After", "1")
		p := *errUnavailable
		p.Err = err // logged, never shown
		return &p
	}
	h.metrics.redirects.WithLabelValues("500").Inc()
	return err
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

// unlock handles the password form of a protected link. The password is read only
// from a small form body. Each check is bounded three ways before bcrypt runs: a few
// at a time in this process (more are refused at once), a few wrong answers per
// client address, and a few per link from all addresses together; a right answer
// gives its attempt back.
func (h *Handler) unlock(c echo.Context) error {
	slug := c.Param("slug")
	t, err := h.resolve(c, slug)
	if err != nil {
		return err
	}
	if !t.password {
		return h.follow(c, t)
	}
	pw, err := readPassword(c)
	if err != nil {
		return err
	}
	select {
	case h.checks <- struct{}{}:
		defer func() { <-h.checks }()
	default:
		return h.tooMany(c, slug, time.Second, "Too many password checks are running right now. Try again in a moment.")
	}
	ctx := c.Request().Context()
	client, link := "ip:"+c.RealIP(), "link:"+strconv.FormatInt(t.id, 10)
	if h.clientTr != nil {
		if retry, ok := h.clientTr.Hit(ctx, client); !ok {
			return h.tooMany(c, slug, retry, "Too many wrong passwords from your address. Try again later.")
		}
	}
	if h.linkTry != nil {
		if retry, ok := h.linkTry.Hit(ctx, link); !ok {
			if h.clientTr != nil {
				h.clientTr.Undo(ctx, client) // this link refused it; it was no guess
			}
			return h.tooMany(c, slug, retry, "Too many wrong passwords for this link. Try again later.")
		}
	}
	l, err := h.cache.find(ctx, slug)
	if err != nil {
		return h.lookupFailed(c, err)
	}
	if !links.CheckPassword(l.PasswordHash, pw) {
		return h.passwordForm(c, slug, http.StatusUnauthorized, "Wrong password.")
	}
	if h.clientTr != nil {
		h.clientTr.Undo(ctx, client)
	}
	if h.linkTry != nil {
		h.linkTry.Undo(ctx, link)
	}
	return h.follow(c, t)
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
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().WriteHeader(status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	return passwordPage.Execute(c.Response(), struct{ Slug, Error string }{slug, msg})
}
