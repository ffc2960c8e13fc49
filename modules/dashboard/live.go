package dashboard

import (
	"errors"

	"github.com/labstack/echo/v4"
)

// ErrSignedOut answers API routes served to the dashboard's own pages without a session.
var ErrSignedOut = errors.New("no dashboard session")

// SessionOnly guards API routes that the dashboard's pages call with their session
// (the live click feed, mounted under /dashboard/ where the session cookie is sent):
// a request with a live session passes, any other is a 401 problem, not a redirect to
// the sign-in page, since the caller is a script.
func (h *Handler) SessionOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		s, err := h.currentSession(c)
		if errors.Is(err, errNoSession) {
			return ErrSignedOut
		}
		if err != nil {
			return err
		}
		c.Set(ctxSession, s)
		return next(c)
	}
}
