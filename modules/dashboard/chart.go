package dashboard

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hop-dev/hop/modules/stats"
)

// chartGeometry is a chart's size and margins in SVG user units; the SVG scales to its
// container through viewBox, text included.
type chartGeometry struct {
	width, height int
	left, right   float64 // margins
	top, bottom   float64
	maxXLabels    int
	fontSize      float64
	class         string
}

// Two layouts of every chart: CSS shows the wide one on wide screens and the narrow
// one below 700 px, where the wide one would shrink its 11 px text to 5 px. The narrow
// one is drawn at about the size it is shown (a 390 px phone), with fewer labels.
var (
	wideChart   = chartGeometry{width: 720, height: 220, left: 52, right: 8, top: 10, bottom: 24, maxXLabels: 7, fontSize: 11, class: "wide"}
	narrowChart = chartGeometry{width: 340, height: 190, left: 44, right: 6, top: 10, bottom: 26, maxXLabels: 4, fontSize: 12, class: "narrow"}
)

// maxXLabels is the wide layout's, which tests check.
const maxXLabels = 7

// chart is a daily series laid out for the template: bars for human clicks, a line for
// unique visitors, and axis labels. It is computed here so the template only prints
// numbers, and it needs no JavaScript or inline styles (the CSP allows neither).
type chart struct {
	Width, Height int
	Left, Right   float64 // plot area, x
	Top, Bottom   float64 // plot area, y
	YLabelX       float64 // right edge of the y-axis labels
	XLabelY       float64 // baseline of the x-axis labels
	Bars          []chartBar
	Line          string // polyline points of unique visitors; empty without data
	YTicks        []chartTick
	XLabels       []chartTick
	Empty         bool
	Summary       string // accessible description
	FontSize      float64
	Class         string
	Hourly        bool   // bars per hour, no line: a caption of its own
	Narrow        *chart // the same series laid out for narrow screens
}

type chartBar struct {
	X, Y, W, H float64
	Title      string
}

type chartTick struct {
	Pos    float64 // y for YTicks, x for XLabels
	Label  string
	Anchor string // text-anchor of an x label: "" (middle), "start" or "end"
}

// newChart lays out days in the wide layout, with the narrow one attached.
func newChart(days []stats.DayStats) chart {
	pts := make([]point, len(days))
	var total, peak int64
	for i, d := range days {
		pts[i] = point{label: shortDate(d.Date), clicks: d.Clicks, uniques: d.UniqueVisitors,
			title: fmt.Sprintf("%s: %s, %s", d.Date, plural(d.Clicks, "click"), plural(d.UniqueVisitors, "unique visitor"))}
		total += d.Clicks
		peak = max(peak, d.Clicks)
	}
	summary := ""
	if len(days) > 0 {
		summary = fmt.Sprintf("Daily clicks from %s to %s: %s in total, at most %s on one day.",
			days[0].Date, days[len(days)-1].Date, formatCount(total), formatCount(peak))
	}
	return bothLayouts(pts, true, summary)
}

// newHourlyChart lays out hours (oldest first) as bars of human clicks, labelled with
// the hour of day; hourly rollups count no unique visitors, so there is no line.
func newHourlyChart(hours []stats.HourStats) chart {
	hours = hours[max(0, len(hours)-hourlyBars):]
	pts := make([]point, len(hours))
	var total, peak int64
	for i, h := range hours {
		label, when := h.Hour, h.Hour
		if t, err := time.Parse(time.RFC3339, h.Hour); err == nil {
			label, when = t.Format("15:00"), t.Format("Jan 2 15:00")
		}
		pts[i] = point{label: label, clicks: h.Clicks,
			title: fmt.Sprintf("%s: %s, %s", when, plural(h.Clicks, "click"), plural(h.BotClicks, "bot click"))}
		total += h.Clicks
		peak = max(peak, h.Clicks)
	}
	c := bothLayouts(pts, false, fmt.Sprintf("Clicks per hour over the last %d hours: %s in total, at most %s in one hour.",
		len(hours), formatCount(total), formatCount(peak)))
	c.Hourly, c.Narrow.Hourly = true, true
	return c
}

