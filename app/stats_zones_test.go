package app

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hop-dev/hop/internal/testenv"
)

// rawClick is one raw click written straight to click_logs, as ingest would.
type rawClick struct {
	at      time.Time
	bot     bool
	visitor int
	country string
}

// insertRawClicks writes clicks of the default domain's link slug and waits until
// the aggregator has taken every committed click.
func (h *instance) insertRawClicks(t testing.TB, slug string, clicks []rawClick) {
	t.Helper()
	for _, c := range clicks {
		if _, err := h.DB.Pool.Exec(t.Context(), `
INSERT INTO click_logs (event_id, link_id, clicked_at, is_bot, bot_reason, visitor_hash, country, browser, device)
SELECT gen_random_uuid(), id, $2, $3, CASE WHEN $3 THEN 'user-agent' ELSE '' END,
       CASE WHEN $3 THEN NULL ELSE sha256(int8send($4))::bytea END, $5, 'Firefox', CASE WHEN $3 THEN 'bot' ELSE 'desktop' END
FROM links WHERE slug = $1 AND domain_id = 1`, slug, c.at, c.bot, int64(c.visitor), c.country); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "every click aggregated", func() bool {
		var n int64
		err := h.DB.Pool.QueryRow(t.Context(),
			`SELECT count(*) FROM click_logs WHERE xid >= (SELECT watermark FROM aggregator_state)`).Scan(&n)
		return err == nil && n == 0
	})
}

type zoneStats struct {
	Start, End, TZ string
	TotalClicks    int64 `json:"total_clicks"`
	UniqueVisitors int64 `json:"unique_visitors"`
	BotClicks      int64 `json:"bot_clicks"`
	Daily          []struct {
		Date           string
		Clicks         int64
		UniqueVisitors int64 `json:"unique_visitors"`
	}
	Countries    map[string]int64
	Referers     map[string]int64
	Browsers     map[string]int64
	OS           map[string]int64
	Devices      map[string]int64
	UTMSources   map[string]int64 `json:"utm_sources"`
	UTMMediums   map[string]int64 `json:"utm_mediums"`
	UTMCampaigns map[string]int64 `json:"utm_campaigns"`
	TopLinks     []struct {
		Slug   string
		Clicks int64
	} `json:"top_links"`
}

// getJSON decodes the 200 answer of an API GET into v.
func (h *instance) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	r := h.api(t, http.MethodGet, path, nil)
	mustStatus(t, r, http.StatusOK)
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("%s: %v: %s", path, err, r.Body)
	}
}

