package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/webhooks"
)

// WebhookService manages webhooks: the webhooks module's Service. Errors follow the
// LinkService convention (an invalid or forbidden URL is a 4xx, an unknown webhook or
// delivery 404). Ping and Retry send at once and return the delivery as recorded,
// failed or not.
type WebhookService interface {
	List(ctx context.Context) ([]webhooks.Webhook, error)
	Get(ctx context.Context, id int64) (webhooks.Webhook, error)
	Create(ctx context.Context, n webhooks.NewWebhook) (webhooks.Webhook, error)
	Update(ctx context.Context, id int64, ch webhooks.Change) (webhooks.Webhook, error)
	RotateSecret(ctx context.Context, id int64) (webhooks.Webhook, error)
	Delete(ctx context.Context, id int64) error
	Deliveries(ctx context.Context, id int64, limit int) ([]webhooks.Delivery, error)
	Ping(ctx context.Context, id int64) (webhooks.Delivery, error)
	Retry(ctx context.Context, id, delivery int64) (webhooks.Delivery, error)
}

// deliveriesShown is how many recent deliveries a webhook's page lists.
const deliveriesShown = 50

// registerWebhooks adds the webhook pages; with is Register's middleware chain maker.
func (h *Handler) registerWebhooks(e *echo.Echo, with func(own ...echo.MiddlewareFunc) []echo.MiddlewareFunc) {
	get := []string{http.MethodGet, http.MethodHead}
	post := with(h.authenticated, h.guardPost(maxForm), h.checkCSRF)
	e.Match(get, "/dashboard/webhooks", h.webhooksPage, with(h.authenticated)...)
	e.Match(get, "/dashboard/webhooks/new", h.newWebhookPage, with(h.authenticated)...)
	e.POST("/dashboard/webhooks", h.createWebhook, post...)
	e.Match(get, "/dashboard/webhooks/:id", h.webhookPage, with(h.authenticated)...)
	e.Match(get, "/dashboard/webhooks/:id/edit", h.editWebhookPage, with(h.authenticated)...)
	e.POST("/dashboard/webhooks/:id/edit", h.updateWebhook, post...)
	e.Match(get, "/dashboard/webhooks/:id/secret", h.askAboutWebhook("webhooksecret", "New signing secret"), with(h.authenticated)...)
	e.POST("/dashboard/webhooks/:id/secret", h.rotateSecret, post...)
	e.Match(get, "/dashboard/webhooks/:id/delete", h.askAboutWebhook("webhookdelete", "Delete webhook"), with(h.authenticated)...)
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
	Webhooks []webhooks.Webhook
	Deleted  string // the id just deleted
	// SentAfterDelete: a create form was sent again after the webhook it made was deleted.
	SentAfterDelete bool
}

func (h *Handler) webhooksPage(c echo.Context) error {
	ws, err := h.webhooks.List(c.Request().Context())
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "webhooks", view{Title: "Webhooks", Data: webhooksListPage{Webhooks: ws, Deleted: c.QueryParam("deleted"),
		SentAfterDelete: c.QueryParam("created") == "deleted"}})
}

// webhookForm is the create form as submitted, shown again with its error.
type webhookForm struct {
	URL, Links, Tags string
	Domain           string // a host; "" for every domain
	// Nonce is the create form's one-time token: the form sent twice makes one webhook.
	Nonce       string
	IncludeBots bool
	Error       string
}

// webhookFormPage is the data of the create and edit pages, and of a page that shows a
// signing secret once: the result of a create or of a rotation.
type webhookFormPage struct {
	Form    webhookForm
	Editing int64 // the webhook the form edits; 0: a new one
	Created *webhooks.Webhook
	Rotated bool             // Created holds a new secret of an existing webhook
	Domains []domains.Domain // for the domain filter; nil: a text field
	// GoneDomain is the form's domain when Domains lacks it (removed since the webhook
	// was made): offered as chosen, so saving another change keeps the filter.
	GoneDomain string
}

func (h *Handler) newWebhookPage(c echo.Context) error {
	return h.renderWebhookForm(c, http.StatusOK, webhookForm{Nonce: uuid.NewString()}, 0)
}

// renderWebhookForm shows the create form, or the edit form of webhook editing, with
// the domains to filter by.
func (h *Handler) renderWebhookForm(c echo.Context, status int, f webhookForm, editing int64) error {
	title := "New webhook"
	if editing != 0 {
		title = "Edit webhook " + strconv.FormatInt(editing, 10)
	}
	p := webhookFormPage{Form: f, Editing: editing, Domains: h.domainChoices()}
	if editing != 0 && p.Domains != nil && f.Domain != "" && !slices.ContainsFunc(p.Domains, func(d domains.Domain) bool { return d.Host == f.Domain }) {
		p.GoneDomain = f.Domain
	}
	return h.render(c, status, "webhooknew", view{Title: title, Data: p})
}

// readWebhookForm reads the create form; blank links, tags or domain mean all of them.
func readWebhookForm(v url.Values) (webhookForm, webhooks.NewWebhook) {
	f := webhookForm{URL: strings.TrimSpace(v.Get("url")), Links: v.Get("links"), Tags: v.Get("tags"),
		Domain: strings.TrimSpace(v.Get("domain")), IncludeBots: v.Get("include_bots") == "1"}
	n := webhooks.NewWebhook{URL: f.URL, Links: parseTags(f.Links), Tags: parseTags(f.Tags), IncludeBots: f.IncludeBots}
	if f.Domain != "" {
		n.Domain = &f.Domain
	}
	if nonce, err := uuid.Parse(v.Get("nonce")); err == nil {
		f.Nonce, n.FormNonce = nonce.String(), &nonce
	}
	return f, n
}

