package dashboard

import (
	"net/url"
	"strings"
	"testing"
)

func TestNiceStep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want float64 }{
		{0, 1}, {0.3, 1}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {12, 20}, {25, 50}, {50, 50}, {51, 100}, {2500, 5000},
	} {
		if got := niceStep(tc.in); got != tc.want {
			t.Errorf("niceStep(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestFormatCount(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := formatCount(in); got != want {
			t.Errorf("formatCount(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestChartLayout(t *testing.T) {
	t.Parallel()
	c := newChart(days(30, func(i int) int64 { return int64(i) * 7 }))
	if len(c.Bars) != 30 || c.Empty {
		t.Fatalf("%d bars, empty %v", len(c.Bars), c.Empty)
	}
	for i, b := range c.Bars {
		if b.X < c.Left || b.X+b.W > c.Right+0.2 || b.Y < c.Top || b.Y+b.H > c.Bottom+0.2 || b.H < 0 {
			t.Errorf("bar %d %+v outside the plot", i, b)
		}
	}
	if c.Bars[0].H != 0 {
		t.Errorf("a day without clicks has a bar of height %v", c.Bars[0].H)
	}
	// The tallest bar reaches the top tick or close to it; ticks are round numbers.
	last := c.YTicks[len(c.YTicks)-1]
	if c.Bars[29].Y < last.Pos || last.Label != "250" {
		t.Errorf("peak 203 at y=%v, top tick %+v", c.Bars[29].Y, last)
	}
	if len(c.XLabels) == 0 || len(c.XLabels) > maxXLabels || c.XLabels[0].Label != "Feb 14" {
		t.Errorf("x labels %+v", c.XLabels)
	}
	if n := len(strings.Fields(c.Line)); n != 30 {
		t.Errorf("line has %d points", n)
	}

	empty := newChart(days(7, func(int) int64 { return 0 }))
	if !empty.Empty || empty.Line != "" || len(empty.YTicks) < 2 {
		t.Errorf("empty chart %+v", empty)
	}
	if none := newChart(nil); len(none.Bars) != 0 || !none.Empty {
		t.Errorf("chart of no days %+v", none)
	}
}

func TestParseTags(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "", " a, b ,,c ": "a|b|c", ",": "", "one": "one"} {
		if got := strings.Join(parseTags(in), "|"); got != want {
			t.Errorf("parseTags(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewBreakdown(t *testing.T) {
	t.Parallel()
	b := newBreakdown("x", map[string]int64{"other": 50, "a": 10, "b": 30, "c": 10})
	var order []string
	for _, r := range b.Rows {
		order = append(order, r.Value+":"+r.Percent)
	}
	if got := strings.Join(order, " "); got != "b:30.0% a:10.0% c:10.0% other:50.0%" {
		t.Errorf("rows %s", got)
	}
	if e := newBreakdown("x", nil); len(e.Rows) != 0 {
		t.Errorf("empty breakdown %+v", e)
	}
}

func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/dashboard", "/dashboard/links/a?x=1", "//evil", "/dashboard//evil", `/dashboard\@evil`, "https://evil", "/dashboard/../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
			t.Fatalf("safeNext(%q) = %q leaves the site", next, got)
		}
		if got != "/dashboard" && !strings.HasPrefix(got, "/dashboard/") && !strings.HasPrefix(got, "/dashboard?") {
			t.Fatalf("safeNext(%q) = %q is not a dashboard page", next, got)
		}
		if strings.ContainsAny(got, "\\\r\n\t") || strings.Contains(got, "//") {
			t.Fatalf("safeNext(%q) = %q", next, got)
		}
	})
}
