package stats

import (
	"context"
	"fmt"
	"time"

	"github.com/hop-dev/hop/internal/problem"
)

// recentHoursSQL reads the all-links totals (migration 00025) of the hours [$1, $2).
const recentHoursSQL = `SELECT hour, clicks, bot_clicks FROM hourly_totals WHERE hour >= $1 AND hour < $2`

// RecentHours returns every link's clicks per hour over the last n hours (1 to 168),
// oldest first, the current hour (so far) last, zero-filled and labelled in UTC
// (RFC 3339): the overview's counterpart of a link's Hourly.
func (r *Reader) RecentHours(ctx context.Context, n int) ([]HourStats, error) {
	if n < 1 || n > 168 {
		return nil, problem.Invalid("hours must be between 1 and 168")
	}
	to := r.recentEnd()
	from := to.Add(-time.Duration(n) * time.Hour)
	labels := formatEach(n, time.RFC3339, func(i int) time.Time { return from.Add(time.Duration(i) * time.Hour).UTC() })
	out := make([]HourStats, n)
	for i := range out {
		out[i].Hour = labels[i]
	}
	rows, err := r.pool.Query(ctx, recentHoursSQL, from, to)
	if err != nil {
		return nil, fmt.Errorf("read recent hours: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			hour         time.Time
			clicks, bots int64
		)
		if err := rows.Scan(&hour, &clicks, &bots); err != nil {
			return nil, fmt.Errorf("read recent hours: %w", err)
		}
		if i := int(hour.Sub(from) / time.Hour); i >= 0 && i < n {
			out[i].Clicks, out[i].BotClicks = clicks, bots
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read recent hours: %w", err)
	}
	return out, nil
}
