package app

import (
	"encoding/csv"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Campaign parameters of a redirect's query reach the utm breakdowns of the link's
// stats, of the overview and of clicks.csv with exact counts, through the real router,
// ingest and aggregator — with Redis and without it. Values are normalised, bots are
// kept out, and nothing else of the query is stored.
func TestCampaignBreakdownsEndToEnd(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"redis", "no-redis"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			h := startHop(t, func(cfg map[string]any) {
				if mode == "no-redis" {
					cfg["redis_url"] = ""
				}
			})
			slug := h.createLink(t, map[string]any{"url": "https://example.com/landing?utm_source=own#top"})["slug"].(string)
			const chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
			visits := []struct {
				query, ua, location string
			}{
				{"?utm_source=news&utm_medium=email&utm_campaign=launch", chrome,
					"https://example.com/landing?utm_source=own&utm_medium=email&utm_campaign=launch#top"},
				{"?utm_source=news&utm_medium=email&utm_campaign=launch&secret=token", chrome, ""},
				{"?utm_source=news&utm_medium=email&utm_campaign=launch", chrome, ""},
				{"?UTM_SOURCE=%20News%20&utm_medium=EMAIL", chrome, ""},
				{"?a=1", chrome, "https://example.com/landing?utm_source=own&a=1#top"},
				{"", chrome, "https://example.com/landing?utm_source=own#top"},
				{"?utm_source=news&utm_medium=email&utm_campaign=launch", "curl/8.4.0", ""},
			}
			for _, v := range visits {
				r := h.do(t, http.MethodGet, "/"+slug+v.query, nil, "User-Agent", v.ua)
				mustStatus(t, r, http.StatusFound)
				if v.location != "" && r.Header.Get("Location") != v.location {
					t.Errorf("%s: Location %q, want %q", v.query, r.Header.Get("Location"), v.location)
				}
			}
			const humans, bots = 6, 1
			s := h.waitStats(t, slug, func(s map[string]any) bool {
				return s["total_clicks"].(float64)+s["bot_clicks"].(float64) >= humans+bots
			})
			want := map[string]map[string]float64{
				"utm_sources":   {"news": 4, "(none)": 2},
				"utm_mediums":   {"email": 4, "(none)": 2},
				"utm_campaigns": {"launch": 3, "(none)": 3},
			}
			if s["total_clicks"] != float64(humans) || s["bot_clicks"] != float64(bots) {
				t.Fatalf("counted %v humans and %v bots, want %d and %d", s["total_clicks"], s["bot_clicks"], humans, bots)
			}
			for name, w := range want {
				if got := counts(s[name]); !maps.Equal(got, w) {
					t.Errorf("link stats %s = %v, want %v", name, got, w)
				}
			}
			o := h.api(t, http.MethodGet, "/stats", nil)
			mustStatus(t, o, http.StatusOK)
			for name, w := range want {
				if got := counts(o.JSON(t)[name]); !maps.Equal(got, w) {
					t.Errorf("overview %s = %v, want %v", name, got, w)
				}
			}

			r := h.api(t, http.MethodGet, "/links/"+slug+"/clicks.csv", nil)
			mustStatus(t, r, http.StatusOK)
			records, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			header := records[0]
			if got := header[len(header)-3:]; !reflect.DeepEqual(got, []string{"utm_source", "utm_medium", "utm_campaign"}) {
				t.Fatalf("clicks.csv header %v", header)
			}
			var rows []string
			for _, rec := range records[1:] {
				rows = append(rows, strings.Join(rec[len(rec)-3:], "/"))
			}
			slices.Sort(rows)
			if w := []string{"//", "//", "news/email/", "news/email/launch", "news/email/launch", "news/email/launch", "news/email/launch"}; !slices.Equal(rows, w) {
				t.Errorf("clicks.csv campaign columns %q, want %q", rows, w)
			}
			// Only the three parameters are kept: nothing else of the query is stored.
			var leaked int
			if err := h.DB.Pool.QueryRow(t.Context(), `SELECT count(*) FROM click_logs c
				WHERE c::text LIKE '%secret%' OR c::text LIKE '%token%'`).Scan(&leaked); err != nil {
				t.Fatal(err)
			}
			if leaked != 0 {
				t.Errorf("%d click rows store other query parameters", leaked)
			}
		})
	}
}

// counts converts a decoded JSON breakdown.
func counts(v any) map[string]float64 {
	out := map[string]float64{}
	m, _ := v.(map[string]any)
	for k, n := range m {
		out[k], _ = n.(float64)
	}
	return out
}
