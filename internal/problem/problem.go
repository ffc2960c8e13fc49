// Package problem is the vocabulary modules share for failures a client must hear about.
// Modules declare plain sentinel errors and attach a client-facing detail with With;
// app's one error table turns each sentinel into an RFC 9457 problem (status, type,
// title, detail), and hands modules that render problems themselves (a page, a bulk
// item's result) that table as a Describe function.
package problem

import (
	"errors"
	"fmt"
)

// Kinds of failure that are not one module's business: the table in app maps them.
var (
	ErrInvalid          = errors.New("invalid request")        // input the client must correct
	ErrTooLarge         = errors.New("request body too large") // a body over its limit
	ErrUnsupportedMedia = errors.New("unsupported media type") // a body in a media type the route does not take
	ErrBodyTimeout      = errors.New("request body did not arrive in time")
)

// Problem is the RFC 9457 description of a failure, as app's table assigns it.
type Problem struct {
	Status int    // HTTP status code
	Type   string // problem type URI; "about:blank" for an unknown failure
	Title  string // short summary (the status text)
	Detail string // human-readable explanation of this occurrence
}

// Describe maps an error to the problem a client is shown.
type Describe func(error) Problem

// detailed is an error of a kind (a sentinel) with a detail meant for the client.
type detailed struct {
	kind error
	msg  string
}

func (d *detailed) Error() string { return d.msg }
func (d *detailed) Unwrap() error { return d.kind }

// With returns an error of the given kind whose detail, shown to the client, is the
// formatted message; errors.Is(err, kind) holds.
func With(kind error, format string, args ...any) error {
	return &detailed{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Invalid is With(ErrInvalid, ...): input that fails validation, saying why.
func Invalid(format string, args ...any) error {
	return With(ErrInvalid, format, args...)
}

// DetailOf returns the client-facing detail err carries, if it has one.
func DetailOf(err error) (string, bool) {
	var d *detailed
	if errors.As(err, &d) {
		return d.msg, true
	}
	return "", false
}
