package redirect

import (
	"io"
	"log/slog"
	"net/netip"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem/problemtest"
)

// testDescribe stands in for app's error table.
var testDescribe = problemtest.Describe(map[error]string{
	ErrNotFound: "404 link-not-found", ErrGone: "410 link-gone", ErrExpired: "410 link-expired",
	ErrLimitReached: "410 link-limit-reached", ErrLimitDown: "503 click-limit-unavailable", ErrUnavailable: "503 lookup-timeout",
	ErrLookupFailed: "503 lookup-unavailable"})

// newEcho returns an Echo whose error handler answers a problem's status and type as
// problem JSON, as the app's does.
func newEcho() *echo.Echo {
	e := echo.New()
	e.HTTPErrorHandler = problemtest.ErrorHandler(testDescribe)
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
