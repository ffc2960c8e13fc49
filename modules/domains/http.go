package domains

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/jsonbody"
	"github.com/hop-dev/hop/internal/problem"
)

// Service is what can be done with domains: add, list, read, change and remove them.
// The /domains handlers, `hop domain` and the dashboard all call it, so validation and
// messages are the same everywhere. Every change reaches every instance's Registry.
type Service struct {
	store *Store
	reg   *Registry
}

// NewService returns the domains service.
func NewService(store *Store, reg *Registry) *Service { return &Service{store: store, reg: reg} }

// Handler serves the /domains management API: HTTP glue over a Service.
type Handler struct {
	svc *Service
}

// NewHandler returns the API handler over svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// Routes registers the management routes on g behind mw, which authenticates.
func (h *Handler) Routes(g *echo.Group, mw ...echo.MiddlewareFunc) {
	get := []string{http.MethodGet, http.MethodHead}
	g.POST("/domains", h.create, mw...)
	g.Match(get, "/domains", h.list, mw...)
	g.Match(get, "/domains/:host", h.get, mw...)
	g.PATCH("/domains/:host", h.update, mw...)
	g.DELETE("/domains/:host", h.delete, mw...)
}

// createRequest is the body of POST /domains.
type createRequest struct {
	Host             string  `json:"host"`
	BaseURL          *string `json:"base_url"`
	RootRedirect     *string `json:"root_redirect"`
	NotFoundRedirect *string `json:"not_found_redirect"`
	ExpiredRedirect  *string `json:"expired_redirect"`
}

// Add validates and creates a domain, as POST /domains and `hop domain add` do.
// baseURL "" means https://{host}.
func (s *Service) Add(ctx context.Context, host, baseURL string, root, notFound, expired string) (Domain, error) {
	var d Domain
	var err error
	if d.Host, err = NormalizeHost(host); err != nil {
		return Domain{}, err
	}
	if baseURL == "" {
		baseURL = "https://" + d.Host
	}
	if d.BaseURL, err = validateBaseURL(baseURL); err != nil {
		return Domain{}, err
	}
	if d.RootRedirect, err = validateFallback("root_redirect", root, d.Host); err != nil {
		return Domain{}, err
	}
	if d.NotFoundRedirect, err = validateFallback("not_found_redirect", notFound, d.Host); err != nil {
		return Domain{}, err
	}
	if d.ExpiredRedirect, err = validateFallback("expired_redirect", expired, d.Host); err != nil {
		return Domain{}, err
	}
	if d.Host == s.reg.Default().Host {
		return Domain{}, problem.With(ErrHostTaken, "%s is the default domain (HOP_BASE_URL)", d.Host)
	}
	out, err := s.store.Create(ctx, d)
	if err != nil {
		return Domain{}, err
	}
	return out, s.reg.changed(ctx)
}

func (h *Handler) create(c echo.Context) error {
	var req createRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	d, err := h.svc.Add(c.Request().Context(), req.Host, str(req.BaseURL), str(req.RootRedirect), str(req.NotFoundRedirect), str(req.ExpiredRedirect))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, "/domains/"+d.Host)
	return c.JSON(http.StatusCreated, d)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// List returns every live domain with its link count, the default first.
func (s *Service) List(ctx context.Context) ([]Domain, error) { return s.reg.List(ctx) }

// Choices returns every live domain without link counts, from memory; see
// Registry.Choices.
func (s *Service) Choices() []Domain { return s.reg.Choices() }

func (h *Handler) list(c echo.Context) error {
	ds, err := h.svc.List(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string][]Domain{"domains": ds})
}

