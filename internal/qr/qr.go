// Package qr draws the QR code of a short URL as PNG or SVG, for the redirect
// module's public /{slug}/qr and the dashboard's own.
package qr

import (
	"fmt"
	"strings"

	"github.com/skip2/go-qrcode"

	"github.com/hop-dev/hop/internal/problem"
)

// Render returns the code of url in format ("" or "png": a size×size PNG; "svg": a
// scalable drawing) and its media type. An unknown format is a client error.
func Render(url, format string, size int) (mediaType string, body []byte, err error) {
	if format != "" && format != "png" && format != "svg" {
		return "", nil, problem.Invalid("format must be png or svg")
	}
	code, err := qrcode.New(url, qrcode.Medium)
	if err != nil {
		return "", nil, fmt.Errorf("qr code: %w", err)
	}
	if format == "svg" {
		return "image/svg+xml", svg(code.Bitmap()), nil
	}
	png, err := code.PNG(size)
	if err != nil {
		return "", nil, fmt.Errorf("qr code: %w", err)
	}
	return "image/png", png, nil
}

// svg draws a QR bitmap (quiet zone included) as one SVG path: a rectangle per run of
// dark modules in a row, one unit per module.
func svg(bitmap [][]bool) []byte {
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
