package app

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/modules/apikey"
	"github.com/hop-dev/hop/modules/dashboard"
	"github.com/hop-dev/hop/modules/domains"
	"github.com/hop-dev/hop/modules/idempotency"
	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/live"
	"github.com/hop-dev/hop/modules/ratelimit"
	"github.com/hop-dev/hop/modules/redirect"
	"github.com/hop-dev/hop/modules/stats"
	"github.com/hop-dev/hop/modules/webhooks"
)

// problemKind is how one sentinel error is answered: its status, its problem type (a
// slug under problemBase) and the detail shown unless the error carries its own
// (problem.With).
type problemKind struct {
	err    error
	status int
	typ    string
	detail string
}

const problemBase = "https://hop.dev/problems/"

// Words shared by the modules that each declare their own sentinel for the same thing.
const (
	linkNotFound = "no link has this slug"
	linkGone     = "this link was deleted"
)

// problemTable is every failure a client is told about, in one place: the modules
// declare plain sentinels, and this is the only place that gives them statuses.
func problemTable() []problemKind {
	return []problemKind{
		{problem.ErrInvalid, http.StatusBadRequest, "invalid-request", "the request is invalid"},
		{problem.ErrTooLarge, http.StatusRequestEntityTooLarge, "body-too-large", "the request body is larger than the limit"},
		{problem.ErrUnsupportedMedia, http.StatusUnsupportedMediaType, "unsupported-media-type", "the request body is in a media type this route does not take"},
		{problem.ErrBodyTimeout, http.StatusRequestTimeout, "body-timeout", "the request body did not arrive in time"},

		{links.ErrNotFound, http.StatusNotFound, "link-not-found", linkNotFound},
		{links.ErrGone, http.StatusGone, "link-gone", linkGone},
		{links.ErrSlugTaken, http.StatusConflict, "slug-taken", "this slug is taken (slugs of deleted links are never reused)"},
		{idempotency.ErrMismatch, http.StatusUnprocessableEntity, "idempotency-key-reused", "this Idempotency-Key was used with a different request; use a new key for a new request"},
		{idempotency.ErrInProgress, http.StatusConflict, "idempotency-key-in-progress", "a request with this Idempotency-Key is still being answered; retry shortly"},
		{links.ErrOutOfTime, http.StatusServiceUnavailable, "bulk-out-of-time", "not created: the request ran out of time before this link; send it again"},

		{redirect.ErrNotFound, http.StatusNotFound, "link-not-found", linkNotFound},
		{redirect.ErrGone, http.StatusGone, "link-gone", linkGone},
		{redirect.ErrExpired, http.StatusGone, "link-expired", "this link has expired"},
		{redirect.ErrLimitReached, http.StatusGone, "link-limit-reached", "this link has reached its click limit"},
		{redirect.ErrLimitDown, http.StatusServiceUnavailable, "click-limit-unavailable", "this link's click limit cannot be checked right now; try again in a moment"},
		{redirect.ErrUnavailable, http.StatusServiceUnavailable, "lookup-timeout", "the link could not be looked up in time; retry in a moment"},
		{redirect.ErrLookupFailed, http.StatusServiceUnavailable, "lookup-unavailable", "the link could not be looked up right now; retry in a moment"},

		{domains.ErrNotFound, http.StatusNotFound, "domain-not-found", "no domain has this host"},
		{domains.ErrHostTaken, http.StatusConflict, "domain-exists", "a domain with this host exists already"},
		{domains.ErrHasLinks, http.StatusConflict, "domain-has-links", "the domain still has links; delete them first"},
		{domains.ErrDefaultDomain, http.StatusConflict, "default-domain", "the default domain is configured by HOP_BASE_URL and HOP_*_REDIRECT; it cannot be changed or removed here"},

		{stats.ErrNotFound, http.StatusNotFound, "link-not-found", linkNotFound},
		{stats.ErrGone, http.StatusGone, "link-gone", linkGone},

		{live.ErrNotFound, http.StatusNotFound, "link-not-found", linkNotFound},
		{live.ErrGone, http.StatusGone, "link-gone", linkGone},
		{webhooks.ErrNotFound, http.StatusNotFound, "webhook-not-found", "no webhook has this id"},
		{webhooks.ErrNoDelivery, http.StatusNotFound, "delivery-not-found", "this webhook has no delivery with this id"},
		{webhooks.ErrInvalid, http.StatusBadRequest, "invalid-webhook", "the webhook is invalid"},
		{webhooks.ErrForbiddenURL, http.StatusBadRequest, "webhook-url-forbidden", "the webhook URL resolves to a loopback, private, link-local or metadata address (set HOP_WEBHOOK_ALLOW_PRIVATE=true to allow)"},

		{apikey.ErrUnauthorized, http.StatusUnauthorized, "unauthorized", "a valid API key is required: send Authorization: Bearer KEY or X-Api-Key: KEY"},
		{apikey.ErrTooManyFailures, http.StatusTooManyRequests, "rate-limited", "too many failed authentications from this address; retry after the number of seconds in Retry-After"},
		{errMetricsToken, http.StatusUnauthorized, "unauthorized", "/metrics needs Authorization: Bearer with the metrics token (HOP_METRICS_TOKEN)"},
		{ratelimit.ErrLimited, http.StatusTooManyRequests, "rate-limited", "too many requests"},

		{dashboard.ErrSignedOut, http.StatusUnauthorized, "unauthorized", "sign in to the dashboard first"},
		{dashboard.ErrForbiddenOrigin, http.StatusForbidden, "cross-origin-form", "this form was not sent from this site"},
		{dashboard.ErrBadCSRF, http.StatusForbidden, "csrf", "the form has expired or did not come from this page; reload the page and try again"},
	}
}

// describer returns the function that answers an error from the table: the first
// kind err is (errors.Is) gives status, type and detail; Echo's own errors (no route,
// wrong method) keep their status; anything else is an internal error whose words
// reveal nothing.
func describer() problem.Describe {
	table := problemTable()
	return func(err error) problem.Problem {
		for _, k := range table {
			if errors.Is(err, k.err) {
				p := problem.Problem{Status: k.status, Type: problemBase + k.typ, Title: http.StatusText(k.status), Detail: k.detail}
				if d, ok := problem.DetailOf(err); ok {
					p.Detail = d
				}
				return p
			}
		}
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return problem.Problem{Status: he.Code, Type: "about:blank", Title: http.StatusText(he.Code), Detail: httpErrorDetail(he)}
		}
		return problem.Problem{Status: http.StatusInternalServerError, Type: "about:blank",
			Title: http.StatusText(http.StatusInternalServerError), Detail: "an internal error occurred; it has been logged"}
	}
}
