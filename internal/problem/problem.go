// Package problem is hop's error vocabulary for HTTP: an error that knows the RFC 9457
// problem response it should become. Modules declare their sentinel errors with it so
// the one HTTP error handler in app can render every failure the same way.
package problem

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is an error with the HTTP status and problem type it maps to.
type Error struct {
	Status int    // HTTP status code
	Type   string // problem type URI; "about:blank" when empty
	Title  string // short summary; the status text when empty
	Detail string // human-readable explanation of this occurrence
	Err    error  // underlying cause, never shown to clients
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Detail + ": " + e.Err.Error()
	}
	return e.Detail
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches sentinel problems by status and type, so a sentinel declared with New
// matches a copy of it carrying a more specific detail (see With).
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t == e || (t.Status == e.Status && t.Type != "" && t.Type == e.Type)
}

// New returns a problem with the given status, type slug and detail. typ is a short
// slug such as "slug-taken"; it becomes the problem's type URI.
func New(status int, typ, detail string) *Error {
	t := ""
	if typ != "" {
		t = "https://hop.dev/problems/" + typ
	}
	return &Error{Status: status, Type: t, Title: http.StatusText(status), Detail: detail}
}

// With returns a copy of e with a more specific detail; errors.Is(copy, e) holds.
func (e *Error) With(format string, args ...any) *Error {
	c := *e
	c.Detail = fmt.Sprintf(format, args...)
	return &c
}

// Invalid is a 400 problem for input that fails validation.
func Invalid(format string, args ...any) *Error {
	return New(http.StatusBadRequest, "invalid-request", fmt.Sprintf(format, args...))
}
