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
	state       state
	id          int64
	status      int
	expiresAt   int64 // unix seconds, 0 = never
	maxClicks   int64 // 0 = unlimited
	totalClicks int64
	password    bool
	url         string
	location    []string // {url}, the Location header value, made once per cache fill
}

func targetOf(l links.Link) target {
	if l.DeletedAt != nil {
		return target{state: stateGone}
	}
	t := target{state: stateLive, id: l.ID, status: l.RedirectStatus, totalClicks: l.TotalClicks, password: l.HasPassword, url: l.OriginalURL, location: []string{l.OriginalURL}}
	if l.ExpiresAt != nil {
		t.expiresAt = l.ExpiresAt.Unix()
		if t.expiresAt <= 0 {
			t.expiresAt = 1
		}
	}
	if l.MaxClicks != nil {
		t.maxClicks = *l.MaxClicks
	}
	return t
}

// encode renders t as the cached value: "L|id|status|expires|max|total|pw|url", or
// just the state letter for gone and unknown slugs. The URL is last so it may contain '|'.
func (t target) encode() string {
	if t.state != stateLive {
		return string(t.state)
	}
	pw := "0"
	if t.password {
		pw = "1"
	}
	var b strings.Builder
	b.Grow(len(t.url) + 64)
	b.WriteString("L|")
	b.WriteString(strconv.FormatInt(t.id, 10))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(t.status))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(t.expiresAt, 10))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(t.maxClicks, 10))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(t.totalClicks, 10))
	b.WriteByte('|')
	b.WriteString(pw)
	b.WriteByte('|')
	b.WriteString(t.url)
	return b.String()
}

// decodeTarget parses a cached value; ok is false for anything malformed, which the
// caller treats as a miss. Substrings share the value's memory: no allocation.
func decodeTarget(v string) (t target, ok bool) {
	if v == "G" || v == "N" {
		return target{state: state(v[0])}, true
	}
	if !strings.HasPrefix(v, "L|") {
		return t, false
	}
	rest := v[2:]
	var fields [6]string
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
	if t.totalClicks, err = strconv.ParseInt(fields[4], 10, 64); err != nil {
		return t, false
	}
	t.password = fields[5] == "1"
	t.url = rest
	t.location = []string{rest}
	return t, t.url != ""
}

// expired reports whether the link can no longer be followed at now: past its expiry
// or its click limit (total_clicks as last aggregated, so the limit may be passed by
// the clicks of one aggregation interval).
func (t target) expired(now time.Time) bool {
	return (t.expiresAt != 0 && now.Unix() >= t.expiresAt) || (t.maxClicks != 0 && t.totalClicks >= t.maxClicks)
}
