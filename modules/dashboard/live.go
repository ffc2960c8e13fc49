package dashboard

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// errSignedOut answers API routes served to the dashboard's own pages without a session.
var errSignedOut = problem.New(http.StatusUnauthorized, "unauthorized", "sign in to the dashboard first")

// SessionOnly guards API routes that the dashboard's pages call with their session
// (the live click feed, mounted under /dashboard/ where the session cookie is sent):
// a request with a live session passes, any other is a 401 problem, not a redirect to
// the sign-in page, since the caller is a script.
func (h *Handler) SessionOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		s, err := h.currentSession(c)
		if errors.Is(err, errNoSession) {
			return errSignedOut
		}
		if err != nil {
			return err
		}
		c.Set(ctxSession, s)
		return next(c)
	}
}
