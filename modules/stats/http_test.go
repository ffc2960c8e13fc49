package stats

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	return v
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// seedLink creates slug with a known set of clicks and aggregates them.
func seedLink(t *testing.T, b *bundle) int64 {
	t.Helper()
	id := createLink(t, b.pool, "s")
	ua := func(country, ref, browser, os, device string, v int) click {
		return click{link: id, country: country, refHost: ref, browser: browser, os: os, device: device, visitor: visitor(v)}
	}
	at := func(c click, ts string) click { c.at = utc(ts); return c }
	utm := func(c click, source, medium, campaign string) click {
		c.utmSource, c.utmMedium, c.utmCampaign = source, medium, campaign
		return c
	}
	insertClicks(t, b.pool, []click{
		at(utm(ua("US", "t.co", "Chrome", "Windows", "desktop", 1), "news", "email", "launch"), "2025-03-10T08:00:00Z"),
		at(utm(ua("US", "t.co", "Chrome", "Windows", "desktop", 1), "news", "social", ""), "2025-03-10T09:00:00Z"),
		at(ua("DE", "(direct)", "Firefox", "Linux", "mobile", 2), "2025-03-10T10:00:00Z"),
		at(utm(click{link: id, bot: true, botReason: "user-agent", device: "bot", visitor: visitor(9)}, "news", "email", "launch"), "2025-03-10T11:00:00Z"),
		at(ua("FR", "news.ycombinator.com", "Safari", "macOS", "desktop", 3), "2025-03-14T20:00:00Z"),
		at(utm(ua("JP", "t.co", "Safari", "iOS", "mobile", 4), "twitter", "social", "spring"), "2025-03-14T21:00:00Z"),
		at(ua("US", "t.co", "Chrome", "Windows", "desktop", 1), "2025-01-01T00:00:00Z"),
	})
	drain(t, b.agg)
	return id
}

func TestLinkStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seedLink(t, b)

	rec := b.get(t, "/links/s/stats")
	got := decode[LinkStats](t, rec)
	if rec.Header().Get(echo.HeaderContentType) != "application/json" {
		t.Errorf("Content-Type = %q", rec.Header().Get(echo.HeaderContentType))
	}
	daily := make([]DayStats, 30)
	for i := range daily {
		daily[i].Date = time.Date(2025, 2, 14+i, 0, 0, 0, 0, time.UTC).Format(dateLayout)
	}
	daily[24] = DayStats{Date: "2025-03-10", Clicks: 3, UniqueVisitors: 2}
	daily[28] = DayStats{Date: "2025-03-14", Clicks: 2, UniqueVisitors: 2}
	want := LinkStats{
		Slug: "s", Start: "2025-02-14", End: "2025-03-15", TZ: "UTC",
		TotalClicks: 5, UniqueVisitors: 4, BotClicks: 1, Daily: daily,
		Countries: map[string]int64{"US": 2, "DE": 1, "FR": 1, "JP": 1},
		Referers:  map[string]int64{"t.co": 3, "(direct)": 1, "news.ycombinator.com": 1},
		Browsers:  map[string]int64{"Chrome": 2, "Firefox": 1, "Safari": 2},
		OS:        map[string]int64{"Windows": 2, "Linux": 1, "macOS": 1, "iOS": 1},
		Devices:   map[string]int64{"desktop": 3, "mobile": 2},
		// Humans only: the bot's campaign is not counted.
		Campaigns: Campaigns{
			UTMSources:   map[string]int64{"news": 2, "twitter": 1, "(none)": 2},
			UTMMediums:   map[string]int64{"email": 1, "social": 2, "(none)": 2},
			UTMCampaigns: map[string]int64{"launch": 1, "spring": 1, "(none)": 3},
		},
	}
	hourly := got.Hourly
	got.Hourly = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stats\n got %+v\nwant %+v", got, want)
	}
	// Last 48 hours ending with the current hour (fixedNow is 12:00 UTC on 03-15).
	if len(hourly) != 48 || hourly[0].Hour != "2025-03-13T13:00:00Z" || hourly[47].Hour != "2025-03-15T12:00:00Z" {
		t.Fatalf("hourly = %d entries from %v", len(hourly), hourly[:min(1, len(hourly))])
	}
	if h := hourly[31]; h.Hour != "2025-03-14T20:00:00Z" || h.Clicks != 1 {
		t.Errorf("hourly[31] = %+v, want one click at 2025-03-14T20:00:00Z", h)
	}

	// Keys in the documented order.
	var keys []string
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	_, _ = dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		_ = dec.Decode(&skip)
	}
	if got := strings.Join(keys, ","); got != "slug,start,end,tz,total_clicks,unique_visitors,bot_clicks,daily,countries,referers,browsers,os,devices,utm_sources,utm_mediums,utm_campaigns,hourly" {
		t.Errorf("keys = %s", got)
	}

	// total_clicks follows the requested range.
	one := decode[LinkStats](t, b.get(t, "/links/s/stats?start=2025-01-01&end=2025-01-01"))
	if one.TotalClicks != 1 || one.UniqueVisitors != 1 || len(one.Daily) != 1 || one.Countries["US"] != 1 {
		t.Errorf("2025-01-01 stats = %+v", one)
	}
	empty := decode[LinkStats](t, b.get(t, "/links/s/stats?start=2024-01-01&end=2024-01-31"))
	if empty.TotalClicks != 0 || len(empty.Daily) != 31 || empty.Countries == nil || len(empty.Countries) != 0 {
		t.Errorf("empty range stats = %+v", empty)
	}
	if !strings.Contains(b.get(t, "/links/s/stats?start=2024-01-01&end=2024-01-01").Body.String(), `"countries":{}`) {
		t.Error("empty breakdown not rendered as {}")
	}
}

