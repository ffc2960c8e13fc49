package links

import (
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/weburl"
)

// Limits on user input.
const (
	maxURLLength  = 8 << 10
	minSlugLength = 3
	maxSlugLength = 64
	maxTags       = 20
	maxTagLength  = 64
	minPassword   = 8
	maxPassword   = 72 // bcrypt's limit
	maxTitle      = 512
	maxClockSkew  = 5 * time.Minute // an imported created_at may be this far ahead of hop's clock
)

// reserved are paths of hop itself; a link can never take one as its slug. Compared
// case-insensitively so "Links" cannot shadow /links in a case-folding proxy either.
var reserved = map[string]bool{
	"links": true, "health": true, "healthz": true, "metrics": true, "dashboard": true,
	"static": true, "assets": true, "api": true, "stats": true, "tags": true,
	"login": true, "logout": true, "favicon.ico": true, "robots.txt": true,
	"openapi.json": true, "docs": true, "admin": true, "qr": true, "well-known": true,
	".well-known": true, "sitemap.xml": true, "version": true,
	"live": true, "webhooks": true, "domains": true,
}

// validateURL checks a link target: absolute http or https with a host, bounded, no
// whitespace or control characters. It returns the URL unchanged when valid.
func validateURL(raw string) error {
	switch {
	case raw == "":
		return problem.Invalid("url is required")
	case len(raw) > maxURLLength:
		return problem.Invalid("url is longer than %d bytes", maxURLLength)
	case !utf8.ValidString(raw):
		return problem.Invalid("url is not valid UTF-8")
	}
	for _, r := range raw {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return problem.Invalid("url must not contain whitespace or control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		msg := err.Error()
		if ue, ok := errors.AsType[*url.Error](err); ok {
			msg = ue.Err.Error() // without the URL, which the client sent
		}
		return problem.Invalid("url is not a valid URL: %s", msg)
	}
	if u.Scheme == "" {
		return problem.Invalid("url must be absolute (start with http:// or https://)")
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return problem.Invalid("url scheme %q is not allowed; use http or https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return problem.Invalid("url must have a host")
	}
	if h := strings.TrimSuffix(u.Hostname(), "."); h == "" || strings.Contains(h, "..") || h[0] == '.' {
		return problem.Invalid("url host %q has an empty label", u.Hostname())
	}
	if !weburl.PortOK(u) {
		return problem.Invalid("url port %s is not between 1 and 65535", u.Port())
	}
	return nil
}

// ownHost returns the host of an origin such as hop's base URL in the form notOwnHost
// compares; "" if it has none.
func ownHost(origin string) string {
	u, err := url.Parse(origin)
	if err != nil {
		return ""
	}
	return canonicalHost(u.Hostname())
}

// notOwnHost refuses a target on one of hop's own hosts: following it would come back
// to hop, a redirect loop that counts a click on every turn. Hosts are compared by
// name whatever the scheme and port, since a proxy may serve hop on several, and in
// the one spelling a browser would resolve them to.
func notOwnHost(raw string, own []string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return nil // validateURL reports it
	}
	host := canonicalHost(u.Hostname())
	for _, o := range own {
		if o != "" && host == canonicalHost(o) {
			return problem.Invalid("url points to this hop itself (%s), which would redirect in a loop", host)
		}
	}
	return nil
}

// canonicalHost is a URL host as a browser resolves it: lower case without a trailing
// dot, an internationalized name as punycode, an IPv4-mapped IPv6 address as IPv4,
// and the IPv4 spellings browsers also accept (127.000.000.001, 0x7f.1, 2130706433)
// as dotted decimal.
func canonicalHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().WithZone("").String()
	}
	if a, ok := browserIPv4(h); ok {
		return a.String()
	}
	if ascii, err := idna.Lookup.ToASCII(h); err == nil {
		return ascii
	}
	return h
}

