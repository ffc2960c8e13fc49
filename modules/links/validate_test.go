package links

import (
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func TestValidateURL(t *testing.T) {
	t.Parallel()
	ok := []string{
		"http://example.com",
		"https://example.com/path?q=1#frag",
		"HTTPS://EXAMPLE.COM",
		"https://user:pass@example.com:8443/x",
		"https://[2001:db8::1]/",
		"https://xn--bcher-kva.example/",
		"https://example.com.:65535/",
		"https://example.com/" + strings.Repeat("a", maxURLLength-len("https://example.com/")),
	}
	for _, u := range ok {
		if err := validateURL(u); err != nil {
			t.Errorf("validateURL(%q) = %v, want ok", u, err)
		}
	}
	bad := map[string]string{
		"":                           "required",
		"javascript:alert(1)":        "scheme",
		"JavaScript:alert(1)":        "scheme",
		"data:text/html,<script>":    "scheme",
		"ftp://example.com":          "scheme",
		"file:///etc/passwd":         "scheme",
		"//example.com/x":            "absolute",
		"/relative":                  "absolute",
		"example.com":                "absolute",
		"http://":                    "host",
		"http:example.com":           "host",
		"https://:80/":               "host",
		"https://exa mple.com":       "whitespace",
		"https://example.com/\t":     "whitespace",
		"https://example.com/\x00":   "control",
		"https://example.com/\u2028": "whitespace",
		"https://example.com/%zz":    "valid URL",
		"https://example.com/\xff":   "UTF-8",
		"https://example.com:99999/": "port",
		"https://example.com:0/":     "port",
		"https://.../":               "empty label",
		"https://a..b.example/":      "empty label",
		"https://.example.com/":      "empty label",
		"https://example.com/" + strings.Repeat("a", maxURLLength): "longer",
	}
	for u, want := range bad {
		err := validateURL(u)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validateURL(%.60q) = %v, want an error mentioning %q", u, err, want)
		}
	}
}

func TestValidateSlug(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"abc", "A-b_9", strings.Repeat("z", 64), "links2", "my-link"} {
		if err := validateSlug(s); err != nil {
			t.Errorf("validateSlug(%q) = %v, want ok", s, err)
		}
	}
	for s, want := range map[string]string{
		"ab": "3 to 64", strings.Repeat("z", 65): "3 to 64", "a b": "only", "a/b": "only", "a.b": "only",
		"héé": "only", "links": "reserved", "LINKS": "reserved", "health": "reserved", "metrics": "reserved",
		"dashboard": "reserved", "static": "reserved", "api": "reserved", "stats": "reserved", "tags": "reserved",
		"login": "reserved", "logout": "reserved",
	} {
		err := validateSlug(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validateSlug(%q) = %v, want an error mentioning %q", s, err, want)
		}
	}
}

func TestNormalizeTags(t *testing.T) {
	t.Parallel()
	got, err := normalizeTags([]string{" a ", "a", "", "b"})
	if err != nil || strings.Join(got, ",") != "a,b" {
		t.Fatalf("normalizeTags = %v, %v", got, err)
	}
	if _, err := normalizeTags([]string{strings.Repeat("x", maxTagLength+1)}); err == nil {
		t.Fatal("overlong tag accepted")
	}
	if _, err := normalizeTags([]string{"a\x00b"}); err == nil {
		t.Fatal("tag with NUL accepted")
	}
}

// FuzzValidateURL: anything accepted is an absolute http(s) URL with a host, bounded,
// printable, and parses again to the same scheme and host.
func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{"https://example.com", "javascript:x", "http://[::1]:80/a?b#c", "HTTP://a.b/%41", "https://a\u00a0b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if validateURL(raw) != nil {
			return
		}
		if len(raw) > maxURLLength || !utf8.ValidString(raw) {
			t.Fatalf("accepted unbounded or invalid UTF-8 %q", raw)
		}
		for _, r := range raw {
			if unicode.IsSpace(r) || unicode.IsControl(r) {
				t.Fatalf("accepted %q with space/control", raw)
			}
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("accepted unparseable %q", raw)
		}
		if s := strings.ToLower(u.Scheme); (s != "http" && s != "https") || u.Hostname() == "" {
			t.Fatalf("accepted %q: scheme %q host %q", raw, u.Scheme, u.Host)
		}
	})
}