// Top `limit` values per breakdown, the rest summed as "other" (ties broken by value).
func TestLinkStatsBreakdownLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seedLink(t, b)
	got := decode[LinkStats](t, b.get(t, "/links/s/stats?limit=1"))
	want := map[string]map[string]int64{
		"countries": {"US": 2, "other": 3},
		"referers":  {"t.co": 3, "other": 2},
		"browsers":  {"Chrome": 2, "other": 3}, // Chrome and Safari tie at 2: Chrome sorts first
		"os":        {"Windows": 2, "other": 3},
		"devices":   {"desktop": 3, "other": 2},
		// "(none)" ties with "news" and "social" at 2 and sorts first.
		"utm_sources":   {"(none)": 2, "other": 3},
		"utm_mediums":   {"(none)": 2, "other": 3},
		"utm_campaigns": {"(none)": 3, "other": 2},
	}
	for name, m := range map[string]map[string]int64{"countries": got.Countries, "referers": got.Referers,
		"browsers": got.Browsers, "os": got.OS, "devices": got.Devices, "utm_sources": got.UTMSources,
		"utm_mediums": got.UTMMediums, "utm_campaigns": got.UTMCampaigns} {
		if !reflect.DeepEqual(m, want[name]) {
			t.Errorf("%s = %v, want %v", name, m, want[name])
		}
	}
	all := decode[LinkStats](t, b.get(t, "/links/s/stats?limit=100"))
	if _, ok := all.Countries["other"]; ok || len(all.Countries) != 4 {
		t.Errorf("limit=100 countries = %v, want 4 values and no other", all.Countries)
	}
}

