// Package problemtest gives module tests a stand-in for app's error table: modules are
// tested without app, so each test names the statuses its own sentinels get.
package problemtest

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// Describe answers errors by kinds, each "STATUS type" such as "404 link-not-found"
// (matched with errors.Is), the generic kinds of package problem as app does (400,
// 413, 415, 408), and anything else as a 500. The detail is the error's client-facing
// detail, else its text.
func Describe(kinds map[error]string) problem.Describe {
	generic := map[error]string{
		problem.ErrInvalid: "400 invalid-request", problem.ErrTooLarge: "413 body-too-large",
		problem.ErrUnsupportedMedia: "415 unsupported-media-type", problem.ErrBodyTimeout: "408 body-timeout",
	}
	return func(err error) problem.Problem {
		detail, ok := problem.DetailOf(err)
		if !ok && err != nil {
			detail = err.Error()
		}
		for _, m := range []map[error]string{kinds, generic} {
			for sentinel, kind := range m {
				if errors.Is(err, sentinel) {
					code, typ, _ := strings.Cut(kind, " ")
					status, _ := strconv.Atoi(code)
					return problem.Problem{Status: status, Type: "https://hop.dev/problems/" + typ, Title: http.StatusText(status), Detail: detail}
				}
			}
		}
		return problem.Problem{Status: http.StatusInternalServerError, Type: "about:blank", Title: http.StatusText(http.StatusInternalServerError), Detail: detail}
	}
}

// ErrorHandler renders errors as app does, as problem JSON, from describe.
func ErrorHandler(describe problem.Describe) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var he *echo.HTTPError
		p := describe(err)
		if p.Status == http.StatusInternalServerError && errors.As(err, &he) {
			p.Status, p.Detail = he.Code, http.StatusText(he.Code)
		}
		c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
		c.Response().WriteHeader(p.Status)
		_ = c.JSON(p.Status, map[string]any{"type": p.Type, "title": p.Title, "status": p.Status, "detail": p.Detail})
	}
}