func (h *Handler) get(c echo.Context) error {
	d, err := h.svc.Get(c.Request().Context(), c.Param("host"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// Get returns the live domain with host (as a person may type it) and its link
// count, as GET /domains/{host} does.
func (s *Service) Get(ctx context.Context, host string) (Domain, error) {
	norm, err := s.storedHost(ctx, host)
	if err != nil {
		return Domain{}, err
	}
	ds, err := s.reg.List(ctx)
	if err != nil {
		return Domain{}, err
	}
	for _, d := range ds {
		if d.Host == norm {
			return d, nil
		}
	}
	return Domain{}, ErrNotFound
}

// storedHost is host (as a person may type it) in the form domains are stored: a
// normalized DNS name, or the default domain's host as HOP_BASE_URL names it, which
// may be an IP address (http://127.0.0.1:8080) that no branded domain could be.
func (s *Service) storedHost(ctx context.Context, host string) (string, error) {
	norm, err := NormalizeHost(host)
	if err == nil {
		return norm, nil
	}
	ds, lerr := s.reg.List(ctx)
	if lerr != nil {
		return "", lerr
	}
	raw := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	for _, d := range ds {
		if d.Default && d.Host == raw {
			return d.Host, nil
		}
	}
	return "", err
}

// Patch changes a domain: a nil field is left as it is; an empty fallback means hop's
// own page.
type Patch struct {
	BaseURL, RootRedirect, NotFoundRedirect, ExpiredRedirect *string
}

// Update validates p and applies it to the live branded domain with host, as PATCH
// /domains/{host} does; the default domain is ErrDefaultDomain (it is configured).
func (s *Service) Update(ctx context.Context, host string, p Patch) (Domain, error) {
	own, _ := NormalizeHost(host) // as the update below finds the domain
	fallback := func(name string) func(string) (string, error) {
		return func(v string) (string, error) { return validateFallback(name, v, own) }
	}
	var dp domainPatch
	for _, f := range []struct {
		val      *string
		dst      **string
		validate func(string) (string, error)
	}{
		{p.BaseURL, &dp.BaseURL, validateBaseURL},
		{p.RootRedirect, &dp.RootRedirect, fallback("root_redirect")},
		{p.NotFoundRedirect, &dp.NotFoundRedirect, fallback("not_found_redirect")},
		{p.ExpiredRedirect, &dp.ExpiredRedirect, fallback("expired_redirect")},
	} {
		if f.val == nil {
			continue
		}
		v, err := f.validate(*f.val)
		if err != nil {
			return Domain{}, err
		}
		*f.dst = &v
	}
	norm, err := s.storedHost(ctx, host)
	if err != nil {
		return Domain{}, err
	}
	if _, err := s.store.update(ctx, norm, dp); err != nil {
		return Domain{}, err
	}
	if err := s.reg.changed(ctx); err != nil {
		return Domain{}, err
	}
	return s.Get(ctx, norm)
}

func (h *Handler) update(c echo.Context) error {
	var raw map[string]json.RawMessage
	if err := decodeJSON(c, &raw); err != nil {
		return err
	}
	if len(raw) == 0 {
		return problem.Invalid("the body must change at least one of base_url, root_redirect, not_found_redirect, expired_redirect")
	}
	var p Patch
	for k, v := range raw {
		var s *string
		if err := json.Unmarshal(v, &s); err != nil {
			return problem.Invalid("%s must be a string or null", k)
		}
		val := str(s)
		switch k {
		case "host":
			return problem.Invalid("a domain's host cannot be changed; add a new domain instead")
		case "base_url":
			if s == nil {
				return problem.Invalid("base_url cannot be null")
			}
			p.BaseURL = &val
		case "root_redirect":
			p.RootRedirect = &val
		case "not_found_redirect":
			p.NotFoundRedirect = &val
		case "expired_redirect":
			p.ExpiredRedirect = &val
		default:
			return problem.Invalid("unknown field %q", k)
		}
	}
	d, err := h.svc.Update(c.Request().Context(), c.Param("host"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// Remove deletes the domain with host, as DELETE /domains/{host} and `hop domain
// remove` do.
func (s *Service) Remove(ctx context.Context, host string) error {
	norm, err := s.storedHost(ctx, host)
	if err != nil {
		return err
	}
	if err := s.store.Delete(ctx, norm); err != nil {
		return err
	}
	return s.reg.changed(ctx)
}

func (h *Handler) delete(c echo.Context) error {
	if err := h.svc.Remove(c.Request().Context(), c.Param("host")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// decodeJSON reads a request body, refusing unknown fields.
func decodeJSON(c echo.Context, v any) error { return jsonbody.Decode(c, v, true) }