func TestLinkStatsTimeZones(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := createLink(t, b.pool, "tz")
	insertClicks(t, b.pool, []click{
		{link: id, at: utc("2025-03-10T10:00:00Z"), visitor: visitor(1)},
		{link: id, at: utc("2025-03-10T23:30:00Z"), visitor: visitor(2)}, // 2025-03-11 08:30 in Tokyo
		{link: id, at: utc("2025-03-10T23:45:00Z"), bot: true, device: "bot"},
	})
	drain(t, b.agg)

	tests := []struct {
		query       string
		daily       []int64 // clicks per date
		total, bots int64
	}{
		{"start=2025-03-10&end=2025-03-11", []int64{2, 0}, 2, 1},
		{"start=2025-03-10&end=2025-03-11&tz=Asia/Tokyo", []int64{1, 1}, 2, 1},
		{"start=2025-03-11&end=2025-03-11&tz=Asia/Tokyo", []int64{1}, 1, 1},
		{"start=2025-03-10&end=2025-03-10&tz=Asia/Tokyo", []int64{1}, 1, 0},
		// 2025-03-09 is a DST change in New York; both clicks are on 03-10 local time.
		{"start=2025-03-09&end=2025-03-10&tz=America/New_York", []int64{0, 2}, 2, 1},
		{"start=2025-03-10&end=2025-03-10&tz=Pacific/Honolulu", []int64{2}, 2, 1},
		{"start=2025-03-09&end=2025-03-09&tz=Pacific/Honolulu", []int64{0}, 0, 0},
	}
	for _, tc := range tests {
		got := decode[LinkStats](t, b.get(t, "/links/tz/stats?"+tc.query))
		var daily []int64
		for _, d := range got.Daily {
			daily = append(daily, d.Clicks)
		}
		if !reflect.DeepEqual(daily, tc.daily) || got.TotalClicks != tc.total || got.BotClicks != tc.bots {
			t.Errorf("%s: daily %v total %d bots %d; want %v, %d, %d", tc.query, daily, got.TotalClicks, got.BotClicks,
				tc.daily, tc.total, tc.bots)
		}
	}
	// Uniques stay per UTC day, labelled with the same date (documented approximation).
	got := decode[LinkStats](t, b.get(t, "/links/tz/stats?start=2025-03-10&end=2025-03-11&tz=Asia/Tokyo"))
	if got.TZ != "Asia/Tokyo" || got.Daily[0].UniqueVisitors != 2 || got.UniqueVisitors != 2 {
		t.Errorf("Tokyo uniques = %+v", got)
	}
	if !strings.HasSuffix(got.Hourly[0].Hour, "+09:00") {
		t.Errorf("hourly labels not in the request's zone: %s", got.Hourly[0].Hour)
	}
	// Default range ends today in the zone: 2025-03-15 12:00 UTC is already 03-16 at UTC+14.
	if got := decode[LinkStats](t, b.get(t, "/links/tz/stats?tz=Pacific/Kiritimati")); got.End != "2025-03-16" || got.Start != "2025-02-15" {
		t.Errorf("default Kiritimati range = %s..%s, want 2025-02-15..2025-03-16", got.Start, got.End)
	}
}

func TestStatsValidationAndErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seedLink(t, b)
	deleted := createLink(t, b.pool, "gone")
	if _, err := b.pool.Exec(context.Background(), "UPDATE links SET deleted_at = now() WHERE id = $1", deleted); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target string
		status int
		detail string // substring naming the problem
	}{
		{"/links/s/stats?start=2025-13-01", 400, "start"},
		{"/links/s/stats?start=yesterday", 400, "start"},
		{"/links/s/stats?end=2025-02-30", 400, "end"},
		{"/links/s/stats?start=2025-03-02&end=2025-03-01", 400, "after end"},
		{"/links/s/stats?start=2010-01-01&end=2025-01-01", 400, "at most 3660"},
		{"/links/s/stats?tz=Mars/Olympus", 400, "tz"},
		{"/links/s/stats?tz=Local", 400, "tz"},
		{"/links/s/stats?tz=../../etc/passwd", 400, "tz"},
		{"/links/s/stats?limit=0", 400, "limit"},
		{"/links/s/stats?limit=101", 400, "limit"},
		{"/links/s/stats?limit=ten", 400, "limit"},
		{"/links/s/clicks.csv?start=bad", 400, "start"},
		{"/stats?end=2025-1-1", 400, "end"},
		{"/links/nope/stats", 404, ""},
		{"/links/nope/clicks.csv", 404, ""},
		{"/links/S/stats", 404, ""}, // slugs are case-sensitive
		{"/links/gone/stats", 410, ""},
		{"/links/gone/clicks.csv", 410, ""},
	}
	for _, tc := range tests {
		rec := b.get(t, tc.target)
		if rec.Code != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.target, rec.Code, tc.status, rec.Body)
			continue
		}
		if ct := rec.Header().Get(echo.HeaderContentType); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", tc.target, ct)
		}
		var p struct{ Detail string }
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		if !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("%s: detail %q does not mention %q", tc.target, p.Detail, tc.detail)
		}
	}
	// The largest allowed range is accepted, one day more is not.
	if rec := b.get(t, "/links/s/stats?start=2015-03-09&end=2025-03-15"); rec.Code != 200 {
		t.Errorf("3,660-day range: status %d", rec.Code)
	}
	if rec := b.get(t, "/links/s/stats?start=2015-03-08&end=2025-03-15"); rec.Code != 400 {
		t.Errorf("3,661-day range: status %d", rec.Code)
	}
}

