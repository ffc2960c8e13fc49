// Package jsonbody reads a management request's JSON body the one way every route
// does: a JSON media type, exactly one value, and errors that tell the client what to
// fix in its own terms (field names and JSON kinds, never Go types).
package jsonbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

// Decode reads the request's body into v. It must be sent as JSON and hold exactly
// one value. With strict, an object field v has no place for is refused by name;
// otherwise v's own UnmarshalJSON may refuse it.
func Decode(c echo.Context, v any, strict bool) error {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || (mt != echo.MIMEApplicationJSON && !strings.HasSuffix(mt, "+json")) {
		return problem.With(problem.ErrUnsupportedMedia, "the request body must be JSON (Content-Type: application/json)")
	}
	return Read(c.Request().Body, v, strict)
}

// Read is Decode for a body already known to be JSON.
func Read(r io.Reader, v any, strict bool) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return explain(err)
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD, storing what the
	// client never sent.
	if !utf8.Valid(b) {
		return problem.Invalid("the request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return explain(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return problem.Invalid("the body must hold a single JSON value")
	}
	return nil
}

// explain turns a read or decode error into the problem a client is shown.
func explain(err error) error {
	if _, ok := problem.DetailOf(err); ok {
		return err // already says what is wrong, e.g. an unknown field
	}
	var (
		he  *echo.HTTPError
		mbe *http.MaxBytesError
		syn *json.SyntaxError
		te  *json.UnmarshalTypeError
		pe  *time.ParseError
	)
	switch {
	case errors.As(err, &he), errors.As(err, &mbe):
		return problem.With(problem.ErrTooLarge, "the request body is larger than the limit")
	case errors.Is(err, os.ErrDeadlineExceeded):
		return problem.With(problem.ErrBodyTimeout, "the request body did not arrive in time")
	case errors.Is(err, io.EOF):
		return problem.Invalid("the request body is empty; send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.Invalid("malformed JSON: the body ends early")
	case errors.As(err, &syn):
		return problem.Invalid("malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &te):
		if te.Field != "" {
			return problem.Invalid("field %q must be %s, not %s", te.Field, kind(te.Type.Kind().String()), te.Value)
		}
		return problem.Invalid("expected %s, not %s", kind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &pe):
		return problem.Invalid("times must be RFC 3339, like 2030-01-02T15:04:05Z")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return problem.Invalid("unknown field %s", f)
	}
	return problem.Invalid("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// kind names a Go kind as the JSON a client would send.
func kind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int", "int64", "int16", "int32", "uint", "uint64", "uint32", "uint16":
		return "an integer"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "ptr":
		return "a value of the documented type"
	}
	return k
}

// Field decodes one member of an object already read (a PATCH body's fields, say),
// naming it in any error as Decode names the fields it finds wrong.
func Field(name string, m json.RawMessage, v any) error {
	err := json.Unmarshal(m, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return problem.Invalid("field %q must be %s, not %s", name, kind(te.Type.Kind().String()), te.Value)
	}
	d, _ := problem.DetailOf(explain(err))
	return problem.Invalid("field %q: %s", name, d)
}
