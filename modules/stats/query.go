package stats

import (
	"net/url"
	"strconv"
	"time"

	"github.com/hop-dev/hop/internal/problem"

	// Every IANA zone must load even in a minimal container without /usr/share/zoneinfo.
	_ "time/tzdata"
)

const (
	dateLayout   = "2006-01-02"
	defaultDays  = 30
	maxRangeDays = 3660
	defaultLimit = 10
	maxLimit     = 100
)

// rangeQuery is a validated ?start=&end=&tz=&limit= query. start and end are dates,
// held as UTC midnights so day arithmetic is exact.
type rangeQuery struct {
	start, end time.Time
	tz         string
	loc        *time.Location
	limit      int
	domain     int64 // ?domain=: a link's domain (0: the default); the overview's (0: all)
}

// days is the number of dates in the inclusive range.
func (q rangeQuery) days() int { return int(dayNumber(q.end)-dayNumber(q.start)) + 1 }

// dayNumber counts calendar days since 1970-01-01 for t's date in its zone: exact
// across DST changes, and beyond the 292 years a time.Duration can hold.
func dayNumber(t time.Time) int64 {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// utc reports whether local dates are UTC dates, so the daily rollups answer exactly.
func (q rangeQuery) utc() bool { return q.loc == time.UTC }

// bounds returns the instants where the range starts and ends (exclusive) in its zone.
func (q rangeQuery) bounds() (from, to time.Time) {
	return dayStart(q.start, q.loc), dayStart(q.end.AddDate(0, 0, 1), q.loc)
}

// dayStart returns the first instant of date (a UTC midnight) in loc: the first
// instant whose local date is date. time.Date does not say which instant it gives for a
// local midnight a clock change skips or repeats. Where it is skipped (America/Santiago,
// America/Havana) it gives the hour before, still on the previous date: the date starts
// where that offset ends. Where it repeats (Asia/Amman until 2022, clocks going back at
// 01:00) it gives the second midnight: the date began in the offset before. A date
// skipped whole (Pacific/Apia, 2011-12-30) starts where the next one does: it has no
// instants.
func dayStart(date time.Time, loc *time.Location) time.Time {
	day := dayNumber(date)
	t := time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, loc)
	for dayNumber(t) < day {
		_, end := t.ZoneBounds()
		if end.IsZero() {
			break // no later change: cannot happen for an instant before the date
		}
		t = end
	}
	for {
		start, _ := t.ZoneBounds()
		if start.IsZero() {
			return t
		}
		before := start.Add(-time.Nanosecond)
		if dayNumber(before) < day {
			return t
		}
		// The offset before this one already showed date: its midnight, or the start
		// of that offset if it began later in the date.
		_, off := before.Zone()
		t = time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, time.FixedZone("", off)).In(loc)
		if prev, _ := before.ZoneBounds(); t.Before(prev) {
			t = prev
		}
	}
}

// Dates outside these bounds are refused: PostgreSQL has no year 0, and a range's end
// in a far zone must still be a four-digit year.
var (
	minDate = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDate = time.Date(9999, 12, 30, 0, 0, 0, 0, time.UTC)
)

// parseDate parses the date parameter name, a YYYY-MM-DD from 1970-01-01 to 9999-12-30.
func parseDate(name, s string) (time.Time, error) {
	d, err := time.Parse(dateLayout, s)
	if err != nil {
		return d, problem.Invalid("%s: %q is not a date in YYYY-MM-DD form", name, s)
	}
	if d.Before(minDate) || d.After(maxDate) {
		return d, problem.Invalid("%s: %s is outside %s to %s", name, s, minDate.Format(dateLayout), maxDate.Format(dateLayout))
	}
	return d, nil
}

// parseRange validates the query parameters shared by the stats endpoints. Dates are
// inclusive YYYY-MM-DD; the default range is the 30 days ending today in tz (UTC by
// default). Every invalid parameter is a 400 naming it; nothing is silently replaced.
func parseRange(v url.Values, now time.Time) (rangeQuery, error) {
	q := rangeQuery{tz: "UTC", loc: time.UTC, limit: defaultLimit}
	if tz := v.Get("tz"); tz != "" && tz != "UTC" {
		loc, err := time.LoadLocation(tz)
		if err != nil || tz == "Local" {
			return q, problem.Invalid("tz: unknown time zone %q; use an IANA name such as Europe/Paris", tz)
		}
		q.tz, q.loc = tz, loc
	}
	y, m, d := now.In(q.loc).Date()
	today := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)

	var err error
	q.end = today
	if s := v.Get("end"); s != "" {
		if q.end, err = parseDate("end", s); err != nil {
			return q, err
		}
	}
	q.start = q.end.AddDate(0, 0, -(defaultDays - 1))
	if s := v.Get("start"); s != "" {
		if q.start, err = parseDate("start", s); err != nil {
			return q, err
		}
	}
	if q.start.After(q.end) {
		return q, problem.Invalid("start: %s is after end %s", q.start.Format(dateLayout), q.end.Format(dateLayout))
	}
	if n := q.days(); n > maxRangeDays {
		return q, problem.Invalid("start, end: the range covers %d days; at most %d are allowed", n, maxRangeDays)
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return q, problem.Invalid("limit: %q must be an integer from 1 to %d", s, maxLimit)
		}
		q.limit = n
	}
	return q, nil
}