// Years PostgreSQL cannot take (year 0 was 22008, a 500) are a 400 naming the
// parameter; the extreme dates allowed answer, in the farthest zones too.
func TestStatsBadDatesAre400(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seedLink(t, b)
	for target, detail := range map[string]string{
		"/links/s/clicks.csv?start=0000-01-01&end=0000-01-10": "end: 0000-01-10 is outside",
		"/links/s/clicks.csv?start=0000-01-01":                "start: 0000-01-01 is outside",
		"/links/s/stats?start=0000-01-01&end=0000-01-10":      "end: 0000-01-10 is outside",
		"/stats?start=1969-12-31&end=1970-01-01":              "start: 1969-12-31 is outside",
		"/links/s/clicks.csv?start=9999-12-25&end=9999-12-31": "end: 9999-12-31 is outside",
	} {
		rec := b.get(t, target)
		var p struct{ Detail string }
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != 400 || !strings.Contains(p.Detail, detail) {
			t.Errorf("%s: %d %q, want 400 mentioning %q", target, rec.Code, p.Detail, detail)
		}
	}
	// The extreme dates answer, in the farthest zones too.
	for _, target := range []string{
		"/links/s/clicks.csv?start=1970-01-01&end=1970-01-02&tz=Pacific/Kiritimati",
		"/links/s/clicks.csv?start=9999-12-20&end=9999-12-30&tz=Pacific/Pago_Pago",
		"/links/s/stats?start=9999-12-20&end=9999-12-30&tz=Pacific/Kiritimati",
		"/links/s/stats?start=1970-01-01&end=1970-01-02",
		"/stats?start=9999-12-20&end=9999-12-30&tz=Pacific/Pago_Pago",
	} {
		if rec := b.get(t, target); rec.Code != 200 {
			t.Errorf("%s: status %d: %s", target, rec.Code, rec.Body)
		}
	}
}

