package dashboard

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"

	"github.com/labstack/echo/v4"
)

// liveScript is the live panel's script. It is served at a fixed URL revalidated on
// every load (the panel's template names it without a version), unlike the static
// assets, whose URLs carry their hash.
func liveScript() (body []byte, etag string, err error) {
	body, err = assets.ReadFile("assets/live/live.js")
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(body)
	return body, `"` + hex.EncodeToString(sum[:6]) + `"`, nil
}

// LiveScript serves the live panel's script (GET /dashboard/live.js).
func (h *Handler) LiveScript() (echo.HandlerFunc, error) {
	body, etag, err := liveScript()
	if err != nil {
		return nil, err
	}
	return func(c echo.Context) error {
		hd := c.Response().Header()
		hd.Set("Cache-Control", "no-cache")
		hd.Set("ETag", etag)
		hd.Set("X-Content-Type-Options", "nosniff")
		if c.Request().Header.Get("If-None-Match") == etag {
			return c.NoContent(http.StatusNotModified)
		}
		return c.Blob(http.StatusOK, "text/javascript; charset=utf-8", body)
	}, nil
}