// FuzzValidateSlug: an accepted slug is safe in a path segment, not reserved, and
// recognised by ValidSlugSyntax (what the redirect checks).
func FuzzValidateSlug(f *testing.F) {
	for _, s := range []string{"abc", "links", "a/b", "Ab-_9", "é", strings.Repeat("a", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validateSlug(s) != nil {
			return
		}
		if !ValidSlugSyntax(s) || url.PathEscape(s) != s || reserved[strings.ToLower(s)] || len(s) < 3 || len(s) > 64 {
			t.Fatalf("accepted slug %q", s)
		}
	})
}

func TestStatusAt(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	past, future := now.Add(-time.Second), now.Add(time.Second)
	two := int64(2)
	cases := []struct {
		l    Link
		want string
	}{
		{Link{}, StatusActive},
		{Link{ExpiresAt: &future}, StatusActive},
		{Link{ExpiresAt: &now}, StatusExpired},
		{Link{ExpiresAt: &past, MaxClicks: &two, ClicksUsed: 2}, StatusExpired},
		{Link{MaxClicks: &two, ClicksUsed: 1}, StatusActive},
		{Link{MaxClicks: &two, ClicksUsed: 2}, StatusLimitReached},
		{Link{ClicksUsed: 99}, StatusActive},
	}
	for _, c := range cases {
		if got := statusAt(c.l, now); got != c.want {
			t.Errorf("statusAt(%+v) = %s, want %s", c.l, got, c.want)
		}
	}
}

func TestValidateExpiredURL(t *testing.T) {
	t.Parallel()
	own := []string{"hop.test", "go.example.com"}
	if err := validateExpiredURL("https://example.com/over?x=1", own); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"javascript:alert(1)", "/relative", "https://exa mple.com", "ftp://x.example", "https://hop.test/abc", "http://GO.example.com:8080/x"} {
		err := validateExpiredURL(bad, own)
		if err == nil || !strings.HasPrefix(err.Error(), "expired_url") {
			t.Errorf("validateExpiredURL(%q) = %v, want an error naming expired_url", bad, err)
		}
	}
}

// Every spelling a browser resolves to one of hop's hosts is that host.
func TestNotOwnHostSeesEverySpelling(t *testing.T) {
	t.Parallel()
	own := []string{"xn--bcher-kva.example", ownHost("http://127.0.0.1:8080"), ownHost("https://[::1]/")}
	for _, u := range []string{
		"https://Bücher.example/x", "https://BÜCHER.example./x", "https://xn--bcher-kva.example/x",
		"http://127.0.0.1/x", "http://127.000.000.001:8080/x", "http://[::ffff:127.0.0.1]/x",
		"http://0x7f.1/x", "http://2130706433/x", "http://0177.0.0.1/x", "http://[0:0::1]/x",
	} {
		if err := notOwnHost(u, own); err == nil || !strings.Contains(err.Error(), "this hop itself") {
			t.Errorf("notOwnHost(%q) = %v, want the loop refused", u, err)
		}
	}
	for _, u := range []string{"https://bucher.example/", "http://127.0.0.2/", "http://128.0.0.1/", "http://0x7f.1.example/", "http://1.2.3.4.5/", "http://[::2]/"} {
		if err := notOwnHost(u, own); err != nil {
			t.Errorf("notOwnHost(%q) = %v, want ok", u, err)
		}
	}
}

// Each way a title can be refused says which, so that a person can fix it.
func TestValidateTitleSaysWhy(t *testing.T) {
	t.Parallel()
	for title, want := range map[string]string{
		"Launch\nnotes":          "title must be one line of text: it has the control character U+000A at byte 6",
		"a\tb":                   "control character U+0009 at byte 1",
		"x\u0085":                "control character U+0085 at byte 1",
		"bad \xff":               "title is not valid UTF-8",
		strings.Repeat("é", 300): "title is 600 bytes long; at most 512",
	} {
		if err := validateTitle(title); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validateTitle(%q) = %v, want %q", title, err, want)
		}
	}
	for _, title := range []string{"", "Launch notes", "Bücher — 2026 ✓", strings.Repeat("a", maxTitle)} {
		if err := validateTitle(title); err != nil {
			t.Errorf("validateTitle(%q) = %v", title, err)
		}
	}
}
