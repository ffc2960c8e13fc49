package dashboard

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Webhook is a webhook subscription as the dashboard shows it. Nil Links or Tags
// match every link or tag.
type Webhook struct {
	ID           int64
	URL          string
	Secret       string // only right after Create
	Links        []string
	Tags         []string
	IncludeBots  bool
	Disabled     bool // after failing for 24 h
	DisabledAt   *time.Time
	FailingSince *time.Time
	CreatedAt    time.Time
}

// NewWebhook is what the "new webhook" form submits; nil Links or Tags mean all.
type NewWebhook struct {
	URL         string
	Links       []string
	Tags        []string
	IncludeBots bool
}

// Delivery is one batch (or ping) sent to a webhook, as the deliveries table shows it.
type Delivery struct {
	ID            int64
	Kind          string // "events" or "ping"
	Status        string // "pending", "delivered" or "failed"
	Events        int
	Attempts      int
	HTTPStatus    *int
	LatencyMS     *float64
	Error         string
	CreatedAt     time.Time
	LastAttemptAt *time.Time
	NextAttemptAt *time.Time
}

// WebhookService manages webhooks; errors follow the LinkService convention (an
// invalid or forbidden URL is a 4xx, an unknown webhook or delivery 404). Ping and
// Retry send at once and return the delivery as recorded, failed or not.
type WebhookService interface {
	List(ctx context.Context) ([]Webhook, error)
	Get(ctx context.Context, id int64) (Webhook, error)
	Create(ctx context.Context, n NewWebhook) (Webhook, error)
	Delete(ctx context.Context, id int64) error
	Deliveries(ctx context.Context, id int64, limit int) ([]Delivery, error)
	Ping(ctx context.Context, id int64) (Delivery, error)
	Retry(ctx context.Context, id, delivery int64) (Delivery, error)
}

// deliveriesShown is how many recent deliveries a webhook's page lists.
const deliveriesShown = 50

// registerWebhooks adds the webhook pages; with is Register's middleware chain maker.
func (h *Handler) registerWebhooks(e *echo.Echo, with func(own ...echo.MiddlewareFunc) []echo.MiddlewareFunc) {
	post := with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)
	e.GET("/dashboard/webhooks", h.webhooksPage, with(h.authenticated)...)
	e.GET("/dashboard/webhooks/new", h.newWebhookPage, with(h.authenticated)...)
	e.POST("/dashboard/webhooks", h.createWebhook, post...)
	e.GET("/dashboard/webhooks/:id", h.webhookPage, with(h.authenticated)...)
	e.GET("/dashboard/webhooks/:id/delete", h.deleteWebhookPage, with(h.authenticated)...)
	e.POST("/dashboard/webhooks/:id/delete", h.deleteWebhook, post...)
	e.POST("/dashboard/webhooks/:id/test", h.pingWebhook, post...)
	e.POST("/dashboard/webhooks/:id/deliveries/:delivery/retry", h.retryDelivery, post...)
}

// pathID reads a positive id from the path; anything else is no such page.
func pathID(c echo.Context, name string) (int64, error) {
	id, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, echo.ErrNotFound
	}
	return id, nil
}

// webhooksListPage is the data of /dashboard/webhooks.
type webhooksListPage struct {
	Webhooks []Webhook
	Deleted  string // the id just deleted
}

func (h *Handler) webhooksPage(c echo.Context) error {
	ws, err := h.webhooks.List(c.Request().Context())
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "webhooks", view{Title: "Webhooks", Data: webhooksListPage{Webhooks: ws, Deleted: c.QueryParam("deleted")}})
}

// webhookForm is the create form as submitted, shown again with its error.
type webhookForm struct {
	URL, Links, Tags string
	IncludeBots      bool
	Error            string
}

// webhookFormPage is the data of the create page and of its result, which shows the
// secret once.
type webhookFormPage struct {
	Form    webhookForm
	Created *Webhook
}

func (h *Handler) newWebhookPage(c echo.Context) error {
	return h.render(c, http.StatusOK, "webhooknew", view{Title: "New webhook", Data: webhookFormPage{}})
}

// readWebhookForm reads the create form; blank links or tags mean all of them.
func readWebhookForm(v url.Values) (webhookForm, NewWebhook) {
	f := webhookForm{URL: strings.TrimSpace(v.Get("url")), Links: v.Get("links"), Tags: v.Get("tags"),
		IncludeBots: v.Get("include_bots") == "1"}
	return f, NewWebhook{URL: f.URL, Links: parseTags(f.Links), Tags: parseTags(f.Tags), IncludeBots: f.IncludeBots}
}

// createWebhook answers with the result page itself rather than a redirect: the
// secret is shown this once and must not sit in a URL or a later page.
func (h *Handler) createWebhook(c echo.Context) error {
	form, n := readWebhookForm(c.Request().PostForm)
	w, err := h.webhooks.Create(c.Request().Context(), n)
	if pe, ok := h.userError(err); ok {
		form.Error = pe.Detail
		return h.render(c, pe.Status, "webhooknew", view{Title: "New webhook", Data: webhookFormPage{Form: form}})
	}
	if err != nil {
		return err
	}
	return h.render(c, http.StatusCreated, "webhooknew", view{Title: "Webhook created", Data: webhookFormPage{Created: &w}})
}

// webhookDetailPage is the data of /dashboard/webhooks/:id.
type webhookDetailPage struct {
	Webhook    Webhook
	Deliveries []Delivery
	Sent       *Delivery // the ping or retry just sent
	SentKind   string    // "ping" or "retry"
}

func (h *Handler) webhookPage(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	w, err := h.webhooks.Get(ctx, id)
	if err != nil {
		return err
	}
	ds, err := h.webhooks.Deliveries(ctx, id, deliveriesShown)
	if err != nil {
		return err
	}
	p := webhookDetailPage{Webhook: w, Deliveries: ds}
	// After a ping or retry the page names the delivery sent and how it went.
	for _, k := range []string{"ping", "retry"} {
		sent, err := strconv.ParseInt(c.QueryParam(k), 10, 64)
		if err != nil {
			continue
		}
		for i := range ds {
			if ds[i].ID == sent {
				p.Sent, p.SentKind = &ds[i], k
			}
		}
	}
	return h.render(c, http.StatusOK, "webhook", view{Title: "Webhook " + strconv.FormatInt(id, 10), Data: p})
}

func (h *Handler) deleteWebhookPage(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	w, err := h.webhooks.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "webhookdelete", view{Title: "Delete webhook", Data: webhookDetailPage{Webhook: w}})
}

func (h *Handler) deleteWebhook(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	if err := h.webhooks.Delete(c.Request().Context(), id); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/webhooks?deleted="+strconv.FormatInt(id, 10))
}

func (h *Handler) pingWebhook(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	d, err := h.webhooks.Ping(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/webhooks/"+strconv.FormatInt(id, 10)+"?ping="+strconv.FormatInt(d.ID, 10))
}

func (h *Handler) retryDelivery(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	did, err := pathID(c, "delivery")
	if err != nil {
		return err
	}
	d, err := h.webhooks.Retry(c.Request().Context(), id, did)
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/dashboard/webhooks/"+strconv.FormatInt(id, 10)+"?retry="+strconv.FormatInt(d.ID, 10))
}
