package redirect

import (
	"net/url"
	"strings"
)

// forwardQuery returns target with the parameters of the incoming raw query added to
// its own, as Shlink does: the target's parameters come first and win where both name
// the same one, the incoming ones follow in their order (repeats kept), and the
// target's fragment stays at the end. Pairs are copied as sent, except that bytes
// which may not appear in a URL are percent-encoded. The common case, no incoming
// query, returns target itself.
func forwardQuery(target, incoming string) string {
	if incoming == "" {
		return target
	}
	base, frag := target, ""
	if i := strings.IndexByte(target, '#'); i >= 0 {
		base, frag = target[:i], target[i:]
	}
	own := ""
	if i := strings.IndexByte(base, '?'); i >= 0 {
		base, own = base[:i], base[i+1:]
	}
	var b strings.Builder
	b.Grow(len(target) + len(incoming) + 1)
	b.WriteString(base)
	sep := byte('?')
	if own != "" {
		b.WriteByte('?')
		b.WriteString(own)
		sep = '&'
	}
	for rest := incoming; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		name, _, _ := strings.Cut(pair, "=")
		if hasParam(own, name) {
			continue
		}
		b.WriteByte(sep)
		sep = '&'
		writeQueryBytes(&b, pair)
	}
	b.WriteString(frag)
	return b.String()
}

// hasParam reports whether the raw query q has a parameter called name (compared
// after decoding, so "utm%5Fsource" and "utm_source" are the same name).
func hasParam(q, name string) bool {
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		n, _, _ := strings.Cut(pair, "=")
		if sameName(n, name) {
			return true
		}
	}
	return false
}

func sameName(a, b string) bool {
	if a == b {
		return true
	}
	if !strings.ContainsAny(a, "%+") && !strings.ContainsAny(b, "%+") {
		return false
	}
	da, err := url.QueryUnescape(a)
	if err != nil {
		return false
	}
	db, err := url.QueryUnescape(b)
	return err == nil && da == db
}

// writeQueryBytes writes s, percent-encoding bytes that are not allowed in a URL
// query (controls, space, non-ASCII, and "#<>\^`{|}), so the Location header is
// always a valid URL whatever the request line carried.
func writeQueryBytes(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if queryByteOK(c) {
			continue
		}
		b.WriteString(s[start:i])
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
		start = i + 1
	}
	b.WriteString(s[start:])
}

func queryByteOK(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '"', '#', '<', '>', '\\', '^', '`', '{', '|', '}':
		return false
	}
	return true
}
