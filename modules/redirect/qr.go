package redirect

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/qr"
)

const (
	defaultQRSize = 256
	minQRSize     = 64
	maxQRSize     = 1024
)

// qr answers GET /{slug}/qr: a QR code of the short URL, PNG by default or SVG with
// ?format=svg, sized by ?size= (PNG pixels). Unknown, deleted, expired and used-up
// links answer 404/410 problems like the redirect, and showing a code is not a click.
func (h *Handler) qr(c echo.Context) error {
	k := h.keyOf(c)
	slug := k.slug
	_, o, err := h.resolve(c.Request().Context(), k)
	if err != nil {
		return h.lookupFailed(c, err)
	}
	switch o {
	case notFound:
		return ErrNotFound
	case deleted:
		return ErrGone
	case expired:
		return ErrExpired
	case limitReached:
		return ErrLimitReached
	}
	size := defaultQRSize
	if v := c.QueryParam("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < minQRSize || n > maxQRSize {
			return problem.Invalid("size must be an integer from %d to %d", minQRSize, maxQRSize)
		}
		size = n
	}
	mediaType, body, err := qr.Render(h.baseURLFor(c.Request())+"/"+slug, c.QueryParam("format"), size)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.Blob(http.StatusOK, mediaType, body)
}
