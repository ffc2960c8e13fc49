package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/modules/domains"
)

// DomainService manages short domains: the domains module's Service, which POST,
// PATCH and DELETE /domains call too. Errors follow the LinkService convention (an
// invalid host or URL is a 400, a taken host and a domain with links 409, an unknown
// one 404; the default domain cannot be changed or removed, a 409).
type DomainService interface {
	List(ctx context.Context) ([]domains.Domain, error)
	Choices() []domains.Domain
	Get(ctx context.Context, host string) (domains.Domain, error)
	Add(ctx context.Context, host, baseURL, root, notFound, expired string) (domains.Domain, error)
	Update(ctx context.Context, host string, p domains.Patch) (domains.Domain, error)
	Remove(ctx context.Context, host string) error
}

// registerDomains adds the domain pages; with is Register's middleware chain maker.
func (h *Handler) registerDomains(e *echo.Echo, with func(own ...echo.MiddlewareFunc) []echo.MiddlewareFunc) {
	get := []string{http.MethodGet, http.MethodHead}
	post := with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)
	e.Match(get, "/dashboard/domains", h.domainsPage, with(h.authenticated)...)
	e.Match(get, "/dashboard/domains/new", h.newDomainPage, with(h.authenticated)...)
	e.POST("/dashboard/domains", h.addDomain, post...)
	e.Match(get, "/dashboard/domains/:host/edit", h.editDomainPage, with(h.authenticated)...)
	e.POST("/dashboard/domains/:host", h.updateDomain, post...)
	e.Match(get, "/dashboard/domains/:host/delete", h.removeDomainPage, with(h.authenticated)...)
	e.POST("/dashboard/domains/:host/delete", h.removeDomain, post...)
}

// domainsListPage is the data of /dashboard/domains.
type domainsListPage struct {
	Domains               []domains.Domain
	Added, Saved, Removed string // the host just added, changed or removed
}

func (h *Handler) domainsPage(c echo.Context) error {
	ds, err := h.domains.List(c.Request().Context())
	if err != nil {
		return err
	}
	q := c.QueryParams()
	return h.render(c, http.StatusOK, "domains", view{Title: "Domains", Data: domainsListPage{Domains: ds,
		Added: q.Get("added"), Saved: q.Get("saved"), Removed: q.Get("removed")}})
}

// domainForm is the add or edit form as submitted (or as filled from the domain),
// shown again with its error.
type domainForm struct {
	Host, BaseURL                                   string
	RootRedirect, NotFoundRedirect, ExpiredRedirect string
	Error                                           string
}

// domainFormPage is the data of the add and edit pages; Edit is false when adding.
type domainFormPage struct {
	Form domainForm
	Edit bool
}

// readDomainForm reads the add and edit forms; the domains module validates.
func readDomainForm(v url.Values) domainForm {
	return domainForm{Host: strings.TrimSpace(v.Get("host")), BaseURL: strings.TrimSpace(v.Get("base_url")),
		RootRedirect: strings.TrimSpace(v.Get("root_redirect")), NotFoundRedirect: strings.TrimSpace(v.Get("not_found_redirect")),
		ExpiredRedirect: strings.TrimSpace(v.Get("expired_redirect"))}
}

func (h *Handler) newDomainPage(c echo.Context) error {
	return h.render(c, http.StatusOK, "domainform", view{Title: "New domain", Data: domainFormPage{}})
}

func (h *Handler) addDomain(c echo.Context) error {
	f := readDomainForm(c.Request().PostForm)
	d, err := h.domains.Add(c.Request().Context(), f.Host, f.BaseURL, f.RootRedirect, f.NotFoundRedirect, f.ExpiredRedirect)
	if pe, ok := h.userError(err); ok {
		f.Error = pe.Detail
		return h.render(c, pe.Status, "domainform", view{Title: "New domain", Data: domainFormPage{Form: f}})
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/domains?added="+url.QueryEscape(d.Host))
}

// branded reads the domain the path names; the default one is refused, as the API
// refuses to change or remove it (it is configured by HOP_BASE_URL).
func (h *Handler) branded(c echo.Context) (domains.Domain, error) {
	d, err := h.domains.Get(c.Request().Context(), c.Param("host"))
	if err != nil {
		return domains.Domain{}, err
	}
	if d.Default {
		return domains.Domain{}, domains.ErrDefaultDomain
	}
	return d, nil
}

func (h *Handler) editDomainPage(c echo.Context) error {
	d, err := h.branded(c)
	if err != nil {
		return err
	}
	f := domainForm{Host: d.Host, BaseURL: d.BaseURL, RootRedirect: d.RootRedirect,
		NotFoundRedirect: d.NotFoundRedirect, ExpiredRedirect: d.ExpiredRedirect}
	return h.render(c, http.StatusOK, "domainform", view{Title: "Edit " + d.Host, Data: domainFormPage{Form: f, Edit: true}})
}

// updateDomain sets every field the edit form shows; an empty fallback is hop's page.
func (h *Handler) updateDomain(c echo.Context) error {
	f := readDomainForm(c.Request().PostForm)
	f.Host = c.Param("host")
	d, err := h.domains.Update(c.Request().Context(), f.Host, domains.Patch{BaseURL: &f.BaseURL,
		RootRedirect: &f.RootRedirect, NotFoundRedirect: &f.NotFoundRedirect, ExpiredRedirect: &f.ExpiredRedirect})
	if pe, ok := h.userError(err); ok && pe.Status == http.StatusBadRequest {
		f.Error = pe.Detail
		return h.render(c, pe.Status, "domainform", view{Title: "Edit " + f.Host, Data: domainFormPage{Form: f, Edit: true}})
	}
	if err != nil {
		return err // an unknown or the default domain: an error page
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/domains?saved="+url.QueryEscape(d.Host))
}

// removeDomainPage asks first, saying whether removing can work at all.
func (h *Handler) removeDomainPage(c echo.Context) error {
	d, err := h.branded(c)
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "domaindelete", view{Title: "Remove " + d.Host, Data: d})
}

// removeDomain removes the domain; one that still has links is refused with the
// API's 409 and its message, shown as an error page.
func (h *Handler) removeDomain(c echo.Context) error {
	host := c.Param("host")
	if err := h.domains.Remove(c.Request().Context(), host); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/domains?removed="+url.QueryEscape(host))
}