func TestOverview(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := seedLink(t, b)
	other := createLink(t, b.pool, "o")
	gone := createLink(t, b.pool, "gone")
	createLink(t, b.pool, "idle")
	insertClicks(t, b.pool, []click{
		{link: other, at: utc("2025-03-12T00:00:00Z"), visitor: visitor(1)},
		{link: gone, at: utc("2025-03-12T00:00:00Z"), visitor: visitor(1)},
	})
	drain(t, b.agg)
	if _, err := b.pool.Exec(context.Background(), "UPDATE links SET deleted_at = now() WHERE id = $1", gone); err != nil {
		t.Fatal(err)
	}
	_ = s
	rec := b.get(t, "/stats?start=2025-03-10&end=2025-03-14")
	got := decode[Overview](t, rec)
	want := Overview{
		Start: "2025-03-10", End: "2025-03-14", TZ: "UTC",
		TotalClicks: 7, UniqueVisitors: 6, BotClicks: 1, Links: 3,
		Daily: []DayStats{
			{Date: "2025-03-10", Clicks: 3, UniqueVisitors: 2}, {Date: "2025-03-11"},
			{Date: "2025-03-12", Clicks: 2, UniqueVisitors: 2}, {Date: "2025-03-13"},
			{Date: "2025-03-14", Clicks: 2, UniqueVisitors: 2},
		},
		TopLinks: []TopLink{{Slug: "s", Domain: "localhost", Clicks: 5}, {Slug: "o", Domain: "localhost", Clicks: 1}},
		// Every link's clicks, the deleted one's included, as in the totals.
		Campaigns: Campaigns{
			UTMSources:   map[string]int64{"news": 2, "twitter": 1, "(none)": 4},
			UTMMediums:   map[string]int64{"email": 1, "social": 2, "(none)": 4},
			UTMCampaigns: map[string]int64{"launch": 1, "spring": 1, "(none)": 5},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("overview\n got %+v\nwant %+v", got, want)
	}
	if !strings.HasPrefix(rec.Body.String(), `{"start":"2025-03-10","end":"2025-03-14","tz":"UTC","total_clicks":7,"unique_visitors":6,"bot_clicks":1,"links":3,"daily":[`) {
		t.Errorf("body = %s", rec.Body)
	}
	tokyo := decode[Overview](t, b.get(t, "/stats?start=2025-03-15&end=2025-03-15&tz=Asia/Tokyo&limit=1"))
	// 2025-03-14 20:00 and 21:00 UTC are 03-15 in Tokyo, for the top links too.
	if tokyo.TotalClicks != 2 || tokyo.Daily[0].Clicks != 2 || !reflect.DeepEqual(tokyo.TopLinks, []TopLink{{Slug: "s", Domain: "localhost", Clicks: 2}}) {
		t.Errorf("Tokyo overview = %+v", tokyo)
	}
	top := decode[Overview](t, b.get(t, "/stats?start=2025-03-10&end=2025-03-14&limit=1"))
	if want := (Campaigns{UTMSources: map[string]int64{"(none)": 4, "other": 3}, UTMMediums: map[string]int64{"(none)": 4, "other": 3},
		UTMCampaigns: map[string]int64{"(none)": 5, "other": 2}}); !reflect.DeepEqual(top.Campaigns, want) {
		t.Errorf("limit=1 campaigns = %+v, want %+v", top.Campaigns, want)
	}
	if body := b.get(t, "/stats?start=2020-01-01&end=2020-01-01").Body.String(); !strings.Contains(body, `"utm_sources":{},"utm_mediums":{},"utm_campaigns":{}`) {
		t.Errorf("empty overview campaigns not rendered as {}: %s", body)
	}
	if empty := decode[Overview](t, b.get(t, "/stats?start=2020-01-01&end=2020-01-01")); empty.TopLinks == nil || empty.TotalClicks != 0 {
		t.Errorf("empty overview = %+v", empty)
	}
}

func TestClicksCSV(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := createLink(t, b.pool, "csv")
	insertClicks(t, b.pool, []click{
		{link: id, at: utc("2025-03-10T08:00:00.123456Z"), country: "US", referer: "https://t.co/x", refHost: "t.co",
			browser: "Chrome", os: "Windows", device: "desktop", ip: "192.0.2.0"},
		{link: id, at: utc("2025-03-11T09:00:00Z"), referer: "=HYPERLINK(\"http://evil\")", browser: "+1", os: "-2",
			device: "@bot", bot: true, botReason: "=cmd|' /C calc'!A0", ip: "2001:db8::",
			utmSource: "news", utmMedium: "email", utmCampaign: "=launch"},
		{link: id, at: utc("2025-03-12T00:00:00Z"), country: "DE"}, // after end
	})
	rec := b.get(t, "/links/csv/clicks.csv?start=2025-03-10&end=2025-03-11")
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("Content-Type = %q", ct)
	}
	if cd := rec.Header().Get("Content-Disposition"); cd != `attachment; filename="csv-clicks.csv"` {
		t.Errorf("Content-Disposition = %q", cd)
	}
	records, err := csv.NewReader(rec.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"time", "country", "referer", "browser", "os", "device", "is_bot", "bot_reason", "ip", "utm_source", "utm_medium", "utm_campaign"},
		{"2025-03-10T08:00:00.123456Z", "US", "https://t.co/x", "Chrome", "Windows", "desktop", "false", "", "192.0.2.0", "", "", ""},
		{"2025-03-11T09:00:00.000000Z", "", `'=HYPERLINK("http://evil")`, "'+1", "'-2", "'@bot", "true", "'=cmd|' /C calc'!A0", "2001:db8::",
			"news", "email", "'=launch"},
	}
	if !reflect.DeepEqual(records, want) {
		t.Errorf("csv\n got %q\nwant %q", records, want)
	}
	// Raw clicks need no aggregation to be exported.
	if n := pending(t, b.pool); n != 3 {
		t.Errorf("pending = %d", n)
	}
}

