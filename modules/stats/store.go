package stats

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// store reads the rollups. Each public read is one query, so one round trip (the
// overview's number of links comes from Domains.LiveLinks).
type store struct {
	pool *pgxpool.Pool
}

// Row kinds in the UNION ALL results below.
const (
	kindLink = iota
	kindDay
	kindDimension
	kindRangeHour
	kindRecentHour
	kindTopLink
)

// linkStatsSQL answers a link's stats in one round trip: the link and its stats
// version, its daily rollups, clicks per dimension value (top-N is cut in Go: cheaper
// than a window function here) and its hourly rollups over the last 48 hours [$4, $5).
// When the link's version equals $6 — the version of a response the caller already
// holds — only the first row is returned: the held response is still exact.
// Every branch is an index-only range scan on a primary key.
// Columns: kind, dimension, value, a, b, c, d.
//
// linkStatsZoneSQL adds the hourly rollups over [$7, $8), which a non-UTC daily series
// is built from. UTC requests use the shorter statement on purpose: PostgreSQL keeps a
// generic plan for a prepared statement only when its estimated cost is no worse than
// the custom plans', and an always-empty hourly branch with unknown bounds made the
// generic plan look dearer, so every request was planned again (planning cost more
// than executing it).
const linkStatsSQL = `
WITH l AS (SELECT id, deleted_at IS NOT NULL AS deleted, stats_version FROM links WHERE domain_id = $7 AND slug = $1),
     c AS (SELECT id FROM l WHERE stats_version <> $6 AND NOT deleted)
SELECT 0, '', '', deleted::int::int8, stats_version, 0::int8, 0::int8 FROM l
UNION ALL
SELECT 1, '', '', (day - $2::date)::int8, clicks, unique_visitors, bot_clicks
FROM daily_stats WHERE link_id = (SELECT id FROM c) AND day BETWEEN $2::date AND $3::date
UNION ALL
SELECT 2, dimension, value, sum(clicks)::int8, 0, 0, 0
FROM dimension_stats WHERE link_id = (SELECT id FROM c) AND day BETWEEN $2::date AND $3::date
GROUP BY dimension, value
UNION ALL
SELECT 4, '', '', extract(epoch FROM hour)::int8, clicks, bot_clicks, 0
FROM hourly_stats WHERE link_id = (SELECT id FROM c) AND hour >= $4 AND hour < $5`

const linkStatsZoneSQL = linkStatsSQL + `
UNION ALL
SELECT 3, '', '', extract(epoch FROM hour)::int8, clicks, bot_clicks, 0
FROM hourly_stats WHERE link_id = (SELECT id FROM c) AND hour >= $8 AND hour < $9`

// linkHeadSQL reads what every stats request needs first: whether the link exists and
// is live, and the version of its rollups.
const linkHeadSQL = `SELECT id, deleted_at IS NOT NULL, stats_version FROM links WHERE domain_id = $2 AND slug = $1`

// defaultDomain is the default domain's id (domains.DefaultID).
const defaultDomain int64 = 1

// domainOr is a link's domain id: id, or the default domain for 0.
func domainOr(id int64) int64 {
	if id == 0 {
		return defaultDomain
	}
	return id
}

// linkHead returns the id, state and stats version of a link on the default domain,
// with no rollup rows.
func (s *store) linkHead(ctx context.Context, slug string) (rawLinkStats, error) {
	return s.linkHeadIn(ctx, defaultDomain, slug)
}

// linkHeadIn is linkHead on a domain (0: the default).
func (s *store) linkHeadIn(ctx context.Context, domain int64, slug string) (rawLinkStats, error) {
	r := rawLinkStats{found: true}
	err := s.pool.QueryRow(ctx, linkHeadSQL, slug, domainOr(domain)).Scan(&r.id, &r.deleted, &r.version)
	if errors.Is(err, pgx.ErrNoRows) {
		return rawLinkStats{}, nil
	}
	if err != nil {
		return rawLinkStats{}, fmt.Errorf("query link: %w", err)
	}
	return r, nil
}

