package stats

import (
	"encoding/csv"
	"net/url"
	"strings"
	"testing"
	"time"
)

// A range's bounds are the first instants of its first date and of the date after its
// last, in its zone, for every date of zones whose clocks change at midnight
// (Santiago, Havana, Asunción, Beirut, Cairo, São Paulo in 2018), skip a whole date
// (Apia, 2011-12-30), or sit at odd offsets: the instant before a bound is on an
// earlier date, the bound itself on that date or later.
func TestRangeBoundsAreTheZonesLocalDays(t *testing.T) {
	t.Parallel()
	zones := []string{"America/Santiago", "America/Havana", "America/Asuncion", "Asia/Beirut", "Africa/Cairo",
		"America/Sao_Paulo", "Pacific/Apia", "Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns",
		"Pacific/Chatham", "America/New_York", "Europe/London", "Asia/Tokyo", "UTC",
		"Asia/Amman", "Asia/Gaza", "Antarctica/Casey"} // the last three: midnight repeats when clocks go back
	first, last := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2030, 12, 31, 0, 0, 0, 0, time.UTC)
	for _, tz := range zones {
		for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
			date := d.Format(dateLayout)
			q, err := parseRange(url.Values{"start": {date}, "end": {date}, "tz": {tz}}, fixedNow)
			if err != nil {
				t.Fatal(err)
			}
			from, to := q.bounds()
			for _, b := range []struct {
				at  time.Time
				day time.Time
			}{{from, d}, {to, d.AddDate(0, 0, 1)}} {
				if dayNumber(b.at.Add(-time.Second).In(q.loc)) >= dayNumber(b.day) || dayNumber(b.at.In(q.loc)) < dayNumber(b.day) {
					t.Fatalf("%s in %s: bounds %v..%v; %s does not start at %v (a second before: %v)", date, tz,
						from.In(q.loc), to.In(q.loc), b.day.Format(dateLayout), b.at.In(q.loc), b.at.Add(-time.Second).In(q.loc))
				}
			}
		}
	}
}

// Santiago and Havana move their clocks at midnight: 2026-09-06 starts at 01:00 in
// Santiago, 2026-03-08 at 01:00 in Havana. A click in the last hour of the day before
// belongs to that day, in a link's stats, the overview and the CSV export alike.
func TestDaysStartAtMidnightClockChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	santiago := createLink(t, b.pool, "santiago")
	havana := createLink(t, b.pool, "havana")
	insertClicks(t, b.pool, []click{
		{link: santiago, at: utc("2026-09-06T03:30:00Z"), visitor: visitor(1)}, // 09-05 23:30 -04
		{link: santiago, at: utc("2026-09-06T04:30:00Z"), visitor: visitor(2)}, // 09-06 01:30 -03
		{link: havana, at: utc("2026-03-08T04:30:00Z"), visitor: visitor(3)},   // 03-07 23:30 CST
		{link: havana, at: utc("2026-03-08T05:30:00Z"), visitor: visitor(4)},   // 03-08 01:30 CDT
	})
	drain(t, b.agg)
	for _, tc := range []struct{ slug, tz, start, end, csvTimes string }{
		{"santiago", "America/Santiago", "2026-09-05", "2026-09-05", "2026-09-06T03:30:00.000000Z"},
		{"santiago", "America/Santiago", "2026-09-06", "2026-09-06", "2026-09-06T04:30:00.000000Z"},
		{"havana", "America/Havana", "2026-03-07", "2026-03-07", "2026-03-08T04:30:00.000000Z"},
		{"havana", "America/Havana", "2026-03-08", "2026-03-08", "2026-03-08T05:30:00.000000Z"},
	} {
		query := "?" + url.Values{"start": {tc.start}, "end": {tc.end}, "tz": {tc.tz}}.Encode()
		s := decode[LinkStats](t, b.get(t, "/links/"+tc.slug+"/stats"+query))
		o := decode[Overview](t, b.get(t, "/stats"+query))
		if s.TotalClicks != 1 || s.Daily[0].Clicks != 1 || o.TotalClicks != 1 || o.Daily[0].Clicks != 1 {
			t.Errorf("%s %s in %s: link %d clicks (daily %+v), overview %d (daily %+v); want 1",
				tc.slug, tc.start, tc.tz, s.TotalClicks, s.Daily, o.TotalClicks, o.Daily)
		}
		rec := b.get(t, "/links/"+tc.slug+"/clicks.csv"+query)
		rows, err := csv.NewReader(rec.Body).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var times []string
		for _, r := range rows[1:] {
			times = append(times, r[0])
		}
		if got := strings.Join(times, " "); got != tc.csvTimes {
			t.Errorf("%s %s in %s: clicks.csv has %q, want %q", tc.slug, tc.start, tc.tz, got, tc.csvTimes)
		}
	}
}

// wholeUTCDays splits a range into the whole UTC days inside it and the hours before and
// after them, which together are the range exactly: for ranges of local dates around
// clock changes, one date long, starting or ending on a UTC midnight, and shorter than
// a day (none of hop's ranges are, but the split must still hold).
func TestWholeUTCDaysSplitTheRange(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct{ from, to, days, daysEnd string }{
		{"2026-03-01T00:00:00Z", "2026-03-04T00:00:00Z", "2026-03-01T00:00:00Z", "2026-03-04T00:00:00Z"}, // UTC
		{"2026-03-14T15:00:00Z", "2026-03-15T15:00:00Z", "2026-03-15T00:00:00Z", "2026-03-15T00:00:00Z"}, // one Tokyo date
		{"2026-03-07T05:00:00Z", "2026-03-10T04:00:00Z", "2026-03-08T00:00:00Z", "2026-03-10T00:00:00Z"}, // New York over spring forward
		{"2026-03-28T00:00:00Z", "2026-03-30T23:00:00Z", "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"}, // London, hours after only
		{"2026-06-15T18:15:00Z", "2026-06-16T18:15:00Z", "2026-06-16T00:00:00Z", "2026-06-16T00:00:00Z"}, // Kathmandu
		{"2026-03-01T03:00:00Z", "2026-03-01T20:00:00Z", "2026-03-01T20:00:00Z", "2026-03-01T20:00:00Z"}, // inside one UTC day
	} {
		from, to := at(c.from), at(c.to)
		days, daysEnd := wholeUTCDays(from, to)
		if !days.Equal(at(c.days)) || !daysEnd.Equal(at(c.daysEnd)) {
			t.Errorf("[%s, %s): whole days [%s, %s), want [%s, %s)", c.from, c.to, days.Format(time.RFC3339), daysEnd.Format(time.RFC3339), c.days, c.daysEnd)
		}
		// The pieces are in order and cover the range: [from, days) [days, daysEnd) [daysEnd, to).
		if days.Before(from) || daysEnd.Before(days) || to.Before(daysEnd) {
			t.Errorf("[%s, %s): pieces out of order: %s, %s", c.from, c.to, days, daysEnd)
		}
	}
}