// createWebhook answers with the result page itself rather than a redirect: the
// secret is shown this once and must not sit in a URL or a later page.
func (h *Handler) createWebhook(c echo.Context) error {
	form, n := readWebhookForm(c.Request().PostForm)
	w, err := h.webhooks.Create(c.Request().Context(), n)
	if errors.Is(err, webhooks.ErrFormSent) {
		// Sent again, by a reload of the page with the secret say: no second webhook,
		// which would get every click twice.
		if w.ID == 0 {
			return c.Redirect(http.StatusSeeOther, "/dashboard/webhooks?created=deleted")
		}
		return c.Redirect(http.StatusSeeOther, backToWebhook(w.ID, "created", "before"))
	}
	if pe, ok := h.userError(err); ok {
		form.Error = pe.Detail
		return h.renderWebhookForm(c, pe.Status, form, 0)
	}
	if err != nil {
		return err
	}
	return h.render(c, http.StatusCreated, "webhooknew", view{Title: "Webhook created", Data: webhookFormPage{Created: &w}})
}

// backToWebhook is the webhook's page with a notice of what was just done (k=v).
func backToWebhook(id int64, k, v string) string {
	return withQuery("/dashboard/webhooks/"+strconv.FormatInt(id, 10), k, v)
}

// pathWebhook reads the webhook the path names.
func (h *Handler) pathWebhook(c echo.Context) (webhooks.Webhook, error) {
	id, err := pathID(c, "id")
	if err != nil {
		return webhooks.Webhook{}, err
	}
	return h.webhooks.Get(c.Request().Context(), id)
}

// editWebhookPage shows a webhook's settings in the create form's fields.
func (h *Handler) editWebhookPage(c echo.Context) error {
	w, err := h.pathWebhook(c)
	if err != nil {
		return err
	}
	f := webhookForm{URL: w.URL, Links: strings.Join(w.Links, ", "), Tags: strings.Join(w.Tags, ", "), IncludeBots: w.IncludeBots}
	if w.Domain != nil {
		f.Domain = *w.Domain
	}
	return h.renderWebhookForm(c, http.StatusOK, f, w.ID)
}

// updateWebhook saves the edit form: every field as sent, blank meaning all, as at
// creation.
func (h *Handler) updateWebhook(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	form, n := readWebhookForm(c.Request().PostForm)
	ch := webhooks.Change{URL: &n.URL, IncludeBots: &n.IncludeBots, SetLinks: true, Links: n.Links,
		SetTags: true, Tags: n.Tags, SetDomain: true, Domain: n.Domain}
	_, err = h.webhooks.Update(c.Request().Context(), id, ch)
	if pe, ok := h.userError(err); ok && pe.Status != http.StatusNotFound {
		form.Error = pe.Detail
		return h.renderWebhookForm(c, pe.Status, form, id)
	}
	if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, backToWebhook(id, "saved", "1"))
}

// askAboutWebhook is the page that asks before a webhook changes for good, shown with
// template page: before a delete, or before a new secret (the receiver must be told it).
func (h *Handler) askAboutWebhook(page, title string) echo.HandlerFunc {
	return func(c echo.Context) error {
		w, err := h.pathWebhook(c)
		if err != nil {
			return err
		}
		return h.render(c, http.StatusOK, page, view{Title: title, Data: webhookDetailPage{Webhook: w}})
	}
}

// rotateSecret answers with the new secret itself, as createWebhook does: it is shown
// this once and must not sit in a URL or a later page.
//
// The form names the secret it replaces: sent again (a reload of that page, or Back),
// it finds a newer one and replaces nothing, so the secret just copied stays valid.
func (h *Handler) rotateSecret(c echo.Context) error {
	current, err := h.pathWebhook(c)
	if err != nil {
		return err
	}
	if c.Request().PostForm.Get("replaces") != current.SecretTag() {
		return c.Redirect(http.StatusSeeOther, backToWebhook(current.ID, "secret", "kept"))
	}
	w, err := h.webhooks.RotateSecret(c.Request().Context(), current.ID)
	if err != nil {
		return err
	}
	return h.render(c, http.StatusOK, "webhooknew", view{Title: "New signing secret", Data: webhookFormPage{Created: &w, Rotated: true}})
}

// webhookDetailPage is the data of /dashboard/webhooks/:id.
type webhookDetailPage struct {
	Webhook    webhooks.Webhook
	Deliveries []webhooks.Delivery
	Sent       *webhooks.Delivery // the ping or retry just sent
	SentKind   string             // "ping" or "retry"
	Saved      bool               // the edit form was just saved
	// SecretKept: a new-secret form was sent again after it had been used; nothing changed.
	SecretKept bool
	// CreatedBefore: the create form was sent again; it had made this webhook.
	CreatedBefore bool
}

func (h *Handler) webhookPage(c echo.Context) error {
	w, err := h.pathWebhook(c)
	if err != nil {
		return err
	}
	ds, err := h.webhooks.Deliveries(c.Request().Context(), w.ID, deliveriesShown)
	if err != nil {
		return err
	}
	p := webhookDetailPage{Webhook: w, Deliveries: ds, Saved: c.QueryParam("saved") == "1", SecretKept: c.QueryParam("secret") == "kept",
		CreatedBefore: c.QueryParam("created") == "before"}
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
	return h.render(c, http.StatusOK, "webhook", view{Title: "Webhook " + strconv.FormatInt(w.ID, 10), Data: p})
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
	return c.Redirect(http.StatusSeeOther, backToWebhook(id, "ping", strconv.FormatInt(d.ID, 10)))
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
	return c.Redirect(http.StatusSeeOther, backToWebhook(id, "retry", strconv.FormatInt(d.ID, 10)))
}
