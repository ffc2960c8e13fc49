package redirect

import (
	"strconv"
	"strings"
	"time"

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
	t := target{state: stateLive, id: l.ID, status: l.RedirectStatus, clicksUsed: l.ClicksUsed, password: l.HasPassword,
		forward: l.ForwardQuery, url: l.OriginalURL, location: []string{l.OriginalURL}}
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
		t.expiredURL = *l.ExpiredURL
	}
	return t
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
