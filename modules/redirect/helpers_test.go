package redirect

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// newEcho returns an Echo whose error handler answers a problem's status, as the app's does.
func newEcho() *echo.Echo {
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		var p *problem.Error
		if errors.As(err, &p) {
			_ = c.NoContent(p.Status)
			return
		}
		_ = c.NoContent(500)
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