// countingWriter is a ResponseWriter that keeps nothing: it counts bytes, lines and
// flushes and samples the heap, to show the export streams in constant memory.
type countingWriter struct {
	header            http.Header
	status            int
	bytes, lines      int64
	flushes           int
	bytesAtFirstFlush int64
	peakHeap          uint64
}

func (w *countingWriter) Header() http.Header  { return w.header }
func (w *countingWriter) WriteHeader(code int) { w.status = code }
func (w *countingWriter) Write(p []byte) (int, error) {
	w.bytes += int64(len(p))
	w.lines += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}
func (w *countingWriter) Flush() {
	if w.flushes == 0 {
		w.bytesAtFirstFlush = w.bytes
	}
	w.flushes++
	if w.flushes%20 == 0 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.peakHeap = max(w.peakHeap, m.HeapAlloc)
	}
}

// Not parallel: it measures the heap, which parallel tests would disturb.
func TestClicksCSVStreamsLargeRangeInConstantMemory(t *testing.T) {
	b := setup(t)
	id := createLink(t, b.pool, "big")
	const n = 200_000
	if _, err := b.pool.Exec(context.Background(), `
INSERT INTO click_logs (event_id, link_id, clicked_at, ip, country, referer, referer_host, browser, os, device)
SELECT gen_random_uuid(), $1, '2025-01-01'::timestamptz + i * interval '1 minute', '198.51.100.0', 'US',
       'https://example.com/' || repeat('x', 200) || i, 'example.com', 'Firefox', 'Linux', 'desktop'
FROM generate_series(1, $2) i`, id, n); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base := m.HeapAlloc

	w := &countingWriter{header: http.Header{}}
	q := url.Values{"start": {"2025-01-01"}, "end": {"2025-12-31"}}
	b.e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/links/big/clicks.csv?"+q.Encode(), nil))
	if w.status != 200 && w.status != 0 {
		t.Fatalf("status %d", w.status)
	}
	if w.lines != n+1 {
		t.Fatalf("exported %d lines, want %d rows and a header", w.lines, n+1)
	}
	t.Logf("exported %d MB in %d flushes; heap peak %d KB over a %d KB baseline",
		w.bytes>>20, w.flushes, w.peakHeap>>10, base>>10)
	if w.flushes < 100 || w.bytesAtFirstFlush > w.bytes/100 {
		t.Errorf("%d flushes, first after %d of %d bytes: the export is not streamed", w.flushes, w.bytesAtFirstFlush, w.bytes)
	}
	if limit := base + 16<<20; w.peakHeap > limit || w.bytes < 40<<20 {
		t.Errorf("heap peaked at %d MB (baseline %d MB) while exporting %d MB: not constant memory",
			w.peakHeap>>20, base>>20, w.bytes>>20)
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"start=2025-01-01&end=2025-01-31", "tz=Asia/Tokyo", "start=9999-12-31", "end=0000-01-01",
		"limit=100", "tz=Local", "start=2025-02-29", "tz=America/New_York&start=2025-03-09&end=2025-03-09",
		"tz=America/Santiago&start=2026-09-06&end=2026-09-06", "tz=Pacific/Apia&start=2011-12-30&end=2011-12-30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseRange(v, fixedNow)
		if err != nil {
			return
		}
		if q.start.After(q.end) || q.days() < 1 || q.days() > maxRangeDays || q.limit < 1 || q.limit > maxLimit || q.loc == nil {
			t.Fatalf("parseRange(%q) accepted %+v", raw, q)
		}
		from, to := q.bounds()
		if to.Before(from) || (!from.Before(to) && q.days() > 1) {
			// Only a range of one date a zone skipped whole (Apia's 2011-12-30) is empty.
			t.Fatalf("parseRange(%q): bounds %v..%v", raw, from, to)
		}
		series, _, _, _ := dailySeries(q, nil, nil)
		if len(series) != q.days() || series[len(series)-1].Date != q.end.Format(dateLayout) {
			t.Fatalf("parseRange(%q): series of %d days ends %s", raw, len(series), series[len(series)-1].Date)
		}
	})
}

