package redirect

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/hop-dev/hop/modules/links"
)

// state says how a slug resolves.
type state byte

const (
	stateLive     state = 'L'
	stateGone     state = 'G' // deleted: 410 forever
	stateNotFound state = 'N' // never existed (negatively cached)
)

// target is what the redirect needs of a link, small enough to cache and to decode
// without allocating.
type target struct {
	state      state
	id         int64
	status     int
	expiresAt  int64 // unix seconds, 0 = never
	maxClicks  int64 // 0 = unlimited
	clicksUsed int64 // as of the cache fill: it only grows, so a limit reached here stays reached
	password   bool
	forward    bool   // forward the incoming query string
	expiredURL string // where the link goes once expired or used up; "" = 410
	url        string
	location   []string // {url}, the Location header value, made once per cache fill
}

func targetOf(l links.Link) target {
	if l.DeletedAt != nil {
		return target{state: stateGone}
	}
	u := asciiURL(l.OriginalURL)
	t := target{state: stateLive, id: l.ID, status: l.RedirectStatus, clicksUsed: l.ClicksUsed, password: l.HasPassword,
		forward: l.ForwardQuery, url: u, location: []string{u}}
	if l.ExpiresAt != nil {
		t.expiresAt = l.ExpiresAt.Unix()
		if t.expiresAt <= 0 {
			t.expiresAt = 1
		}
	}
	if l.MaxClicks != nil {
		t.maxClicks = *l.MaxClicks
	}
	if l.ExpiredURL != nil {
		t.expiredURL = asciiURL(*l.ExpiredURL)
	}
	return t
}

// asciiURL is u as a Location header must carry it, a URI (RFC 9110): an
// internationalized host in punycode, every other non-ASCII byte percent-encoded.
// Links keep the URL as it was given; this runs once per cache fill.
func asciiURL(u string) string {
	if isASCII(u) {
		return u
	}
	var b strings.Builder
	rest := u
	if i := strings.Index(rest, "://"); i >= 0 {
		b.WriteString(rest[:i+3])
		rest = rest[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		host, port := rest[:end], ""
		rest = rest[end:]
		if at := strings.LastIndexByte(host, '@'); at >= 0 {
			b.WriteString(escapeNonASCII(host[:at+1]))
			host = host[at+1:]
		}
		if c := strings.LastIndexByte(host, ':'); c >= 0 && !strings.Contains(host[c:], "]") {
			host, port = host[:c], host[c:]
		}
		if a, err := idna.Lookup.ToASCII(host); err == nil {
			host = a
		}
		b.WriteString(escapeNonASCII(host))
		b.WriteString(port)
	}
	b.WriteString(escapeNonASCII(rest))
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// escapeNonASCII percent-encodes the bytes of s above 0x7F and leaves the rest alone.
func escapeNonASCII(s string) string {
	if isASCII(s) {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+16)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// encode renders t as the cached value:
// "L|id|status|expires|max|used|flags|len(expired_url)|expired_url url", or just the
// state letter for gone and unknown slugs. flags is "pq" with '-' for an unset flag
// (password, query forwarding). Both URLs may contain '|': the first is length-prefixed
// and the target is last.
func (t target) encode() string {
	if t.state != stateLive {
		return string(t.state)
	}
	flags := [2]byte{'-', '-'}
	if t.password {
		flags[0] = 'p'
	}
	if t.forward {
		flags[1] = 'q'
	}
	var b strings.Builder
	b.Grow(len(t.url) + len(t.expiredURL) + 80)
	b.WriteString("L|")
	b.WriteString(strconv.FormatInt(t.id, 10))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(t.status))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(t.expiresAt, 10))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(t.maxClicks, 10))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(t.clicksUsed, 10))
	b.WriteByte('|')
	b.Write(flags[:])
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(len(t.expiredURL)))
	b.WriteByte('|')
	b.WriteString(t.expiredURL)
	b.WriteString(t.url)
	return b.String()
}

// decodeTarget parses a cached value; ok is false for anything malformed (including
// values cached by an older hop), which the caller treats as a miss. Substrings share
// the value's memory.
func decodeTarget(v string) (t target, ok bool) {
	if v == "G" || v == "N" {
		return target{state: state(v[0])}, true
	}
	if !strings.HasPrefix(v, "L|") {
		return t, false
	}
	rest := v[2:]
	var fields [7]string
	for i := range fields {
		j := strings.IndexByte(rest, '|')
		if j < 0 {
			return t, false
		}
		fields[i], rest = rest[:j], rest[j+1:]
	}
	var err error
	t.state = stateLive
	if t.id, err = strconv.ParseInt(fields[0], 10, 64); err != nil {
		return t, false
	}
	if t.status, err = strconv.Atoi(fields[1]); err != nil {
		return t, false
	}
	if t.expiresAt, err = strconv.ParseInt(fields[2], 10, 64); err != nil {
		return t, false
	}
	if t.maxClicks, err = strconv.ParseInt(fields[3], 10, 64); err != nil {
		return t, false
	}
	if t.clicksUsed, err = strconv.ParseInt(fields[4], 10, 64); err != nil {
		return t, false
	}
	switch fields[5] {
	case "--":
	case "p-":
		t.password = true
	case "-q":
		t.forward = true
	case "pq":
		t.password, t.forward = true, true
	default:
		return t, false
	}
	n, err := strconv.Atoi(fields[6])
	if err != nil || n < 0 || n > len(rest) {
		return t, false
	}
	t.expiredURL, t.url = rest[:n], rest[n:]
	t.location = []string{t.url}
	return t, t.url != ""
}

// expired reports whether the link is past its expiry at now.
func (t target) expired(now time.Time) bool {
	return t.expiresAt != 0 && now.Unix() >= t.expiresAt
}

// usedUp reports whether the link's click limit was reached when it was cached. A link
// not used up here may still be: the redirect takes each click from PostgreSQL.
func (t target) usedUp() bool {
	return t.maxClicks != 0 && t.clicksUsed >= t.maxClicks
}
