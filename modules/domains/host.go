package domains

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/hop-dev/hop/internal/problem"
	"github.com/hop-dev/hop/internal/weburl"
)

// maxHost is the longest DNS name (RFC 1035, without the trailing dot).
const maxHost = 253

// NormalizeHost turns a host name as a person types it into the form hop stores and
// matches: lower-cased, internationalized names as punycode (IDNA 2008 lookup rules),
// no trailing dot. Anything that is not a DNS name (ports, paths, IP addresses,
// underscores, empty labels) is a 400 problem.
func NormalizeHost(raw string) (string, error) {
	s := strings.TrimSuffix(strings.TrimSpace(raw), ".")
	if s == "" {
		return "", problem.Invalid("host is required, like go.example.com")
	}
	if len(s) > 4*maxHost { // bound the work on absurd input before IDNA mapping
		return "", problem.Invalid("host is longer than %d characters", maxHost)
	}
	if !utf8.ValidString(s) {
		return "", problem.Invalid("host is not valid UTF-8")
	}
	h, err := idna.Lookup.ToASCII(s)
	if err == nil { // what is stored must name itself: ToASCII of it changes nothing
		var again string
		if again, err = idna.Lookup.ToASCII(h); err == nil && again != h {
			err = errors.New("unstable")
		}
	}
	if err != nil || h == "" {
		return "", problem.Invalid("host %q is not a DNS name like go.example.com", raw)
	}
	if len(h) > maxHost {
		return "", problem.Invalid("host is longer than %d characters", maxHost)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", problem.Invalid("host %q is not a DNS name like go.example.com", raw)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", problem.Invalid("host %q is not a DNS name like go.example.com", raw)
			}
		}
	}
	// All-numeric last label: an IPv4 address, not a name.
	if last := h[strings.LastIndexByte(h, '.')+1:]; strings.Trim(last, "0123456789") == "" {
		if _, err := netip.ParseAddr(h); err == nil {
			return "", problem.Invalid("host %q is an IP address; domains are DNS names", raw)
		}
		return "", problem.Invalid("host %q is not a DNS name: its last label is all digits", raw)
	}
	return h, nil
}

// validateBaseURL checks a domain's public origin: http(s), a host, no path or query.
func validateBaseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.ContainsAny(raw, " \t\r\n") {
		return "", problem.Invalid("base_url must be an origin like https://go.example.com, got %q", raw)
	}
	if !weburl.PortOK(u) {
		return "", problem.Invalid("base_url port %s is not between 1 and 65535", u.Port())
	}
	return strings.TrimRight(raw, "/"), nil
}

// validateFallback checks a fallback redirect of the domain host: empty (hop's own
// page) or an absolute http(s) URL elsewhere. One back to host itself would loop: its
// page not found, or its root, answered with the same redirect again.
func validateFallback(field, raw, host string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(raw) > 2048 || strings.ContainsAny(raw, " \t\r\n") {
		return "", problem.Invalid("%s must be an absolute http(s) URL like https://example.com/, or null for hop's own page", field)
	}
	if !weburl.PortOK(u) {
		return "", problem.Invalid("%s port %s is not between 1 and 65535", field, u.Port())
	}
	if to, err := NormalizeHost(u.Hostname()); err == nil && to == host {
		return "", problem.Invalid("%s points to this domain itself (%s), which would redirect in a loop", field, host)
	}
	return raw, nil
}

// requestHost is the host part of a Host header, lower-cased, without port or trailing
// dot. It allocates only when the header has upper-case letters: it runs on every
// redirect.
func requestHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			// ASCII only: stored hosts are ASCII (punycode), and other bytes must not
			// be rewritten into something that matches one.
			b := []byte(h)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return h
}
