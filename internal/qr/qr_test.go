package qr

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hop-dev/hop/internal/problem"
)

func TestRender(t *testing.T) {
	t.Parallel()
	mt, png, err := Render("https://go.example.com/abc", "", 128)
	if err != nil || mt != "image/png" || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("png: %q %d bytes %v", mt, len(png), err)
	}
	mt, svg, err := Render("https://go.example.com/abc", "svg", 128)
	if err != nil || mt != "image/svg+xml" || !strings.HasPrefix(string(svg), "<svg ") || !strings.HasSuffix(string(svg), "</svg>") {
		t.Fatalf("svg: %q %.60s %v", mt, svg, err)
	}
	if _, _, err := Render("https://go.example.com/abc", "gif", 128); !errors.Is(err, problem.ErrInvalid) {
		t.Fatalf("gif: %v, want an invalid-input problem", err)
	}
}
