package dashboard

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/stats"
)

// userError returns the problem err is if the user can fix it (a 4xx).
func (h *Handler) userError(err error) (problem.Problem, bool) {
	if err == nil {
		return problem.Problem{}, false
	}
	p := h.describe(err)
	return p, p.Status >= 400 && p.Status < 500
}

// domainParam is the ?domain= that names a link's domain: none for the default one.
func (h *Handler) domainParam(host string) string {
	if host == "" || strings.EqualFold(host, h.defHost) {
		return ""
	}
	return host
}

// linkPath is the dashboard path of a link's page, or of one of its sub-pages
// (suffix "/edit", "/delete", "/qr", "/live"), naming its domain unless it is the
// default one, so two links with the same slug on two domains each have their own.
func (h *Handler) linkPath(slug, host, suffix string) string {
	p := "/dashboard/links/" + url.PathEscape(slug) + suffix
	if d := h.domainParam(host); d != "" {
		p += "?domain=" + url.QueryEscape(d)
	}
	return p
}

// withQuery adds k=v to path, which may have a query already.
func withQuery(path, k, v string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + url.QueryEscape(k) + "=" + url.QueryEscape(v)
}

// domainChoices are the domains to pick from when there is more than the default
// one; nil otherwise, and then the pages show no domain picker, column or filter.
// They come from memory, without link counts: counting every live link on each page
// view took seconds at a million links.
func (h *Handler) domainChoices() []domains.Domain {
	if h.domains == nil {
		return nil
	}
	if ds := h.domains.Choices(); len(ds) >= 2 {
		return ds
	}
	return nil
}

// overviewPage is the data of /dashboard.
type overviewPage struct {
	Stats     stats.Overview
	Chart     chart
	Hourly    chart
	Links     []links.Link
	ListError string
	Q, Tag    string
	Domain    string           // the list's domain filter: a host, or "" for every domain
	Domains   []domains.Domain // to pick from; nil with only the default domain
	NextURL   string           // the next page of the list; empty on the last
	FirstURL  string           // the list's first page, with its filters; empty on it
	Form      linkForm
	Deleted   string // the slug just deleted
}

func (h *Handler) overview(c echo.Context) error {
	ctx := c.Request().Context()
	q := c.QueryParams()
	p := overviewPage{Q: q.Get("q"), Tag: q.Get("tag"), Domain: q.Get("domain"), Form: newForm(), Deleted: q.Get("deleted")}

	o, err := h.stats.Overview(ctx, "", stats.Range{})
	if err != nil {
		return err
	}
	hours, err := h.stats.RecentHours(ctx, 24)
	if err != nil {
		return err
	}
	p.Stats, p.Chart, p.Hourly = o, newChart(o.Daily), newHourlyChart(hours)
	p.Domains = h.domainChoices()

	page, err := h.links.List(ctx, links.ListQuery{Domain: p.Domain, Limit: pageSize, Cursor: q.Get("cursor"), Q: p.Q, Tag: p.Tag})
	if pe, ok := h.userError(err); ok {
		p.ListError = pe.Detail // a bad cursor, an over-long query, an unknown domain: say so, keep the page
	} else if err != nil {
		return err
	}
	p.Links = page.Links
	for i := range p.Links {
		p.Links[i].ShortURL = h.shortURL(c, p.Links[i])
	}
	// The list pages forward only (keyset cursors); the way back is the first page, or
	// the browser's back button.
	if page.NextCursor != "" {
		p.NextURL = p.listURL(page.NextCursor)
	}
	if q.Get("cursor") != "" {
		p.FirstURL = p.listURL("")
	}
	return h.render(c, http.StatusOK, "overview", view{Title: "Overview", Data: p})
}

// listURL is the overview's list at cursor ("" for its first page), with the page's
// filters.
func (p overviewPage) listURL(cursor string) string {
	v := url.Values{}
	for k, s := range map[string]string{"cursor": cursor, "q": p.Q, "tag": p.Tag, "domain": p.Domain} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if len(v) == 0 {
		return "/dashboard"
	}
	return "/dashboard?" + v.Encode()
}

// shortURL is l's short URL as this visitor can use it: on the origin the dashboard
// is visited on when no public origin was configured (the default would be wrong for
// anyone not on localhost:8080). Other domains' links keep their own base URL.
func (h *Handler) shortURL(c echo.Context, l links.Link) string {
	if !h.fromReq || !strings.HasPrefix(l.ShortURL, h.base+"/") {
		return l.ShortURL
	}
	return c.Scheme() + "://" + c.Request().Host + strings.TrimPrefix(l.ShortURL, h.base)
}

// formPage is the data of the create and edit pages.
type formPage struct {
	Form    linkForm
	Link    links.Link       // edit: the link as it is
	Domains []domains.Domain // create: to pick from; nil with only the default domain
}

func (h *Handler) newLinkPage(c echo.Context) error {
	return h.render(c, http.StatusOK, "new", view{Title: "New link", Data: formPage{Form: newForm(), Domains: h.domainChoices()}})
}

// parseTags splits the form's comma-separated tags, dropping blanks; the link service
// validates and normalises what remains.
func parseTags(s string) []string {
	var tags []string
	for t := range strings.SplitSeq(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	return tags
}

func (h *Handler) createLink(c echo.Context) error {
	ctx := c.Request().Context()
	form, n, err := readForm(c.Request().PostForm)
	var l links.Link
	if err == nil {
		l, err = h.links.Create(ctx, n)
	}
	if pe, ok := h.userError(err); ok {
		form.Error = pe.Detail
		return h.render(c, pe.Status, "new", view{Title: "New link", Data: formPage{Form: form, Domains: h.domainChoices()}})
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, withQuery(h.linkPath(l.Slug, l.Domain, ""), "created", "1"))
}

// link reads the link the request names: its slug, and its domain by ?domain= (the
// default domain when absent).
func (h *Handler) link(c echo.Context) (links.Link, error) {
	return h.links.Get(c.Request().Context(), c.QueryParam("domain"), c.Param("slug"))
}

func (h *Handler) editPage(c echo.Context) error {
	l, err := h.link(c)
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "edit", view{Title: "Edit " + l.Slug, Data: formPage{Form: editForm(l), Link: l}})
}

