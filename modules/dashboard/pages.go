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

// linkForm is the "new link" form as submitted, shown again with its error.
type linkForm struct {
	URL, Slug, Tags string
	Error           string
}

// overviewPage is the data of /dashboard.
type overviewPage struct {
	Stats     Overview
	Chart     chart
	Links     []Link
	ListError string
	Q, Tag    string
	NextURL   string // the next page of the list; empty on the last
	Form      linkForm
}

func (h *Handler) overview(c echo.Context) error {
	return h.renderOverview(c, http.StatusOK, linkForm{})
}

// renderOverview renders the overview with form as the "new link" form's state.
func (h *Handler) renderOverview(c echo.Context, status int, form linkForm) error {
	ctx := c.Request().Context()
	q := c.QueryParams()
	p := overviewPage{Q: q.Get("q"), Tag: q.Get("tag"), Form: form}

	o, err := h.stats.Overview(ctx, Range{})
	if err != nil {
		return err
	}
	p.Stats, p.Chart = o, newChart(o.Daily)

	page, err := h.links.List(ctx, ListQuery{Limit: pageSize, Cursor: q.Get("cursor"), Q: p.Q, Tag: p.Tag})
	if pe, ok := h.userError(err); ok {
		p.ListError = pe.Detail // a bad cursor or an over-long query: say so, keep the page
	} else if err != nil {
		return err
	}
	p.Links = page.Links
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
	return h.render(c, status, "overview", view{Title: "Overview", Data: p})
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
	f := c.Request().PostForm
	form := linkForm{URL: strings.TrimSpace(f.Get("url")), Slug: strings.TrimSpace(f.Get("slug")), Tags: f.Get("tags")}
	l, err := h.links.Create(c.Request().Context(), NewLink{URL: form.URL, Slug: form.Slug, Tags: parseTags(form.Tags)})
	if pe, ok := h.userError(err); ok {
		form.Error = pe.Detail
		return h.renderOverview(c, pe.Status, form)
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/links/"+url.PathEscape(l.Slug)+"?created=1")
}

// linkPage is the data of /dashboard/links/:slug.
type linkPage struct {
	Link       Link
	Stats      LinkStats
	Chart      chart
	Breakdowns []breakdown
	RangeError string
	Created    bool
	Live       bool
	LiveURL    string // toggles auto-refresh, keeping the range
	QRURL      string
	Form       Range // the range form as submitted
}

func (h *Handler) linkPage(c echo.Context) error {
	ctx := c.Request().Context()
	slug := c.Param("slug")
	l, err := h.links.Get(ctx, slug)
	if err != nil {
		return err // 404 and 410 render as error pages
	}
	q := c.QueryParams()
	p := linkPage{
		Link:    l,
		Created: q.Get("created") == "1",
		Live:    q.Get("live") == "1",
		QRURL:   "/" + url.PathEscape(l.Slug) + "/qr?format=svg",
		Form:    Range{Start: q.Get("start"), End: q.Get("end"), TZ: q.Get("tz")},
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
	p.Stats, p.Chart = s, newChart(s.Daily)
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
