package dashboard

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Chart geometry in SVG user units; the SVG scales to its container through viewBox.
const (
	chartWidth  = 720
	chartHeight = 220
	plotLeft    = 52
	plotRight   = 8
	plotTop     = 10
	plotBottom  = 24
	maxXLabels  = 7
)

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
}

type chartBar struct {
	X, Y, W, H float64
	Title      string
}

type chartTick struct {
	Pos   float64 // y for YTicks, x for XLabels
	Label string
}

// newChart lays out days.
func newChart(days []Day) chart {
	c := chart{
		Width: chartWidth, Height: chartHeight,
		Left: plotLeft, Right: chartWidth - plotRight,
		Top: plotTop, Bottom: chartHeight - plotBottom,
		YLabelX: plotLeft - 6, XLabelY: chartHeight - 6,
	}
	var peak, total int64
	for _, d := range days {
		peak = max(peak, d.Clicks, d.UniqueVisitors)
		total += d.Clicks
	}
	c.Empty = total == 0
	if len(days) > 0 {
		c.Summary = fmt.Sprintf("Daily clicks from %s to %s: %s in total, at most %s on one day.",
			days[0].Date, days[len(days)-1].Date, formatCount(total), formatCount(peak))
	}

	step := niceStep(float64(peak) / 5) // at most six ticks
	top := step * math.Max(1, math.Ceil(float64(peak)/step))
	height := c.Bottom - c.Top
	y := func(v int64) float64 { return round1(c.Bottom - float64(v)/top*height) }
	for v := 0.0; v <= top+step/2; v += step {
		c.YTicks = append(c.YTicks, chartTick{Pos: y(int64(v)), Label: formatCount(int64(v))})
	}

	if len(days) == 0 {
		return c
	}
	slot := (c.Right - c.Left) / float64(len(days))
	width := math.Max(1, slot*0.8)
	points := make([]string, 0, len(days))
	for i, d := range days {
		x := c.Left + float64(i)*slot
		by := y(d.Clicks)
		c.Bars = append(c.Bars, chartBar{
			X: round1(x + (slot-width)/2), Y: by, W: round1(width), H: round1(c.Bottom - by),
			Title: fmt.Sprintf("%s: %s, %s", d.Date, plural(d.Clicks, "click"), plural(d.UniqueVisitors, "unique visitor")),
		})
		points = append(points, strconv.FormatFloat(round1(x+slot/2), 'f', -1, 64)+","+strconv.FormatFloat(y(d.UniqueVisitors), 'f', -1, 64))
	}
	if !c.Empty {
		c.Line = strings.Join(points, " ")
	}
	every := (len(days) + maxXLabels - 1) / maxXLabels
	for i := 0; i < len(days); i += every {
		c.XLabels = append(c.XLabels, chartTick{Pos: round1(c.Left + float64(i)*slot + slot/2), Label: shortDate(days[i].Date)})
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