func (h *Handler) updateLink(c echo.Context) error {
	ctx := c.Request().Context()
	l, err := h.link(c)
	if err != nil {
		return err
	}
	form, p, err := readEditForm(c.Request().PostForm, l)
	if err == nil {
		_, err = h.links.Update(ctx, l.Domain, l.Slug, p)
	}
	if pe, ok := h.userError(err); ok {
		form.Error = pe.Detail
		return h.render(c, pe.Status, "edit", view{Title: "Edit " + l.Slug, Data: formPage{Form: form, Link: l}})
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, withQuery(h.linkPath(l.Slug, l.Domain, ""), "saved", "1"))
}

// deletePage asks for confirmation: deleting is final, the slug is never reused.
func (h *Handler) deletePage(c echo.Context) error {
	l, err := h.link(c)
	if err != nil {
		return err
	}
	l.ShortURL = h.shortURL(c, l)
	return h.render(c, http.StatusOK, "delete", view{Title: "Delete " + l.Slug, Data: formPage{Link: l}})
}

func (h *Handler) deleteLink(c echo.Context) error {
	slug := c.Param("slug")
	if err := h.links.Delete(c.Request().Context(), c.QueryParam("domain"), slug); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard?deleted="+url.QueryEscape(slug))
}

// linkPage is the data of /dashboard/links/:slug.
type linkPage struct {
	Link       links.Link
	Domain     string // the link's ?domain=, "" on the default domain
	Stats      stats.LinkStats
	Chart      chart
	Hourly     chart
	Breakdowns []breakdown
	RangeError string
	Created    bool
	Saved      bool
	Live       bool
	LiveURL    string // toggles auto-refresh, keeping the range
	LiveFeed   string // the live panel's event stream
	QRURL      string // the QR code as PNG; "" when the link answers no redirect, so has no usable code
	QRSVGURL   string
	Form       stats.Range // the range form's fields: the range shown, or as typed when refused
}

func (h *Handler) linkPage(c echo.Context) error {
	ctx := c.Request().Context()
	l, err := h.link(c)
	if err != nil {
		return err // 404 and 410 render as error pages
	}
	q := c.QueryParams()
	l.ShortURL = h.shortURL(c, l)
	p := linkPage{
		Link:     l,
		Domain:   h.domainParam(l.Domain),
		Created:  q.Get("created") == "1",
		Saved:    q.Get("saved") == "1",
		Live:     q.Get("live") == "1",
		LiveFeed: h.linkPath(l.Slug, l.Domain, "/live"),
		Form:     stats.Range{Start: q.Get("start"), End: q.Get("end"), TZ: q.Get("tz")},
	}
	if l.Status == links.StatusActive || l.Status == "" {
		p.QRURL = h.linkPath(l.Slug, l.Domain, "/qr")
		p.QRSVGURL = withQuery(p.QRURL, "format", "svg")
	}
	s, err := h.stats.LinkStats(ctx, l.Domain, l.Slug, p.Form)
	if pe, ok := h.userError(err); ok && pe.Status == http.StatusBadRequest {
		// A bad range: say why and show the default range instead, keeping the form
		// as typed so a typo can be corrected rather than typed again.
		p.RangeError = strings.TrimSuffix(pe.Detail, ".")
		s, err = h.stats.LinkStats(ctx, l.Domain, l.Slug, stats.Range{})
	}
	if err != nil {
		return err
	}
	if p.RangeError == "" {
		p.Form = stats.Range{Start: s.Start, End: s.End, TZ: s.TZ}
	}
	p.Stats, p.Chart, p.Hourly = s, newChart(s.Daily), newHourlyChart(s.Hourly)
	p.Breakdowns = []breakdown{
		newBreakdown("Countries", s.Countries),
		newBreakdown("Referrers", s.Referers),
		newBreakdown("Browsers", s.Browsers),
		newBreakdown("Operating systems", s.OS),
		newBreakdown("Devices", s.Devices),
	}
	// Campaign breakdowns only for links shared with campaign parameters: for the
	// others they would be three cards of "(none)".
	for _, c := range []struct {
		title string
		m     map[string]int64
	}{{"Campaign sources", s.UTMSources}, {"Campaign media", s.UTMMediums}, {"Campaigns", s.UTMCampaigns}} {
		if len(c.m) > 1 || (len(c.m) == 1 && c.m["(none)"] == 0) {
			p.Breakdowns = append(p.Breakdowns, newBreakdown(c.title, c.m))
		}
	}
	v := url.Values{}
	for _, k := range []string{"domain", "start", "end", "tz"} {
		if s := q.Get(k); s != "" {
			v.Set(k, s)
		}
	}
	if !p.Live {
		v.Set("live", "1")
	}
	p.LiveURL = "/dashboard/links/" + url.PathEscape(l.Slug)
	if len(v) > 0 {
		p.LiveURL += "?" + v.Encode()
	}
	vw := view{Title: l.Slug, Data: p}
	if p.Live {
		vw.Refresh = refreshSec
	}
	return h.render(c, http.StatusOK, "link", vw)
}
