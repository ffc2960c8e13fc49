package domains

import (
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"go.example.com":        "go.example.com",
		" Go.Example.COM. ":     "go.example.com",
		"Bücher.example":        "xn--bcher-kva.example",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
		"localhost":             "localhost",
		"a-b.c1.example":        "a-b.c1.example",
	} {
		got, err := NormalizeHost(in)
		if err != nil || got != want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", "go.example.com:8080", "https://go.example.com", "go.example.com/x",
		"under_score.example", "-lead.example", "trail-.example", "a..b", "10.0.0.1", "[::1]", "a b.example",
		strings.Repeat("a", 64) + ".example", strings.Repeat("abcdefghi.", 26) + "example"} {
		if got, err := NormalizeHost(in); err == nil {
			t.Errorf("NormalizeHost(%q) = %q, want an error", in, got)
		}
	}
}

func TestRequestHost(t *testing.T) {
	for in, want := range map[string]string{
		"go.example.com":      "go.example.com",
		"GO.Example.com:8443": "go.example.com",
		"go.example.com.":     "go.example.com",
		"[::1]:8080":          "[::1]",
		"[::1]":               "[::1]",
		"":                    "",
	} {
		if got := requestHost(in); got != want {
			t.Errorf("requestHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// A normalized host is stable, a DNS name hop can match a Host header against.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"go.example.com", "Bücher.example", "GO.EXAMPLE.COM.", "a..b", "xn--", "10.0.0.1", "ß.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := NormalizeHost(in)
		if err != nil {
			return
		}
		if h == "" || len(h) > maxHost || strings.ContainsAny(h, ":/ _[]") || h != strings.ToLower(h) {
			t.Fatalf("NormalizeHost(%q) = %q", in, h)
		}
		if again, err := NormalizeHost(h); err != nil || again != h {
			t.Fatalf("NormalizeHost(%q) = %q, %v; not stable for %q", h, again, err, in)
		}
		if requestHost(h) != h || requestHost(strings.ToUpper(h)+":443") != h {
			t.Fatalf("Host header forms of %q do not match it", h)
		}
	})
}

func FuzzRequestHost(f *testing.F) {
	for _, s := range []string{"go.example.com:80", "[::1]:1", "A.B.", ":", "]:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h := requestHost(in)
		if len(h) > len(in) {
			t.Fatalf("requestHost(%q) = %q grew", in, h)
		}
	})
}

// A refused host says why in its own terms: an address is an address, a name ending
// in digits is not a name.
func TestNormalizeHostSaysWhy(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":  "is an IP address",
		"1.2.3.4.5": "its last label is all digits",
	} {
		if _, err := NormalizeHost(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NormalizeHost(%q): %v, want it to say %q", in, err, want)
		}
	}
}

// A fallback and a base URL are refused with a port no URL can have, and a fallback
// back to its own domain, which would answer with itself forever.
func TestFallbackAndBaseURLChecks(t *testing.T) {
	for _, c := range []struct{ field, raw, want string }{
		{"not_found_redirect", "https://go.example.com/zzz", "points to this domain itself"},
		{"root_redirect", "HTTPS://GO.EXAMPLE.COM.:8443/", "points to this domain itself"},
		{"expired_redirect", "https://elsewhere.example:99999/", "port 99999 is not between 1 and 65535"},
	} {
		if _, err := validateFallback(c.field, c.raw, "go.example.com"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("validateFallback(%s, %q): %v, want it to say %q", c.field, c.raw, err, c.want)
		}
	}
	if got, err := validateFallback("root_redirect", "https://www.example.com/", "go.example.com"); err != nil || got != "https://www.example.com/" {
		t.Errorf("a fallback elsewhere: %q, %v", got, err)
	}
	if _, err := validateBaseURL("https://p.example:99999"); err == nil || !strings.Contains(err.Error(), "port 99999") {
		t.Errorf("base_url with port 99999: %v", err)
	}
}
