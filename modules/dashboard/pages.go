package dashboard

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// userError returns the problem err is if the user can fix it (a 4xx).
func (h *Handler) userError(err error) (problem.Problem, bool) {
	if err == nil {
		return problem.Problem{}, false
	}
	p := h.describe(err)
	return p, p.Status >= 400 && p.Status < 500
}

// overviewPage is the data of /dashboard.
type overviewPage struct {
	Stats     Overview
	Chart     chart
	Hourly    chart
	Links     []Link
	ListError string
	Q, Tag    string
	NextURL   string // the next page of the list; empty on the last
	Form      linkForm
	Deleted   string // the slug just deleted
}

func (h *Handler) overview(c echo.Context) error {
	ctx := c.Request().Context()
	q := c.QueryParams()
	p := overviewPage{Q: q.Get("q"), Tag: q.Get("tag"), Form: newForm(), Deleted: q.Get("deleted")}

	o, err := h.stats.Overview(ctx, Range{})
	if err != nil {
		return err
	}
	p.Stats, p.Chart, p.Hourly = o, newChart(o.Daily), newHourlyChart(o.Hourly)

	page, err := h.links.List(ctx, ListQuery{Limit: pageSize, Cursor: q.Get("cursor"), Q: p.Q, Tag: p.Tag})
	if pe, ok := h.userError(err); ok {
		p.ListError = pe.Detail // a bad cursor or an over-long query: say so, keep the page
	} else if err != nil {
		return err
	}
	p.Links = page.Links
	for i := range p.Links {
		p.Links[i].ShortURL = h.shortURL(c, p.Links[i])
	}
	if page.NextCursor != "" {
		v := url.Values{"cursor": {page.NextCursor}}
		if p.Q != "" {
			v.Set("q", p.Q)
		}
		if p.Tag != "" {
			v.Set("tag", p.Tag)
		}
		p.NextURL = "/dashboard?" + v.Encode()
	}
	return h.render(c, http.StatusOK, "overview", view{Title: "Overview", Data: p})
}

// shortURL is l's short URL as this visitor can use it: on the origin the dashboard
// is visited on when no public origin was configured (the default would be wrong for
// anyone not on localhost:8080).
func (h *Handler) shortURL(c echo.Context, l Link) string {
	if !h.fromReq || !strings.HasPrefix(l.ShortURL, h.base+"/") {
		return l.ShortURL
	}
	return c.Scheme() + "://" + c.Request().Host + strings.TrimPrefix(l.ShortURL, h.base)
}

// formPage is the data of the create and edit pages.
type formPage struct {
	Form linkForm
	Link Link // edit: the link as it is
}

func (h *Handler) newLinkPage(c echo.Context) error {
	return h.render(c, http.StatusOK, "new", view{Title: "New link", Data: formPage{Form: newForm()}})
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
	form, n, err := readForm(c.Request().PostForm)
	var l Link
	if err == nil {
		l, err = h.links.Create(c.Request().Context(), n)
	}
	if pe, ok := h.userError(err); ok {
		form.Error = pe.Detail
		return h.render(c, pe.Status, "new", view{Title: "New link", Data: formPage{Form: form}})
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/links/"+url.PathEscape(l.Slug)+"?created=1")
}

func (h *Handler) editPage(c echo.Context) error {
	l, err := h.links.Get(c.Request().Context(), c.Param("slug"))
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "edit", view{Title: "Edit " + l.Slug, Data: formPage{Form: editForm(l), Link: l}})
}

func (h *Handler) updateLink(c echo.Context) error {
	ctx := c.Request().Context()
	l, err := h.links.Get(ctx, c.Param("slug"))
	if err != nil {
		return err
	}
	form, e, err := readEditForm(c.Request().PostForm, l)
	if err == nil {
		_, err = h.links.Update(ctx, l.Slug, e)
	}
	if pe, ok := h.userError(err); ok {
		form.Error = pe.Detail
		return h.render(c, pe.Status, "edit", view{Title: "Edit " + l.Slug, Data: formPage{Form: form, Link: l}})
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/links/"+url.PathEscape(l.Slug)+"?saved=1")
}

// deletePage asks for confirmation: deleting is final, the slug is never reused.
func (h *Handler) deletePage(c echo.Context) error {
	l, err := h.links.Get(c.Request().Context(), c.Param("slug"))
	if err != nil {
		return err
	}
	l.ShortURL = h.shortURL(c, l)
	return h.render(c, http.StatusOK, "delete", view{Title: "Delete " + l.Slug, Data: formPage{Link: l}})
}

func (h *Handler) deleteLink(c echo.Context) error {
	slug := c.Param("slug")
	if err := h.links.Delete(c.Request().Context(), slug); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard?deleted="+url.QueryEscape(slug))
}

// linkPage is the data of /dashboard/links/:slug.
type linkPage struct {
	Link       Link
	Stats      LinkStats
	Chart      chart
	Hourly     chart
	Breakdowns []breakdown
	RangeError string
	Created    bool
	Saved      bool
	Live       bool
	LiveURL    string // toggles auto-refresh, keeping the range
	QRURL      string // "" when the link answers no redirect, so has no usable QR code
	Form       Range  // the range form as submitted
}

func (h *Handler) linkPage(c echo.Context) error {
	ctx := c.Request().Context()
	slug := c.Param("slug")
	l, err := h.links.Get(ctx, slug)
	if err != nil {
		return err // 404 and 410 render as error pages
	}
	q := c.QueryParams()
	l.ShortURL = h.shortURL(c, l)
	p := linkPage{
		Link:    l,
		Created: q.Get("created") == "1",
		Saved:   q.Get("saved") == "1",
		Live:    q.Get("live") == "1",
		Form:    Range{Start: q.Get("start"), End: q.Get("end"), TZ: q.Get("tz")},
	}
	if l.Status == StatusActive || l.Status == "" {
		p.QRURL = "/" + url.PathEscape(l.Slug) + "/qr"
	}
	s, err := h.stats.LinkStats(ctx, l.Slug, p.Form)
	if pe, ok := h.userError(err); ok && pe.Status == http.StatusBadRequest {
		// A bad range: say why and show the default range instead.
		p.RangeError = pe.Detail
		s, err = h.stats.LinkStats(ctx, l.Slug, Range{})
	}
	if err != nil {
		return err
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
	for _, k := range []string{"start", "end", "tz"} {
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
