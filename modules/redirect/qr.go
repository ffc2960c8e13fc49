package redirect

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/skip2/go-qrcode"

	"github.com/hop-dev/hop/internal/problem"
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
	code, err := qrcode.New(h.baseURLFor(c.Request())+"/"+slug, qrcode.Medium)
	if err != nil {
		return fmt.Errorf("qr code: %w", err)
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	switch c.QueryParam("format") {
	case "", "png":
		png, err := code.PNG(size)
		if err != nil {
			return fmt.Errorf("qr code: %w", err)
		}
		return c.Blob(http.StatusOK, "image/png", png)
	case "svg":
		return c.Blob(http.StatusOK, "image/svg+xml", svgOf(code.Bitmap()))
	}
	return problem.Invalid("format must be png or svg")
}

// svgOf draws a QR bitmap as one SVG path, one unit per module.
func svgOf(bitmap [][]bool) []byte {
	n := len(bitmap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges">`, n, n)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y, row := range bitmap {
		for x, on := range row {
			if on {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x, y)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return []byte(b.String())
}