// rawLinkStats is what linkStatsSQL returns, before it is shaped into the response.
type rawLinkStats struct {
	id             int64 // set by linkHead only
	found, deleted bool
	version        int64    // the link's stats_version; equal to known: no rollup rows read
	daily          []dayRow // by UTC date
	dimensions     []dimensionRow
	rangeHours     []hourRow
	recentHours    []hourRow
}

type dayRow struct {
	index                      int // days since the range's start
	clicks, uniques, botClicks int64
}

type dimensionRow struct {
	dimension, value string
	clicks           int64
}

type hourRow struct {
	hour              time.Time
	clicks, botClicks int64
}

// linkStats reads a link's rollups, unless its stats version is known (pass -1 when
// no response is held).
func (s *store) linkStats(ctx context.Context, slug string, q rangeQuery, recentFrom, recentTo time.Time, known int64) (rawLinkStats, error) {
	sql, args := linkStatsSQL, []any{slug, q.start, q.end, recentFrom, recentTo, known, domainOr(q.domain)}
	if !q.utc() { // UTC dates are exact in the daily rollups; other zones need hours
		from, to := q.bounds()
		sql, args = linkStatsZoneSQL, append(args, from, to)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return rawLinkStats{}, fmt.Errorf("query link stats: %w", err)
	}
	defer rows.Close()
	// Sized for a typical answer, so appends do not reallocate per request.
	r := rawLinkStats{
		daily:       make([]dayRow, 0, q.days()),
		dimensions:  make([]dimensionRow, 0, 128),
		recentHours: make([]hourRow, 0, 48),
	}
	fields := rows.FieldDescriptions()
	var n [7]int64
	for rows.Next() {
		vals := rows.RawValues()
		if err := scanKindRow(fields, vals, &n); err != nil {
			return rawLinkStats{}, fmt.Errorf("scan link stats: %w", err)
		}
		kind, a, b, c, d := n[0], n[3], n[4], n[5], n[6]
		switch kind {
		case kindLink:
			r.found, r.deleted, r.version = true, a == 1, b
		case kindDay:
			r.daily = append(r.daily, dayRow{index: int(a), clicks: b, uniques: c, botClicks: d})
		case kindDimension:
			r.dimensions = append(r.dimensions, dimensionRow{dimension: dimensionName(vals[1]), value: string(vals[2]), clicks: a})
		case kindRangeHour:
			r.rangeHours = append(r.rangeHours, hourRow{hour: time.Unix(a, 0), clicks: b, botClicks: c})
		case kindRecentHour:
			r.recentHours = append(r.recentHours, hourRow{hour: time.Unix(a, 0), clicks: b, botClicks: c})
		}
	}
	if err := rows.Err(); err != nil {
		return rawLinkStats{}, fmt.Errorf("read link stats: %w", err)
	}
	return r, nil
}

// overviewSQL answers the /stats overview in one round trip (the number of live links
// comes from Domains.LiveLinks, a second one): daily totals over all links, the top $3
// live links by human clicks, hourly totals over [$4, $5) for non-UTC daily series,
// and the campaign breakdowns over all links (top-N is cut in Go).
//
// A top link's clicks are counted over the range's instants in its zone: the whole UTC
// days inside it, [$8, $9), from the daily and monthly rollups, and the hours before and
// after them, [$10, $11) and [$12, $13), from hourly_stats (overviewEdges). A range with
// none, as every UTC one, runs the statement without them (overviewDaysSQL): merely
// opening those scans cost about 0.5 ms a request. One edge alone may be empty (a zone
// at UTC+0 on one end of the range only); its test uses parameters only, which
// PostgreSQL checks once before running the scan under it.
// Columns: kind, slug (a campaign row's value), a, b, c, d, and a top link's domain host
// (empty in overviewDomainSQL, whose links share one).
//
// It reads the totals that migration 00025's triggers keep beside the rollups, so its
// cost does not grow with the number of links times days: daily_totals and
// hourly_totals hold all links per day and hour, campaign_totals (00028) all links per
// day and campaign value, and a link's clicks over the range are
// its monthly_stats for the whole months [$6, $7) plus its daily_stats for the days
// of [$8, $9) before $6 and from $7 on (at most two partial months).
const overviewSQL = overviewHead + overviewEdges + overviewTail