// browserIPv4 parses the IPv4 forms of the WHATWG URL standard: one to four parts,
// each decimal, octal (leading 0) or hexadecimal (0x), the last filling the bytes
// the others leave.
func browserIPv4(h string) (netip.Addr, bool) {
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		n, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 255 {
				return netip.Addr{}, false
			}
			v |= n << (8 * (3 - i))
			continue
		}
		if n >= 1<<(8*(4-i)) {
			return netip.Addr{}, false
		}
		v |= n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// validateExpiredURL checks a link's expired_url like its target, naming the field.
func validateExpiredURL(raw string, own []string) error {
	err := validateURL(raw)
	if err == nil {
		// A used-up link sent to itself, or to another of hop's links, may come back
		// to one used up: a loop.
		err = notOwnHost(raw, own)
	}
	if d, ok := problem.DetailOf(err); ok {
		return problem.Invalid("expired_url: %s", strings.TrimPrefix(d, "url "))
	}
	return err
}

// validateSlug checks a custom slug: 3-64 of A-Z a-z 0-9 _ -, not reserved.
func validateSlug(slug string) error {
	if len(slug) < minSlugLength || len(slug) > maxSlugLength {
		return problem.Invalid("slug must be %d to %d characters long", minSlugLength, maxSlugLength)
	}
	for i := 0; i < len(slug); i++ {
		if !isSlugByte(slug[i]) {
			return problem.Invalid("slug may contain only A-Z, a-z, 0-9, '_' and '-'")
		}
	}
	if reserved[strings.ToLower(slug)] {
		return problem.Invalid("slug %q is reserved", slug)
	}
	return nil
}

func isSlugByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// ValidSlugSyntax reports whether s could be a slug at all (generated or custom), so the
// redirect path can answer 404 for junk without a lookup.
func ValidSlugSyntax(s string) bool {
	if len(s) == 0 || len(s) > maxSlugLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isSlugByte(s[i]) {
			return false
		}
	}
	return true
}

func validateStatus(code int) error {
	switch code {
	case 301, 302, 303, 307, 308:
		return nil
	}
	return problem.Invalid("redirect_status must be one of 301, 302, 303, 307, 308")
}

func validateExpiry(t time.Time, now time.Time) error {
	if !t.After(now) {
		return problem.Invalid("expires_at must be in the future")
	}
	return nil
}

func validateMaxClicks(n int64) error {
	if n <= 0 {
		return problem.Invalid("max_clicks must be a positive integer")
	}
	return nil
}

func validatePassword(p string) error {
	if len(p) < minPassword || len(p) > maxPassword {
		return problem.Invalid("password must be %d to %d bytes long", minPassword, maxPassword)
	}
	return nil
}

// validateTitle checks a link's title: bounded printable text.
func validateTitle(t string) error {
	switch {
	case len(t) > maxTitle:
		return problem.Invalid("title is %d bytes long; at most %d", len(t), maxTitle)
	case !utf8.ValidString(t):
		return problem.Invalid("title is not valid UTF-8")
	case strings.ContainsFunc(t, unicode.IsControl):
		i := strings.IndexFunc(t, unicode.IsControl)
		r, _ := utf8.DecodeRuneInString(t[i:])
		return problem.Invalid("title must be one line of text: it has the control character %U at byte %d", r, i)
	}
	return nil
}

// normalizeTags trims, drops empties and duplicates, and bounds count and length.
func normalizeTags(tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		t = strings.TrimSpace(t)
		if t == "" || seen[t] {
			continue
		}
		if len(t) > maxTagLength || !utf8.ValidString(t) || strings.ContainsFunc(t, unicode.IsControl) {
			return nil, problem.Invalid("tag %q must be at most %d bytes of printable text", t, maxTagLength)
		}
		seen[t] = true
		out = append(out, t)
	}
	if len(out) > maxTags {
		return nil, problem.Invalid("a link can have at most %d tags", maxTags)
	}
	return out, nil
}
