package dashboard

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hop-dev/hop/modules/links"
	"github.com/hop-dev/hop/modules/stats"
)

// hoursEnding returns n hours ending with the hour of testNow in loc, clicks(i) for hour i.
func hoursEnding(n int, loc *time.Location, clicks func(i int) int64) []stats.HourStats {
	out := make([]stats.HourStats, n)
	start := testNow.Truncate(time.Hour).Add(-time.Duration(n-1) * time.Hour)
	for i := range out {
		out[i] = stats.HourStats{Hour: start.Add(time.Duration(i) * time.Hour).In(loc).Format(time.RFC3339), Clicks: clicks(i), BotClicks: 1}
	}
	return out
}

// The overview and a link's page chart the last 24 hours beside the daily chart, in
// both layouts, one bar per hour, labelled with the hour of day in the range's zone.
func TestHourlyCharts(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	b.stats.overview = stats.Overview{Start: "2026-02-14", End: "2026-03-15", TZ: "UTC", Daily: days(30, func(int) int64 { return 1 })}
	b.stats.hours = hoursEnding(24, time.UTC, func(i int) int64 { return int64(i) })
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	// The stats module's 48 hours: only the last 24 are charted.
	b.stats.link = stats.LinkStats{Start: "2026-02-14", End: "2026-03-15", TZ: "Europe/Paris",
		Daily: days(30, func(int) int64 { return 1 }), Hourly: hoursEnding(48, paris, func(i int) int64 { return int64(1000 * i) })}
	b.links.add(links.Link{Slug: "hourly", OriginalURL: "https://example.com/h"})
	ck, _ := b.login()

	over := b.get("/dashboard", ck)
	wantStatus(t, over, http.StatusOK)
	body := over.Body.String()
	wantContains(t, body, `<h2>Last 24 hours <span class="muted">(UTC)</span></h2>`,
		"Clicks per hour over the last 24 hours: 276 in total, at most 23 in one hour.",
		"Mar 15 12:00: 23 clicks, 1 bot click", "Mar 14 13:00: 0 clicks, 1 bot click",
		">13:00<", ">12:00<", "clicks per hour")
	hourly := body[strings.Index(body, "Last 24 hours"):]
	hourly = hourly[:strings.Index(hourly, "</section>")]
	if n := strings.Count(hourly, `<rect class="bar"`); n != 48 {
		t.Errorf("%d hourly bars, want 24 in each of the two layouts", n)
	}
	if strings.Contains(hourly, `class="line"`) {
		t.Error("the hourly chart draws a unique-visitor line it has no data for")
	}
	if n := strings.Count(body, `<rect class="bar"`); n != 60+48 {
		t.Errorf("%d bars on the overview, want 60 daily and 48 hourly", n)
	}

	link := b.get("/dashboard/links/hourly", ck)
	wantStatus(t, link, http.StatusOK)
	body = link.Body.String()
	// testNow is 12:00 UTC, 13:00 in Paris; the last 24 of 48 hours are 24..47.
	wantContains(t, body, `<h2>Last 24 hours <span class="muted">(Europe/Paris)</span></h2>`,
		"Mar 15 13:00: 47,000 clicks", "Mar 14 14:00: 24,000 clicks", ">14:00<", ">13:00<",
		"at most 47,000 in one hour")
	if strings.Contains(body, "23,000 clicks") {
		t.Error("the link's hourly chart shows an hour older than 24")
	}

	// No clicks in the last day: the chart says so.
	b.stats.hours = hoursEnding(24, time.UTC, func(int) int64 { return 0 })
	wantContains(t, b.get("/dashboard", ck).Body.String(), "no clicks in the last 24 hours")
}
