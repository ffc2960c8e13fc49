package dashboard

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/skip2/go-qrcode"

	"github.com/hop-dev/hop/internal/problem"
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
	code, err := qrcode.New(h.shortURL(c, l), qrcode.Medium)
	if err != nil {
		return fmt.Errorf("qr code: %w", err)
	}
	switch c.QueryParam("format") {
	case "", "png":
		png, err := code.PNG(qrSize)
		if err != nil {
			return fmt.Errorf("qr code: %w", err)
		}
		return c.Blob(http.StatusOK, "image/png", png)
	case "svg":
		return c.Blob(http.StatusOK, "image/svg+xml", qrSVG(code.Bitmap()))
	}
	return problem.Invalid("format must be png or svg")
}

// qrSVG draws a QR bitmap (quiet zone included) as one SVG path: a rectangle per run
// of dark modules in a row, one unit per module.
func qrSVG(bitmap [][]bool) []byte {
	n := len(bitmap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" shape-rendering="crispEdges">`, n, n)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y, row := range bitmap {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			run := 0
			for x+run < len(row) && row[x+run] {
				run++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", x, y, run, run)
			x += run
		}
	}
	b.WriteString(`"/></svg>`)
	return []byte(b.String())
}
