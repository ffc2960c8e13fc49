package jsonbody

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/hop-dev/hop/internal/problem"
)

type sample struct {
	Host string   `json:"host"`
	Tags []string `json:"tags"`
	On   bool     `json:"on"`
}

// Every bad body is refused with words a client can act on: field names and JSON
// kinds, never Go types or package names; invalid UTF-8 is refused, not replaced.
func TestErrorsSpeakJSON(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"host":123}`:                  `field "host" must be a string, not number`,
		`{"tags":"x"}`:                  `field "tags" must be an array, not string`,
		`{"on":"yes"}`:                  `field "on" must be true or false, not string`,
		`{"host":"a","color":"red"}`:    `unknown field "color"`,
		`{"host":"a"} true`:             `the body must hold a single JSON value`,
		`{"host":"a"}garbage`:           `the body must hold a single JSON value`,
		``:                              `the request body is empty; send a JSON object`,
		`{"host":`:                      `malformed JSON: the body ends early`,
		`{"host" "a"}`:                  `malformed JSON at byte 9`,
		"{\"host\":\"https://x/\xff\"}": `the request body is not valid UTF-8`,
		`[1,2]`:                         `expected an object, not array`,
	} {
		err := Read(strings.NewReader(body), &sample{}, true)
		d, ok := problem.DetailOf(err)
		if !ok || !strings.Contains(d, want) || strings.Contains(d, "Go ") || strings.Contains(d, "sample") {
			t.Errorf("%q: %q (%v), want it to say %q", body, d, err, want)
		}
	}
	var s sample
	if err := Read(strings.NewReader(`{"host":"Bücher.example","tags":["a"],"on":true}`), &s, true); err != nil || s.Host != "Bücher.example" || !s.On {
		t.Fatalf("a good body: %+v, %v", s, err)
	}
	if err := Read(strings.NewReader(`{"host":"a","color":"red"}`), &s, false); err != nil {
		t.Fatalf("not strict: %v", err)
	}
	if err := Field("on", json.RawMessage(`"no"`), &s.On); err == nil || !strings.Contains(err.Error(), `field "on" must be true or false, not string`) {
		t.Fatalf("Field: %v", err)
	}
}

// Only JSON media types are read.
func TestDecodeWantsJSON(t *testing.T) {
	t.Parallel()
	e := echo.New()
	for ct, ok := range map[string]bool{"application/json": true, "application/merge-patch+json": true,
		"application/json; charset=utf-8": true, "text/plain": false, "": false} {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"host":"a"}`))
		req.Header.Set(echo.HeaderContentType, ct)
		err := Decode(e.NewContext(req, httptest.NewRecorder()), &sample{}, true)
		if (err == nil) != ok {
			t.Errorf("Content-Type %q: %v", ct, err)
		}
	}
}

func FuzzRead(f *testing.F) {
	for _, s := range []string{`{"host":"a","tags":["x"],"on":true}`, `{"host":1}`, `[]`, `{"x":1}`, "\xff", `{"host":"a"} {}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		err := Read(strings.NewReader(body), &sample{}, true)
		if err == nil {
			return
		}
		if _, ok := problem.DetailOf(err); !ok {
			t.Fatalf("%q: %v has no detail for the client", body, err)
		}
	})
}
