package dashboard

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

const (
	cookieName = "hop_session"
	cookiePath = "/dashboard"
	ctxSession = "dashboard_session"
	maxForm    = 64 << 10 // a signed-in form: a link's URL may be 8 KiB
	maxLogin   = 4 << 10  // the sign-in form, read before anyone is known
	maxKeyLen  = 512
	pageSize   = 20
	refreshSec = 10
)

// Errors the dashboard answers with itself; they render as HTML error pages, with the
// status and words of app's error table.
var (
	ErrForbiddenOrigin = errors.New("form sent from another site")
	ErrBadCSRF         = errors.New("form token missing or expired")
	errFormType        = problem.With(problem.ErrUnsupportedMedia, "forms must be sent as application/x-www-form-urlencoded")
)

// contentSecurityPolicy allows only the dashboard's own CSS, JS and images (the QR code
// and, as data: URIs, nothing else); no inline script or style, no framing.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// headers sets the security headers on every dashboard response. Pages are never
// cached: they show live numbers and carry CSRF tokens. Static assets override it.
func (h *Handler) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		hd := c.Response().Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Cache-Control", "no-store")
		return next(c)
	}
}

// htmlErrors renders every error of a dashboard route, including those of the app's
// middleware, as an HTML page instead of the API's problem JSON. Unknown errors are
// logged here and shown as a generic 500.
func (h *Handler) htmlErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if err == nil {
			return nil
		}
		if c.Request().Context().Err() != nil && errors.Is(err, context.Canceled) {
			return err // the client has gone: nothing to render, nothing failed here
		}
		status, msg := http.StatusInternalServerError, "Something went wrong on our side. It has been logged; please try again."
		var he *echo.HTTPError
		switch p := h.describe(err); {
		case p.Status < 500 && p.Type != "about:blank":
			status, msg = p.Status, p.Detail
		case errors.As(err, &he) && he.Code < 500:
			status, msg = he.Code, http.StatusText(he.Code)
			if he.Code == http.StatusNotFound {
				msg = "There is no such page."
			}
		default:
			h.logger.Error("dashboard request failed", "method", c.Request().Method, "route", c.Path(), "err", err)
		}
		if c.Response().Committed {
			return nil
		}
		if status == http.StatusTooManyRequests {
			msg = "Too many attempts. Wait a minute and try again."
		}
		if rerr := h.render(c, status, "error", view{Title: statusTitle(status), Data: errorPage{Status: status, Title: statusTitle(status), Message: msg}}); rerr != nil {
			h.logger.Error("render dashboard error page", "err", rerr)
			return c.String(status, statusTitle(status))
		}
		return nil
	}
}

// guardPost protects every form submission: it refuses a cross-site Origin (or,
// without Origin, Referer), then reads the body, which must be an urlencoded form of
// at most limit bytes (no upload is ever spooled). Together with the SameSite=Strict
// cookie and the CSRF token this stops forged forms, the sign-in form included.
func (h *Handler) guardPost(limit int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if o := r.Header.Get("Origin"); o != "" {
				if !h.sameHost(o, r.Host) {
					return ErrForbiddenOrigin
				}
			} else if ref := r.Header.Get("Referer"); ref != "" && !h.sameHost(ref, r.Host) {
				return ErrForbiddenOrigin
			}
			if mt, _, err := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType)); err != nil || mt != echo.MIMEApplicationForm {
				return errFormType
			}
			tooLarge := problem.With(problem.ErrTooLarge, "the form is larger than %d KiB", limit>>10)
			if r.ContentLength > limit {
				return tooLarge
			}
			r.Body = http.MaxBytesReader(c.Response(), r.Body, limit)
			if err := r.ParseForm(); err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					return tooLarge
				}
				return problem.Invalid("the form could not be read")
			}
			return next(c)
		}
	}
}

// sameHost reports whether the origin or referer raw names this server: the request's
// Host or the configured base URL's. "null" and unparseable values do not.
func (h *Handler) sameHost(raw, reqHost string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	host := strings.ToLower(u.Host)
	if host == strings.ToLower(reqHost) {
		return true
	}
	for _, o := range h.origins {
		if host == o {
			return true
		}
	}
	return false
}

// currentSession returns the live session named by the request's cookie.
func (h *Handler) currentSession(c echo.Context) (session, error) {
	return h.requestSession(c.Request().Context(), c.Request())
}

// requestSession returns the live session named by r's cookie; errNoSession if none.
func (h *Handler) requestSession(ctx context.Context, r *http.Request) (session, error) {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, errNoSession
	}
	token, ok := parseToken(ck.Value)
	if !ok {
		return session{}, errNoSession
	}
	return h.sessions.lookup(ctx, token, h.now())
}

// SignedIn reports whether r still carries a live session (not signed out, expired,
// or ended by revoking its key); an error when that could not be found out.
func (h *Handler) SignedIn(ctx context.Context, r *http.Request) (bool, error) {
	_, err := h.requestSession(ctx, r)
	if errors.Is(err, errNoSession) {
		return false, nil
	}
	return err == nil, err
}

// authenticated lets signed-in requests through and sends everyone else to sign in,
// dropping a stale cookie on the way.
func (h *Handler) authenticated(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		s, err := h.currentSession(c)
		if errors.Is(err, errNoSession) {
			if _, cerr := c.Cookie(cookieName); cerr == nil {
				h.clearCookie(c)
			}
			return c.Redirect(http.StatusSeeOther, signInAgain(c.Request()))
		}
		if err != nil {
			return err
		}
		c.Set(ctxSession, s)
		return next(c)
	}
}

