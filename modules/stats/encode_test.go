package stats

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// The hand-written encoder writes byte for byte what encoding/json writes, for
// ordinary and hostile strings alike.
func TestEncodeLinkStatsMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"", "US", "(direct)", "news.ycombinator.com", "other", "a\"b", `back\slash`,
		"<script>&amp;", "tab\there", "nul\x00", "é", "日本", "\u2028\u2029", "bad\xffutf8", "emoji 🚀",
		"2025-03-15", "2025-03-15T01:00:00+05:30", "\x7f", " spaced "}
	word := func() string { return words[rng.IntN(len(words))] }
	counts := func() map[string]int64 {
		switch rng.IntN(6) {
		case 0:
			return nil
		case 1:
			return map[string]int64{}
		}
		m := map[string]int64{}
		for range rng.IntN(20) {
			m[word()] = rng.Int64N(1 << 40)
		}
		return m
	}
	for i := range 2000 {
		s := LinkStats{Slug: word(), Start: word(), End: word(), TZ: word(),
			TotalClicks: rng.Int64(), UniqueVisitors: rng.Int64N(100), BotClicks: -rng.Int64N(5),
			Countries: counts(), Referers: counts(), Browsers: counts(), OS: counts(), Devices: counts()}
		if rng.IntN(5) > 0 {
			s.Daily = make([]DayStats, rng.IntN(40))
			for j := range s.Daily {
				s.Daily[j] = DayStats{Date: word(), Clicks: rng.Int64N(1000), UniqueVisitors: rng.Int64N(1000)}
			}
		}
		if rng.IntN(5) > 0 {
			s.Hourly = make([]HourStats, rng.IntN(50))
			for j := range s.Hourly {
				s.Hourly[j] = HourStats{Hour: word(), Clicks: rng.Int64N(1000), BotClicks: rng.Int64N(1000)}
			}
		}
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendLinkStats(nil, &s); !bytes.Equal(got, want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// The last-48-hours labels are shared between requests only for the same hour and zone.
func TestHourLabelsFollowHourAndZone(t *testing.T) {
	t.Parallel()
	h := NewHandler(HandlerConfig{}, nil, nil, nil)
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