// The last-48-hours labels are shared between requests only for the same hour and zone.
func TestHourLabelsFollowHourAndZone(t *testing.T) {
	t.Parallel()
	h := NewReader(Config{}, nil, nil, nil)
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2025, 3, 13, 13, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		from  time.Time
		loc   *time.Location
		first string
	}{
		{from, time.UTC, "2025-03-13T13:00:00Z"},
		{from, tokyo, "2025-03-13T22:00:00+09:00"},
		{from, time.UTC, "2025-03-13T13:00:00Z"},
		{from.Add(time.Hour), time.UTC, "2025-03-13T14:00:00Z"},
		{from.Add(time.Hour), time.UTC, "2025-03-13T14:00:00Z"},
	} {
		got := h.hourLabels(c.from, c.loc, 48)
		if len(got) != 48 || got[0] != c.first || got[47] != c.from.Add(47*time.Hour).In(c.loc).Format(time.RFC3339) {
			t.Fatalf("%v in %v: %d labels from %q to %q", c.from, c.loc, len(got), got[0], got[len(got)-1])
		}
	}
}

// A range too long is refused naming its true length, also past the 292 years a
// time.Duration holds; a DST change does not shift the count.
func TestRangeLengthIsCountedInDays(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"start=1970-01-01&end=9999-12-30": "covers 2932896 days",
		"start=2000-01-01&end=2400-01-01": "covers 146098 days",
		"start=2014-01-01&end=2025-01-01": "covers 4019 days",
	} {
		v, _ := url.ParseQuery(raw)
		if _, err := parseRange(v, fixedNow); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying it %s", raw, err, want)
		}
	}
	v, _ := url.ParseQuery("tz=America/New_York&start=2025-03-01&end=2025-03-31")
	if q, err := parseRange(v, fixedNow); err != nil || q.days() != 31 {
		t.Fatalf("March in New York: %d days, %v", q.days(), err)
	}
}

// A clicks.csv that fails before its first byte is an error answer, not a download: the
// browser must not save the problem document as slug-clicks.csv.
func TestClicksCSVFailureIsNoDownload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	createLink(t, b.pool, "s")
	// The link is found, then COPY fails at once.
	if _, err := b.pool.Exec(context.Background(), `ALTER TABLE click_logs RENAME TO click_logs_away`); err != nil {
		t.Fatal(err)
	}
	rec := b.get(t, "/links/s/clicks.csv")
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", rec.Code, rec.Body)
	}
	if d := rec.Header().Get(echo.HeaderContentDisposition); d != "" {
		t.Errorf("the error answer is offered as a download: Content-Disposition %q", d)
	}
	if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want a problem", ct)
	}
}