// signInAgain is where a request without a live session is sent: the sign-in page,
// which leads back to the page asked for. A form sent after the session ended (12 h
// after signing in, or signed out elsewhere) cannot be kept, so the page says nothing
// was saved and leads back to the page the form was on: its Referer, which browsers
// send to this origin (Referrer-Policy: same-origin).
func signInAgain(r *http.Request) string {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return "/dashboard/login?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	if r.URL.Path == "/dashboard/logout" {
		return "/dashboard/login"
	}
	v := url.Values{"unsaved": {"1"}}
	// The Referer names the public host, which a proxy may have rewritten into
	// X-Forwarded-Host; either will do, as safeNext keeps only a dashboard path.
	ref, err := url.Parse(r.Referer())
	if err == nil && ref.Path != "" && (ref.Host == r.Host || ref.Host == r.Header.Get("X-Forwarded-Host")) {
		v.Set("next", safeNext(ref.RequestURI()))
	}
	return "/dashboard/login?" + v.Encode()
}

// checkCSRF refuses a form without this session's CSRF token.
func (h *Handler) checkCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		s, ok := c.Get(ctxSession).(session)
		if !ok || !s.validCSRF(c.Request().PostForm.Get("csrf")) {
			return ErrBadCSRF
		}
		return next(c)
	}
}

func (h *Handler) setCookie(c echo.Context, s session) {
	c.SetCookie(&http.Cookie{
		Name: cookieName, Value: s.cookieValue(), Path: cookiePath,
		MaxAge: int(h.ttl.Seconds()), HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode,
	})
}

func (h *Handler) clearCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{
		Name: cookieName, Value: "", Path: cookiePath,
		MaxAge: -1, HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteStrictMode,
	})
}

// safeNext returns where to go after signing in: next when it is a dashboard path on
// this site, else the overview. It never yields another origin, nor a path that
// browsers resolve outside the dashboard: dot segments, plain or escaped (%2e%2e), are
// cleaned away before the path is checked.
func safeNext(next string) string {
	for i := 0; i < len(next); i++ {
		// Printable ASCII only (a request URI is escaped) and no backslash, which
		// some browsers read as a slash.
		if c := next[i]; c <= ' ' || c > '~' || c == '\\' {
			return "/dashboard"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || strings.Contains(next, "//") {
		return "/dashboard"
	}
	p := path.Clean(u.Path) // decoded, so %2e%2e is cleaned as ..
	if p != "/dashboard" && !strings.HasPrefix(p, "/dashboard/") || strings.HasPrefix(p, "/dashboard/login") {
		return "/dashboard"
	}
	clean := (&url.URL{Path: p, RawQuery: u.RawQuery}).String()
	if strings.Contains(clean, "//") {
		return "/dashboard"
	}
	return clean
}

// loginPage is the data of the sign-in page.
type loginPage struct {
	Next    string
	Error   string
	Unsaved bool // a form was sent after the session ended
}

func (h *Handler) loginForm(c echo.Context) error {
	if _, err := h.currentSession(c); err == nil {
		return c.Redirect(http.StatusSeeOther, "/dashboard")
	} else if !errors.Is(err, errNoSession) {
		return err
	}
	return h.render(c, http.StatusOK, "login", view{Title: "Sign in",
		Data: loginPage{Next: safeNext(c.QueryParam("next")), Unsaved: c.QueryParam("unsaved") == "1"}})
}

func (h *Handler) loginSubmit(c echo.Context) error {
	form := c.Request().PostForm
	next := safeNext(form.Get("next"))
	key := strings.TrimSpace(form.Get("api_key"))
	fail := func(msg string) error {
		h.logger.Info("dashboard sign-in failed", "client_ip", c.RealIP())
		return h.render(c, http.StatusUnauthorized, "login", view{Title: "Sign in", Data: loginPage{Next: next, Error: msg}})
	}
	if key == "" {
		return fail("Enter an API key.")
	}
	if len(key) > maxKeyLen {
		return fail("This API key is not valid or has been revoked.")
	}
	ctx := c.Request().Context()
	id, err := h.keys.Verify(ctx, key)
	if err != nil && h.describe(err).Status < 500 {
		return fail("This API key is not valid or has been revoked.")
	}
	if err != nil {
		return err
	}
	s, err := h.sessions.create(ctx, id, h.now(), h.ttl)
	if err != nil {
		return err
	}
	h.setCookie(c, s)
	h.logger.Info("dashboard sign-in", "api_key_id", id, "client_ip", c.RealIP())
	return c.Redirect(http.StatusSeeOther, next)
}

func (h *Handler) logout(c echo.Context) error {
	s := c.Get(ctxSession).(session)
	if err := h.sessions.delete(c.Request().Context(), s.token); err != nil {
		return err
	}
	h.clearCookie(c)
	return c.Redirect(http.StatusSeeOther, "/dashboard/login")
}

func (h *Handler) slashRedirect(c echo.Context) error {
	return c.Redirect(http.StatusMovedPermanently, "/dashboard")
}

func (h *Handler) notFound(echo.Context) error { return echo.ErrNotFound }

func (h *Handler) serveStatic(c echo.Context) error {
	f, ok := h.static[c.Param("*")]
	if !ok {
		return echo.ErrNotFound
	}
	hd := c.Response().Header()
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("ETag", `"`+f.etag+`"`)
	if c.Request().Header.Get("If-None-Match") == `"`+f.etag+`"` {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, f.ctype, f.body)
}
