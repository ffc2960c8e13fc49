package dashboard

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/qr"
	"github.com/hop-dev/hop/modules/links"
)

// qrSize is the side of the QR code PNG in pixels.
const qrSize = 256

// qr answers GET /dashboard/links/:slug/qr[?domain=&format=svg]: the QR code of the
// short URL the link page shows. The dashboard draws it rather than pointing at the
// short domain's own /{slug}/qr, which answers for the Host it is asked on: a link of
// another domain would get the default domain's code, and the page's CSP allows
// images from the dashboard's origin only. Like /{slug}/qr, a link that no longer
// redirects has no code.
func (h *Handler) qr(c echo.Context) error {
	l, err := h.link(c)
	if err != nil {
		return err
	}
	if l.Status != links.StatusActive && l.Status != "" {
		return echo.NewHTTPError(http.StatusGone)
	}
	mediaType, body, err := qr.Render(h.shortURL(c, l), c.QueryParam("format"), qrSize)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, mediaType, body)
}
