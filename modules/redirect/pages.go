package redirect

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// hop's own pages for visitors share one template and one small stylesheet in the
// dashboard's colours, inlined so a page is one response with no external assets and
// no script. The stylesheet is allowed by its hash, so the CSP stays default-src 'none'.
var (
	//go:embed assets/page.html
	pageHTML string
	//go:embed assets/page.css
	pageCSS string
	//go:embed assets/favicon.ico
	faviconICO []byte
)

// page is what the template shows.
type page struct {
	Title   string
	Code    string // "404 · Not found", empty on pages that are not errors
	Heading string
	Message string
	Form    bool   // the password form
	Action  string // where the form posts
	Error   string // shown above the form
	Next    string // the continue link after the password
	Refresh string // meta refresh content
}

// pageSet is the parsed template and the CSP that allows exactly its stylesheet.
type pageSet struct {
	tmpl *template.Template
	csp  string
}

func parsePages() (*pageSet, error) {
	css := strings.TrimSpace(pageCSS)
	if strings.Contains(css, "{{") || strings.Contains(css, "</") {
		return nil, fmt.Errorf("redirect: page.css must not contain template or tag delimiters")
	}
	sum := sha256.Sum256([]byte(css))
	t, err := template.New("page").Parse(strings.Replace(pageHTML, "/*CSS*/", css, 1))
	if err != nil {
		return nil, fmt.Errorf("redirect: parse page template: %w", err)
	}
	// form-action 'self' stays: after the password the browser gets a page, not a
	// redirect, so the target's origin never needs to be listed (see follow).
	csp := "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; img-src 'self'; " +
		"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	return &pageSet{tmpl: t, csp: csp}, nil
}

// render writes p with status and the headers every visitor page carries.
func (h *Handler) render(c echo.Context, status int, p page) error {
	hdr := c.Response().Header()
	hdr.Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	hdr["Cache-Control"] = noStore
	hdr.Set("Content-Security-Policy", h.pages.csp)
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	c.Response().WriteHeader(status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	if err := h.pages.tmpl.Execute(c.Response(), p); err != nil {
		return fmt.Errorf("render page: %w", err)
	}
	return nil
}

// errorPage shows a problem to a browser in words a visitor understands.
func (h *Handler) errorPage(c echo.Context, p problem.Problem, err error) error {
	status := p.Status
	pg := page{Code: strconv.Itoa(status) + " · " + http.StatusText(status)}
	switch {
	case errors.Is(err, ErrNotFound):
		pg.Heading, pg.Message = "Link not found", "There is no link at this address. Check it for typos, or ask whoever shared it."
	case errors.Is(err, ErrGone):
		pg.Heading, pg.Message = "Link removed", "This link was removed by its owner and no longer leads anywhere."
	case errors.Is(err, ErrExpired):
		pg.Heading, pg.Message = "Link expired", "This link has expired and no longer leads anywhere."
	case errors.Is(err, ErrLimitReached):
		pg.Heading, pg.Message = "Link no longer available", "This link has been used as many times as its owner allowed."
	case status == http.StatusTooManyRequests:
		pg.Heading, pg.Message = "Too many requests", "Many links were opened from your network in a short time. Please wait a moment and try again."
	case status >= 500:
		pg.Heading, pg.Message = "Something went wrong", "This link cannot be opened right now. Please try again in a moment."
	default:
		pg.Heading, pg.Message = http.StatusText(status), p.Detail
	}
	pg.Title = pg.Heading
	return h.render(c, status, pg)
}

// passwordForm asks for a protected link's password. The form posts back to the URL
// it was shown on, so the query string is still forwarded after the password.
func (h *Handler) passwordForm(c echo.Context, slug string, status int, msg string) error {
	action := "/" + slug
	if q := c.Request().URL.RawQuery; q != "" {
		action += "?" + q
	}
	return h.render(c, status, page{
		Title: "Protected link", Heading: "This link is protected",
		Message: "Enter the password you were given to continue.",
		Form:    true, Action: action, Error: msg,
	})
}

// continuePage sends a browser on to the target once the password was right. The
// zero-second refresh replaces this page in the history, so Back returns to the form.
func (h *Handler) continuePage(c echo.Context, location string) error {
	h.metrics.redirectsByStatus[http.StatusSeeOther].Inc()
	return h.render(c, http.StatusOK, page{
		Title: "Opening link", Heading: "Opening the link…",
		Message: "If nothing happens, use the link below.",
		Next:    location, Refresh: "0; url=" + location,
	})
}

// root answers /: the root fallback redirect, or a short page saying what this host is.
func (h *Handler) root(c echo.Context) error {
	if to := h.fallbacksFor(c.Request()).Root; to != "" {
		return h.fallback(c, to)
	}
	return h.render(c, http.StatusOK, page{
		Title: "hop short links", Heading: "This is a hop short-link host",
		Message: "Short links on this address take you to their destination. There is nothing else to see here.",
	})
}

// robotsTxt is robots.txt: by default no crawling at all, since a crawler following
// short links spends clicks and indexes targets under hop's address. allow lets
// crawlers follow short links but never reach the dashboard or the API.
func robotsTxt(allow bool) []byte {
	if !allow {
		return []byte("User-agent: *\nDisallow: /\n")
	}
	var b strings.Builder
	b.WriteString("User-agent: *\n")
	// "$" ends a path (RFC 9309), so "/links$" does not also hide a slug like "linksys".
	for _, p := range []string{"links", "dashboard", "stats", "tags", "domains", "webhooks", "live",
		"health", "metrics", "openapi.json", "api"} {
		fmt.Fprintf(&b, "Disallow: /%s$\nDisallow: /%s/\n", p, p)
	}
	b.WriteString("Disallow: /*/qr$\nAllow: /\n")
	return []byte(b.String())
}

func (h *Handler) robotsTxt(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.Blob(http.StatusOK, "text/plain; charset=utf-8", h.robots)
}

func (h *Handler) favicon(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=86400")
	return c.Blob(http.StatusOK, "image/x-icon", faviconICO)
}