const overviewDaysSQL = overviewHead + overviewTail

const overviewHead = `
SELECT 1, '', (day - $1::date)::int8, clicks, unique_visitors, bot_clicks, ''::text
FROM daily_totals WHERE day BETWEEN $1::date AND $2::date
UNION ALL
(SELECT 5, l.slug, t.clicks, 0, 0, 0, dm.host
 FROM (SELECT link_id, sum(clicks)::int8 AS clicks FROM (
         SELECT link_id, clicks FROM monthly_stats WHERE month >= $6::date AND month < $7::date
         UNION ALL
         SELECT link_id, clicks FROM daily_stats WHERE day >= $8::date AND day < $6::date
         UNION ALL
         SELECT link_id, clicks FROM daily_stats WHERE day >= $7::date AND day < $9::date`

const overviewEdges = `
         UNION ALL
         SELECT link_id, clicks FROM hourly_stats WHERE $10::timestamptz < $11::timestamptz AND hour >= $10 AND hour < $11
         UNION ALL
         SELECT link_id, clicks FROM hourly_stats WHERE $12::timestamptz < $13::timestamptz AND hour >= $12 AND hour < $13`

const overviewTail = `) r
       GROUP BY link_id HAVING sum(clicks) > 0) t
 JOIN links l ON l.id = t.link_id
 JOIN domains dm ON dm.id = l.domain_id
 WHERE l.deleted_at IS NULL
 ORDER BY 3 DESC, 2 LIMIT $3)
UNION ALL
SELECT 3, '', extract(epoch FROM hour)::int8, clicks, bot_clicks, 0, ''
FROM hourly_totals WHERE hour >= $4 AND hour < $5
UNION ALL
SELECT 2, value, CASE dimension WHEN 'utm_source' THEN 0 WHEN 'utm_medium' THEN 1 ELSE 2 END::int8,
       sum(clicks)::int8, 0, 0, ''
FROM campaign_totals WHERE day BETWEEN $1::date AND $2::date
GROUP BY dimension, value`

// overviewDomainSQL is overviewSQL over the links of domain $6 only (/stats?domain=),
// a top link's clicks counted over whole UTC days [$7, $8) and the hours [$9, $10) and
// [$11, $12) around them (overviewDomainEdges; overviewDomainDaysSQL leaves them out).
// The totals tables hold all domains together, so it sums the domain's links' own
// rollups: its cost grows with the domain's links times days, unlike overviewSQL's.
//
// The domain is matched as a range, domain_id >= $6 AND domain_id <= $6, for the
// generic plan a prepared statement may switch to after five runs, which knows no $6.
// Once links has statistics, that plan took an equality to match links/domains (half
// of them with two domains), read every link's rollups over the range and joined them
// to the domain's links afterwards. A range with unknown bounds is assumed to match a
// few links, so the plan reads the domain's links by its index and each one's rollups
// by primary key, as the plans for a known $6 do.
const overviewDomainSQL = overviewDomainHead + overviewDomainEdges + overviewDomainTail

const overviewDomainDaysSQL = overviewDomainHead + overviewDomainTail

const overviewDomainHead = `
WITH dl AS (SELECT id FROM links WHERE domain_id >= $6 AND domain_id <= $6)
SELECT 1, '', (day - $1::date)::int8, sum(clicks)::int8, sum(unique_visitors)::int8, sum(bot_clicks)::int8, ''::text
FROM daily_stats WHERE day BETWEEN $1::date AND $2::date AND link_id IN (SELECT id FROM dl) GROUP BY day
UNION ALL
(SELECT 5, l.slug, t.clicks, 0, 0, 0, ''
 FROM (SELECT link_id, sum(clicks)::int8 AS clicks FROM (
         SELECT link_id, clicks FROM daily_stats WHERE day >= $7::date AND day < $8::date AND link_id IN (SELECT id FROM dl)`