func bothLayouts(pts []point, line bool, summary string) chart {
	c := layoutChart(pts, line, wideChart)
	n := layoutChart(pts, line, narrowChart)
	c.Summary, n.Summary = summary, summary
	c.Narrow = &n
	return c
}

// hourlyBars is how many hours the hourly chart shows.
const hourlyBars = 24

// point is one bar of a chart: its axis label, its tooltip, human clicks and, for a
// line, unique visitors.
type point struct {
	label, title    string
	clicks, uniques int64
}

// layoutChart lays out pts in geometry g, with a line of unique visitors when line is set.
func layoutChart(pts []point, line bool, g chartGeometry) chart {
	c := chart{
		Width: g.width, Height: g.height,
		Left: g.left, Right: float64(g.width) - g.right,
		Top: g.top, Bottom: float64(g.height) - g.bottom,
		YLabelX: g.left - 6, XLabelY: float64(g.height) - 8,
		FontSize: g.fontSize, Class: g.class,
	}
	var peak, total int64
	for _, p := range pts {
		peak = max(peak, p.clicks)
		if line {
			peak = max(peak, p.uniques)
		}
		total += p.clicks
	}
	c.Empty = total == 0

	step := niceStep(float64(peak) / 5) // at most six ticks
	top := step * math.Max(1, math.Ceil(float64(peak)/step))
	height := c.Bottom - c.Top
	y := func(v int64) float64 { return round1(c.Bottom - float64(v)/top*height) }
	for v := 0.0; v <= top+step/2; v += step {
		c.YTicks = append(c.YTicks, chartTick{Pos: y(int64(v)), Label: formatCount(int64(v))})
	}

	if len(pts) == 0 {
		return c
	}
	slot := (c.Right - c.Left) / float64(len(pts))
	width := math.Max(1, slot*0.8)
	points := make([]string, 0, len(pts))
	for i, p := range pts {
		x := c.Left + float64(i)*slot
		by := y(p.clicks)
		c.Bars = append(c.Bars, chartBar{X: round1(x + (slot-width)/2), Y: by, W: round1(width), H: round1(c.Bottom - by), Title: p.title})
		points = append(points, strconv.FormatFloat(round1(x+slot/2), 'f', -1, 64)+","+strconv.FormatFloat(y(p.uniques), 'f', -1, 64))
	}
	if line && !c.Empty {
		c.Line = strings.Join(points, " ")
	}
	// Labels spread evenly from the first day to the last, so the newest bar (today, in
	// the default range) always has its date and labels never crowd each other.
	n := min(len(pts), g.maxXLabels)
	for k := range n {
		i := 0
		if n > 1 {
			i = int(math.Round(float64(k) * float64(len(pts)-1) / float64(n-1)))
		}
		c.XLabels = append(c.XLabels, chartTick{Pos: round1(c.Left + float64(i)*slot + slot/2), Label: pts[i].label})
	}
	// The first and last labels are centred on their bars but must stay inside the SVG.
	if len(c.XLabels) > 0 {
		c.XLabels[0].Anchor = "start"
		c.XLabels[0].Pos = round1(c.Left + slot/2 - min(slot/2, 6))
		if len(c.XLabels) > 1 {
			last := &c.XLabels[len(c.XLabels)-1]
			last.Anchor = "end"
			last.Pos = round1(c.Right - slot/2 + min(slot/2, 6))
		}
	}
	return c
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten, and at least 1: clicks are whole.
func niceStep(x float64) float64 {
	if x <= 1 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= x {
			return m * mag
		}
	}
	return 10 * mag
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

// shortDate turns 2026-11-05 into "Nov 5"; anything else is shown as is.
func shortDate(s string) string {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return s
	}
	return t.Format("Jan 2")
}

// plural prints n and noun, adding an s unless n is 1: "1 click", "1,200 clicks".
func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return formatCount(n) + " " + noun + "s"
}

// formatCount prints n with thousands separators: 1234567 -> "1,234,567".
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
