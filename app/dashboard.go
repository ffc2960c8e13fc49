package app

import (
	"context"

	"github.com/hop-dev/hop/modules/dashboard"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/stats"
	"github.com/hop-dev/hop/modules/webhooks"
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

// dashStats adapts the stats handler to the dashboard's StatsService; defaultHost is
// the default domain's host.
type dashStats struct {
	h           *stats.Handler
	defaultHost string
}

func (a dashStats) LinkStats(ctx context.Context, slug string, r dashboard.Range) (dashboard.LinkStats, error) {
	s, err := a.h.LinkStats(ctx, slug, r.Start, r.End, r.TZ, r.Limit)
	if err != nil {
		return dashboard.LinkStats{}, err
	}
	return dashboard.LinkStats{Start: s.Start, End: s.End, TZ: s.TZ,
		TotalClicks: s.TotalClicks, UniqueVisitors: s.UniqueVisitors, BotClicks: s.BotClicks, Daily: dashDays(s.Daily),
		Countries: s.Countries, Referers: s.Referers, Browsers: s.Browsers, OS: s.OS, Devices: s.Devices,
		UTMSources: s.UTMSources, UTMMediums: s.UTMMediums, UTMCampaigns: s.UTMCampaigns, Hourly: dashHours(s.Hourly)}, nil
}

func (a dashStats) Overview(ctx context.Context, r dashboard.Range) (dashboard.Overview, error) {
	o, err := a.h.Overview(ctx, r.Start, r.End, r.TZ, r.Limit)
	if err != nil {
		return dashboard.Overview{}, err
	}
	hours, err := a.h.RecentHours(ctx, 24)
	if err != nil {
		return dashboard.Overview{}, err
	}
	// The dashboard's link pages are on the default domain only, so are its top links:
	// another domain's link with the same slug must not lead to the wrong page.
	top := make([]dashboard.TopLink, 0, len(o.TopLinks))
	for _, t := range o.TopLinks {
		if t.Domain == "" || t.Domain == a.defaultHost {
			top = append(top, dashboard.TopLink{Slug: t.Slug, Clicks: t.Clicks})
		}
	}
	return dashboard.Overview{Start: o.Start, End: o.End, TZ: o.TZ, TotalClicks: o.TotalClicks,
		UniqueVisitors: o.UniqueVisitors, BotClicks: o.BotClicks, Links: o.Links, Daily: dashDays(o.Daily), TopLinks: top, Hourly: dashHours(hours)}, nil
}

func dashHours(hs []stats.HourStats) []dashboard.Hour {
	out := make([]dashboard.Hour, len(hs))
	for i, h := range hs {
		out[i] = dashboard.Hour{Hour: h.Hour, Clicks: h.Clicks, BotClicks: h.BotClicks}
	}
	return out
}

func dashDays(ds []stats.DayStats) []dashboard.Day {
	out := make([]dashboard.Day, len(ds))
	for i, d := range ds {
		out[i] = dashboard.Day{Date: d.Date, Clicks: d.Clicks, UniqueVisitors: d.UniqueVisitors}
	}
	return out
}

// dashWebhooks adapts the webhooks service to the dashboard's WebhookService.
type dashWebhooks struct{ s *webhooks.Service }

func (a dashWebhooks) List(ctx context.Context) ([]dashboard.Webhook, error) {
	ws, err := a.s.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Webhook, len(ws))
	for i, w := range ws {
		out[i] = dashWebhook(w)
	}
	return out, nil
}

func (a dashWebhooks) Get(ctx context.Context, id int64) (dashboard.Webhook, error) {
	w, err := a.s.Get(ctx, id)
	return dashWebhook(w), err
}

func (a dashWebhooks) Create(ctx context.Context, n dashboard.NewWebhook) (dashboard.Webhook, error) {
	w, err := a.s.Create(ctx, webhooks.NewWebhook{URL: n.URL, Links: n.Links, Tags: n.Tags, IncludeBots: n.IncludeBots})
	return dashWebhook(w), err
}

func (a dashWebhooks) Delete(ctx context.Context, id int64) error { return a.s.Delete(ctx, id) }

func (a dashWebhooks) Deliveries(ctx context.Context, id int64, limit int) ([]dashboard.Delivery, error) {
	ds, err := a.s.Deliveries(ctx, id, limit)
	if err != nil {
		return nil, err
	}
	out := make([]dashboard.Delivery, len(ds))
	for i, d := range ds {
		out[i] = dashDelivery(d)
	}
	return out, nil
}

func (a dashWebhooks) Ping(ctx context.Context, id int64) (dashboard.Delivery, error) {
	d, err := a.s.Ping(ctx, id)
	return dashDelivery(d), err
}

func (a dashWebhooks) Retry(ctx context.Context, id, delivery int64) (dashboard.Delivery, error) {
	d, err := a.s.Retry(ctx, id, delivery)
	return dashDelivery(d), err
}

func dashWebhook(w webhooks.Webhook) dashboard.Webhook {
	return dashboard.Webhook{ID: w.ID, URL: w.URL, Secret: w.Secret, Links: w.Links, Tags: w.Tags,
		IncludeBots: w.IncludeBots, Disabled: w.Disabled, DisabledAt: w.DisabledAt, FailingSince: w.FailingSince,
		CreatedAt: w.CreatedAt}
}

func dashDelivery(d webhooks.Delivery) dashboard.Delivery {
	return dashboard.Delivery{ID: d.ID, Kind: d.Kind, Status: d.Status, Events: d.Events, Attempts: d.Attempts,
		HTTPStatus: d.HTTPStatus, LatencyMS: d.LatencyMS, Error: d.Error, CreatedAt: d.CreatedAt,
		LastAttemptAt: d.LastAttemptAt, NextAttemptAt: d.NextAttemptAt}
}
