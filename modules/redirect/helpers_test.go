package redirect

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/netip"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// newEcho returns an Echo whose error handler answers a problem's status and type as
// problem JSON, as the app's does.
func newEcho() *echo.Echo {
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		var p *problem.Error
		if !errors.As(err, &p) {
			p = &problem.Error{Status: 500}
		}
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		c.Response().WriteHeader(p.Status)
		if c.Request().Method != "HEAD" {
			_ = json.NewEncoder(c.Response()).Encode(map[string]any{"type": p.Type, "status": p.Status, "detail": p.Detail})
		}
	}
	return e
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}