// Around DST changes (New York's, the midnight ones of Santiago and Havana, Lord Howe's
// half hour) and at odd offsets (Kathmandu), a link's daily series, totals, overview and
// CSV export agree with each other and with the clicks' local dates: the daily clicks
// add up to total_clicks, every breakdown adds up to the human clicks of its UTC dates,
// the overview's top links count the same local dates, and clicks.csv holds exactly the
// range's clicks, humans and bots.
func TestStatsDaysAddUpInEveryZone(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.createLink(t, map[string]any{"url": "https://example.com/zones", "slug": "zones"})

	// Clicks every 47 minutes through the 30 hours on either side of each change.
	var clicks []rawClick
	for i, change := range []string{
		"2026-03-08T07:00:00Z", // New York, spring forward at 02:00
		"2026-11-01T06:00:00Z", // New York, fall back at 02:00
		"2026-09-06T04:00:00Z", // Santiago, 00:00 -> 01:00
		"2026-04-05T03:00:00Z", // Santiago, 24:00 -> 23:00
		"2026-03-08T05:00:00Z", // Havana, 00:00 -> 01:00
		"2026-11-01T05:00:00Z", // Havana, 01:00 -> 00:00
		"2026-10-03T15:30:00Z", // Lord Howe, +10:30 -> +11
		"2026-04-04T15:00:00Z", // Lord Howe, +11 -> +10:30
		"2026-06-15T18:15:00Z", // Kathmandu midnight (+05:45, no change)
		"2026-03-29T01:00:00Z", // London, +00 -> +01 at 01:00
	} {
		at, err := time.Parse(time.RFC3339, change)
		if err != nil {
			t.Fatal(err)
		}
		for j, d := 0, -30*time.Hour; d <= 30*time.Hour; j, d = j+1, d+47*time.Minute {
			clicks = append(clicks, rawClick{at: at.Add(d), bot: j%5 == 0, visitor: (i*7 + j) % 11,
				country: []string{"US", "CL", "CU", "AU", "NP", "GB"}[j%6]})
		}
	}
	h.insertRawClicks(t, "zones", clicks)

	// halfHour zones count a UTC hour on the local date it starts on (the hourly rollups'
	// documented approximation); the others are exact.
	cases := []struct {
		tz, start, end string
		halfHour       bool
	}{
		{"UTC", "2026-03-07", "2026-03-09", false},
		{"America/New_York", "2026-03-07", "2026-03-09", false},
		{"America/New_York", "2026-10-31", "2026-11-02", false},
		{"America/Santiago", "2026-09-05", "2026-09-07", false},
		{"America/Santiago", "2026-09-05", "2026-09-05", false},
		{"America/Santiago", "2026-04-04", "2026-04-05", false},
		{"America/Havana", "2026-03-07", "2026-03-08", false},
		{"America/Havana", "2026-03-07", "2026-03-07", false},
		{"America/Havana", "2026-10-31", "2026-11-01", false},
		{"Australia/Lord_Howe", "2026-10-03", "2026-10-05", true},
		{"Australia/Lord_Howe", "2026-04-04", "2026-04-05", true},
		{"Asia/Kathmandu", "2026-06-15", "2026-06-17", true},
		// Starts on a UTC midnight and ends an hour before one: a range with hours after
		// its whole UTC days and none before.
		{"Europe/London", "2026-03-28", "2026-03-30", false},
	}
	for _, tc := range cases {
		loc, err := time.LoadLocation(tc.tz)
		if err != nil {
			t.Fatal(err)
		}
		first, _ := time.Parse(time.DateOnly, tc.start)
		last, _ := time.Parse(time.DateOnly, tc.end)
		n := int(last.Sub(first)/(24*time.Hour)) + 1
		dateIndex := func(at time.Time) int { // -1 outside the range
			y, m, d := at.In(loc).Date()
			i := int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Sub(first) / (24 * time.Hour))
			if i < 0 || i >= n {
				return -1
			}
			return i
		}
		wantDaily := make([]int64, n)
		var wantHumans, wantBots, wantRows, utcHumans int64
		for _, c := range clicks {
			series := c.at // the date a click's series counts it on
			if tc.halfHour {
				series = c.at.Truncate(time.Hour)
			}
			if i := dateIndex(series); i >= 0 {
				if c.bot {
					wantBots++
				} else {
					wantDaily[i]++
					wantHumans++
				}
			}
			if dateIndex(c.at) >= 0 {
				wantRows++
			}
			if utcDate := c.at.UTC().Truncate(24 * time.Hour); !c.bot && !utcDate.Before(first) && !utcDate.After(last) {
				utcHumans++
			}
		}
		name := fmt.Sprintf("%s %s..%s", tc.tz, tc.start, tc.end)
		query := "?" + url.Values{"start": {tc.start}, "end": {tc.end}, "tz": {tc.tz}}.Encode()

		var s zoneStats
		h.getJSON(t, "/links/zones/stats"+query, &s)
		var daily []int64
		var total, uniques int64
		for _, d := range s.Daily {
			daily = append(daily, d.Clicks)
			total += d.Clicks
			uniques += d.UniqueVisitors
		}
		if s.TZ != tc.tz || s.Start != tc.start || s.End != tc.end || total != s.TotalClicks || uniques != s.UniqueVisitors {
			t.Errorf("%s: answered %s %s..%s; daily clicks add up to %d, total_clicks %d; daily uniques to %d, unique_visitors %d",
				name, s.TZ, s.Start, s.End, total, s.TotalClicks, uniques, s.UniqueVisitors)
		}
		if tc.tz == "UTC" && utcHumans != s.TotalClicks {
			t.Errorf("%s: %d human clicks, total_clicks %d", name, utcHumans, s.TotalClicks)
		}
		if !reflect.DeepEqual(daily, wantDaily) || s.TotalClicks != wantHumans || s.BotClicks != wantBots {
			t.Errorf("%s: daily %v, total %d, bots %d; want %v, %d, %d", name, daily, s.TotalClicks, s.BotClicks, wantDaily, wantHumans, wantBots)
		}
		// Breakdowns are kept per UTC date (documented): each adds up to the human clicks
		// of the range's dates in UTC, which for tz=UTC are total_clicks.
		for dim, m := range map[string]map[string]int64{"countries": s.Countries, "referers": s.Referers, "browsers": s.Browsers,
			"os": s.OS, "devices": s.Devices, "utm_sources": s.UTMSources, "utm_mediums": s.UTMMediums, "utm_campaigns": s.UTMCampaigns} {
			var n int64
			for _, v := range m {
				n += v
			}
			if n != utcHumans {
				t.Errorf("%s: %s add up to %d, want %d", name, dim, n, utcHumans)
			}
		}

		var o zoneStats
		h.getJSON(t, "/stats"+query, &o)
		if o.TotalClicks != s.TotalClicks || o.BotClicks != s.BotClicks || !reflect.DeepEqual(o.Daily, s.Daily) {
			t.Errorf("%s: overview %d clicks, %d bots, daily %v; the only link has %d, %d, %v",
				name, o.TotalClicks, o.BotClicks, o.Daily, s.TotalClicks, s.BotClicks, s.Daily)
		}
		// The top links count the range's local days too: the only link has them all.
		if len(o.TopLinks) != 1 || o.TopLinks[0].Slug != "zones" || o.TopLinks[0].Clicks != s.TotalClicks {
			t.Errorf("%s: overview top links %+v, want zones with its %d clicks", name, o.TopLinks, s.TotalClicks)
		}

		r := h.api(t, http.MethodGet, "/links/zones/clicks.csv"+query, nil)
		mustStatus(t, r, http.StatusOK)
		rows, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := int64(len(rows) - 1); got != wantRows || (!tc.halfHour && got != s.TotalClicks+s.BotClicks) {
			t.Errorf("%s: clicks.csv has %d rows, want %d (stats: %d humans + %d bots)", name, got, wantRows, s.TotalClicks, s.BotClicks)
		}
	}
}