const overviewDomainEdges = `
         UNION ALL
         SELECT link_id, clicks FROM hourly_stats WHERE $9::timestamptz < $10::timestamptz AND hour >= $9 AND hour < $10 AND link_id IN (SELECT id FROM dl)
         UNION ALL
         SELECT link_id, clicks FROM hourly_stats WHERE $11::timestamptz < $12::timestamptz AND hour >= $11 AND hour < $12 AND link_id IN (SELECT id FROM dl)`

const overviewDomainTail = `) r
       GROUP BY link_id HAVING sum(clicks) > 0) t
 JOIN links l ON l.id = t.link_id
 WHERE l.deleted_at IS NULL
 ORDER BY 3 DESC, 2 LIMIT $3)
UNION ALL
SELECT 3, '', extract(epoch FROM hour)::int8, sum(clicks)::int8, sum(bot_clicks)::int8, 0, ''
FROM hourly_stats WHERE hour >= $4 AND hour < $5 AND link_id IN (SELECT id FROM dl) GROUP BY hour
UNION ALL
SELECT 2, value, CASE dimension WHEN 'utm_source' THEN 0 WHEN 'utm_medium' THEN 1 ELSE 2 END::int8,
       sum(clicks)::int8, 0, 0, ''
FROM dimension_stats
WHERE dimension IN ('utm_source', 'utm_medium', 'utm_campaign') AND day BETWEEN $1::date AND $2::date
  AND link_id IN (SELECT id FROM dl)
GROUP BY dimension, value`

// overviewDimensions names the campaign dimensions by their number in overviewSQL.
var overviewDimensions = [...]string{"utm_source", "utm_medium", "utm_campaign"}

// wholeMonths returns the whole UTC months inside the dates [start, end] as [from, to)
// (first days of months); from == to == the day after end when there is none, so the
// partial-month arms of overviewSQL then cover the range alone.
func wholeMonths(start, end time.Time) (from, to time.Time) {
	from = time.Date(start.Year(), start.Month(), 1, 0, 0, 0, 0, time.UTC)
	if start.Day() != 1 {
		from = from.AddDate(0, 1, 0)
	}
	after := time.Date(end.Year(), end.Month(), end.Day()+1, 0, 0, 0, 0, time.UTC)
	to = time.Date(after.Year(), after.Month(), 1, 0, 0, 0, 0, time.UTC)
	if !from.Before(to) {
		return after, after
	}
	return from, to
}

type rawOverview struct {
	daily      []dayRow
	rangeHours []hourRow
	top        []TopLink
	dimensions []dimensionRow // campaign breakdowns over every link
}

// wholeUTCDays returns the whole UTC days inside [from, to) as [days, daysEnd) (UTC
// midnights; empty when days == daysEnd), so that [from, days) and [daysEnd, to) are
// the hours left before and after them.
func wholeUTCDays(from, to time.Time) (days, daysEnd time.Time) {
	const day = 24 * time.Hour
	days = from.UTC().Truncate(day) // time's zero is a UTC midnight
	if days.Before(from) {
		days = days.Add(day)
	}
	if days.After(to) {
		days = to
	}
	daysEnd = to.UTC().Truncate(day)
	if daysEnd.Before(days) {
		daysEnd = days
	}
	return days, daysEnd
}

