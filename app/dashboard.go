package app

import (
	"context"

	"github.com/hop-dev/hop/modules/dashboard"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/stats"
)

// dashLinks adapts the links API handler to the dashboard's LinkService.
type dashLinks struct{ h *links.Handler }

func (a dashLinks) List(ctx context.Context, q dashboard.ListQuery) (dashboard.LinkPage, error) {
	ls, next, err := a.h.List(ctx, q.Limit, q.Cursor, q.Q, q.Tag)
	if err != nil {
		return dashboard.LinkPage{}, err
	}
	p := dashboard.LinkPage{Links: make([]dashboard.Link, len(ls)), NextCursor: next}
	for i, l := range ls {
		p.Links[i] = dashLink(l)
	}
	return p, nil
}

func (a dashLinks) Get(ctx context.Context, slug string) (dashboard.Link, error) {
	l, err := a.h.Get(ctx, slug)
	return dashLink(l), err
}

func (a dashLinks) Create(ctx context.Context, n dashboard.NewLink) (dashboard.Link, error) {
	l, err := a.h.Create(ctx, links.NewLink{URL: n.URL, Slug: n.Slug, Tags: n.Tags, ExpiresAt: n.ExpiresAt,
		MaxClicks: n.MaxClicks, Password: n.Password, RedirectStatus: n.RedirectStatus,
		ForwardQuery: &n.ForwardQuery, ExpiredURL: &n.ExpiredURL})
	return dashLink(l), err
}

// Update sets every field the edit form holds; the form always shows them all.
func (a dashLinks) Update(ctx context.Context, slug string, e dashboard.LinkEdit) (dashboard.Link, error) {
	expiredURL := &e.ExpiredURL
	l, err := a.h.Update(ctx, slug, links.Patch{URL: &e.URL, RedirectStatus: &e.RedirectStatus,
		ExpiresAt: &e.ExpiresAt, MaxClicks: &e.MaxClicks, Password: e.Password, Tags: &e.Tags,
		ForwardQuery: &e.ForwardQuery, ExpiredURL: &expiredURL})
	return dashLink(l), err
}

func (a dashLinks) Delete(ctx context.Context, slug string) error { return a.h.Delete(ctx, slug) }

func dashLink(l links.Link) dashboard.Link {
	d := dashboard.Link{Slug: l.Slug, ShortURL: l.ShortURL, OriginalURL: l.OriginalURL, Tags: l.Tags,
		TotalClicks: l.TotalClicks, HasPassword: l.HasPassword, ExpiresAt: l.ExpiresAt, CreatedAt: l.CreatedAt,
		Status: l.Status, RedirectStatus: l.RedirectStatus, MaxClicks: l.MaxClicks, ClicksUsed: l.ClicksUsed,
		ForwardQuery: l.ForwardQuery}
	if l.ExpiredURL != nil {
		d.ExpiredURL = *l.ExpiredURL
	}
	return d
}

// dashStats adapts the stats handler to the dashboard's StatsService.
type dashStats struct{ h *stats.Handler }

func (a dashStats) LinkStats(ctx context.Context, slug string, r dashboard.Range) (dashboard.LinkStats, error) {
	s, err := a.h.LinkStats(ctx, slug, r.Start, r.End, r.TZ, r.Limit)
	if err != nil {
		return dashboard.LinkStats{}, err
	}
	return dashboard.LinkStats{Start: s.Start, End: s.End, TZ: s.TZ,
		TotalClicks: s.TotalClicks, UniqueVisitors: s.UniqueVisitors, BotClicks: s.BotClicks, Daily: dashDays(s.Daily),
		Countries: s.Countries, Referers: s.Referers, Browsers: s.Browsers, OS: s.OS, Devices: s.Devices,
		UTMSources: s.UTMSources, UTMMediums: s.UTMMediums, UTMCampaigns: s.UTMCampaigns}, nil
}

func (a dashStats) Overview(ctx context.Context, r dashboard.Range) (dashboard.Overview, error) {
	o, err := a.h.Overview(ctx, r.Start, r.End, r.TZ, r.Limit)
	if err != nil {
		return dashboard.Overview{}, err
	}
	top := make([]dashboard.TopLink, len(o.TopLinks))
	for i, t := range o.TopLinks {
		top[i] = dashboard.TopLink{Slug: t.Slug, Clicks: t.Clicks}
	}
	return dashboard.Overview{Start: o.Start, End: o.End, TZ: o.TZ, TotalClicks: o.TotalClicks,
		UniqueVisitors: o.UniqueVisitors, BotClicks: o.BotClicks, Links: o.Links, Daily: dashDays(o.Daily), TopLinks: top}, nil
}

func dashDays(ds []stats.DayStats) []dashboard.Day {
	out := make([]dashboard.Day, len(ds))
	for i, d := range ds {
		out[i] = dashboard.Day{Date: d.Date, Clicks: d.Clicks, UniqueVisitors: d.UniqueVisitors}
	}
	return out
}