// Every bad stats request is an RFC 9457 problem whose detail names what is wrong.
func TestStatsBadInputsAreProblems(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.addDomain(t, map[string]any{"host": "go.example.com"})
	h.createLink(t, map[string]any{"url": "https://example.com/a", "slug": "live1"})
	h.createLink(t, map[string]any{"url": "https://example.com/b", "slug": "branded1", "domain": "go.example.com"})
	h.createLink(t, map[string]any{"url": "https://example.com/c", "slug": "gone1"})
	mustStatus(t, h.api(t, http.MethodDelete, "/links/gone1", nil), http.StatusNoContent)

	for _, base := range []string{"/links/live1/stats", "/links/live1/clicks.csv", "/stats"} {
		for query, detail := range map[string]string{
			"start=2026-02-30":                        `start: "2026-02-30" is not a date`,
			"end=2026/03/01":                          `end: "2026/03/01" is not a date`,
			"start=2026-03-02&end=2026-03-01":         "start: 2026-03-02 is after end 2026-03-01",
			"start=2000-01-01&end=2026-01-01":         "at most 3660",
			"start=1969-12-31&end=1970-01-01":         "start: 1969-12-31 is outside",
			"tz=Mars/Olympus_Mons":                    `tz: unknown time zone "Mars/Olympus_Mons"`,
			"tz=EST5EDT%2C":                           "tz: unknown time zone",
			"limit=0":                                 "limit",
			"domain=nowhere.example&start=2026-01-01": `"nowhere.example"`,
		} {
			p := mustProblem(t, h.api(t, http.MethodGet, base+"?"+query, nil), map[bool]int{true: http.StatusNotFound, false: http.StatusBadRequest}[strings.HasPrefix(query, "domain=")])
			if d, _ := p["detail"].(string); !strings.Contains(d, detail) {
				t.Errorf("%s?%s: detail %q does not say %q", base, query, d, detail)
			}
		}
	}
	for path, want := range map[string]int{
		"/links/nope/stats":                        http.StatusNotFound,
		"/links/nope/clicks.csv":                   http.StatusNotFound,
		"/links/gone1/stats":                       http.StatusGone,
		"/links/gone1/clicks.csv":                  http.StatusGone,
		"/links/branded1/stats":                    http.StatusNotFound, // on go.example.com, not the default domain
		"/links/live1/stats?domain=go.example.com": http.StatusNotFound,
	} {
		mustProblem(t, h.api(t, http.MethodGet, path, nil), want)
	}
	mustStatus(t, h.api(t, http.MethodGet, "/links/branded1/stats?domain=GO.example.com", nil), http.StatusOK)
	mustStatus(t, h.api(t, http.MethodGet, "/links/branded1/clicks.csv?domain=go.example.com", nil), http.StatusOK)
}

// GET /links/{slug}/stats takes ?limit= (values kept per breakdown, the rest summed as
// "other"), as the dashboard uses it; the document says so.
func TestLinkStatsLimitIsDocumented(t *testing.T) {
	t.Parallel()
	h := startHop(t, nil)
	h.createLink(t, map[string]any{"url": "https://example.com/limit", "slug": "limit1"})
	h.insertRawClicks(t, "limit1", []rawClick{
		{at: time.Now(), visitor: 1, country: "US"}, {at: time.Now(), visitor: 2, country: "US"},
		{at: time.Now(), visitor: 3, country: "DE"}, {at: time.Now(), visitor: 4, country: "FR"},
	})
	var s zoneStats
	h.getJSON(t, "/links/limit1/stats?limit=1", &s)
	if want := map[string]int64{"US": 2, "other": 2}; !reflect.DeepEqual(s.Countries, want) {
		t.Errorf("countries with limit=1: %v, want %v", s.Countries, want)
	}
	op := spec(t).doc.Paths.Value("/links/{slug}/stats").Get
	if p := op.Parameters.GetByInAndName("query", "limit"); p == nil || p.Schema == nil || p.Schema.Value.Max == nil || *p.Schema.Value.Max != 100 {
		t.Errorf("app/openapi.yaml: getLinkStats does not document limit (1 to 100): %+v", p)
	}
}