// overviewQuery returns the statement that answers q's overview and its arguments.
func overviewQuery(q rangeQuery) (string, []any) {
	from, to := q.bounds()
	days, daysEnd := wholeUTCDays(from, to)
	seriesTo := to
	if q.utc() {
		seriesTo = from // a UTC series comes from the daily rollups alone
	}
	edges := !days.Equal(from) || !daysEnd.Equal(to)
	if q.domain != 0 {
		args := []any{q.start, q.end, q.limit, from, seriesTo, q.domain, days, daysEnd}
		if !edges {
			return overviewDomainDaysSQL, args
		}
		return overviewDomainSQL, append(args, from, days, daysEnd, to)
	}
	monthsFrom, monthsTo := wholeMonths(days, daysEnd.AddDate(0, 0, -1))
	args := []any{q.start, q.end, q.limit, from, seriesTo, monthsFrom, monthsTo, days, daysEnd}
	if !edges {
		return overviewDaysSQL, args
	}
	return overviewSQL, append(args, from, days, daysEnd, to)
}

func (s *store) overview(ctx context.Context, q rangeQuery) (rawOverview, error) {
	sql, args := overviewQuery(q)
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return rawOverview{}, fmt.Errorf("query overview: %w", err)
	}
	defer rows.Close()
	var r rawOverview
	var (
		kind       int
		slug, host string
		a, b, c, d int64
	)
	for rows.Next() {
		if err := rows.Scan(&kind, &slug, &a, &b, &c, &d, &host); err != nil {
			return rawOverview{}, fmt.Errorf("scan overview: %w", err)
		}
		switch kind {
		case kindDay:
			r.daily = append(r.daily, dayRow{index: int(a), clicks: b, uniques: c, botClicks: d})
		case kindRangeHour:
			r.rangeHours = append(r.rangeHours, hourRow{hour: time.Unix(a, 0), clicks: b, botClicks: c})
		case kindTopLink:
			r.top = append(r.top, TopLink{Slug: slug, Domain: host, Clicks: a})
		case kindDimension:
			if a < 0 || a >= int64(len(overviewDimensions)) {
				return rawOverview{}, fmt.Errorf("overview: campaign dimension %d", a)
			}
			r.dimensions = append(r.dimensions, dimensionRow{dimension: overviewDimensions[a], value: slug, clicks: b})
		}
	}
	if err := rows.Err(); err != nil {
		return rawOverview{}, fmt.Errorf("read overview: %w", err)
	}
	return r, nil
}

// scanKindRow decodes a row of the UNION ALL statements here — kind, two text
// columns (dimension and value), four integers — from its raw values into n; n[1]
// and n[2] are left alone (the caller reads the text from vals). pgx's Scan would
// cost an interface slice and reflection per row, and a read is hundreds of rows.
func scanKindRow(fields []pgconn.FieldDescription, vals [][]byte, n *[7]int64) error {
	if len(vals) != len(n) || len(fields) != len(n) {
		return fmt.Errorf("%d columns", len(vals))
	}
	for i := range n {
		if i == 1 || i == 2 {
			continue // text columns
		}
		v, err := rawInt(fields[i], vals[i])
		if err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
		n[i] = v
	}
	return nil
}

// rawInt decodes an integer column in either wire format.
func rawInt(fd pgconn.FieldDescription, b []byte) (int64, error) {
	if fd.Format == pgx.BinaryFormatCode {
		switch len(b) {
		case 2:
			return int64(int16(binary.BigEndian.Uint16(b))), nil
		case 4:
			return int64(int32(binary.BigEndian.Uint32(b))), nil
		case 8:
			return int64(binary.BigEndian.Uint64(b)), nil
		}
		return 0, fmt.Errorf("integer of %d bytes", len(b))
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// dimensionName returns the constant for a dimension column value, so the eight
// names are not allocated again for every row.
func dimensionName(b []byte) string {
	switch string(b) {
	case "country":
		return "country"
	case "referer":
		return "referer"
	case "browser":
		return "browser"
	case "os":
		return "os"
	case "device":
		return "device"
	case "utm_source":
		return "utm_source"
	case "utm_medium":
		return "utm_medium"
	case "utm_campaign":
		return "utm_campaign"
	}
	return string(b)
}
