package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// result is one scenario's row of the table.
type result struct {
	name     string
	answered int64 // redirects answered with a 3xx
	during   int64 // of those, answered while the fault lasted
	inFlight int64 // requests whose connection broke before the answer
	stored   int64 // click_logs rows
	counted  int64 // daily_stats clicks + bot_clicks
	lost     int64 // answered but not stored, or stored but not counted
	dup      int64 // stored or counted more than once
	extra    int64 // stored clicks of requests in flight when hop died (allowed)
	recover  time.Duration
	problems []string // what went wrong besides the counts
	info     []string // what hop reported that is worth knowing
}

// ok says the scenario kept every answered click exactly once.
func (r result) ok() bool { return r.lost == 0 && r.dup == 0 && len(r.problems) == 0 }

// verify compares, per link, the answered redirects with click_logs (by the request
// number each row carries), the rollups and links.total_clicks.
func (e *env) verify(ctx context.Context, name string) (result, error) {
	res := result{name: name}
	outc := e.load.outcomes()
	ids := map[int64]int{} // link id -> index into slugs
	rows, err := e.pool.Query(ctx, `SELECT id, slug FROM links`)
	if err != nil {
		return res, err
	}
	bySlug := map[string]int{}
	for i, s := range e.load.slugs {
		bySlug[s] = i
	}
	for rows.Next() {
		var id int64
		var slug string
		if err := rows.Scan(&id, &slug); err != nil {
			return res, err
		}
		ids[id] = bySlug[slug]
	}
	if err := rows.Err(); err != nil {
		return res, err
	}

	nLinks := len(e.load.slugs)
	stored := make([]int64, nLinks)
	seen := make(map[int64]int64, len(outc))
	var badLink, phantom int64
	rows, err = e.pool.Query(ctx, `SELECT link_id, referer FROM click_logs`)
	if err != nil {
		return res, err
	}
	for rows.Next() {
		var id int64
		var ref string
		if err := rows.Scan(&id, &ref); err != nil {
			return res, err
		}
		res.stored++
		seq, err := parseMarker(ref)
		if err != nil || seq < 0 || seq >= int64(len(outc)) {
			phantom++
			continue
		}
		li, ok := ids[id]
		if !ok || li != e.load.linkOf(seq) {
			badLink++
		}
		stored[li]++
		seen[seq]++
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	for seq, o := range outc {
		n := seen[int64(seq)]
		if n > 1 {
			res.dup += n - 1
		}
		switch o {
		case answered:
			res.answered++
			if n == 0 {
				res.lost++
			}
		case inFlight:
			res.inFlight++
			if n > 0 {
				res.extra++
			}
		default:
			if n > 0 { // refused or never sent, yet stored
				phantom++
			}
		}
	}
	if phantom > 0 {
		res.dup += phantom
		res.problems = append(res.problems, fmt.Sprintf("%d stored clicks match no request that could have been captured", phantom))
	}
	if badLink > 0 {
		res.problems = append(res.problems, fmt.Sprintf("%d stored clicks are on the wrong link", badLink))
	}

	// Rollups and totals against what is stored, per link.
	type agg struct{ counted, humans, total int64 }
	per := make([]agg, nLinks)
	rows, err = e.pool.Query(ctx, `
SELECT l.id, l.total_clicks,
       coalesce((SELECT sum(d.clicks + d.bot_clicks) FROM daily_stats d WHERE d.link_id = l.id), 0)::int8,
       coalesce((SELECT sum(d.clicks) FROM daily_stats d WHERE d.link_id = l.id), 0)::int8
FROM links l`)
	if err != nil {
		return res, err
	}
	for rows.Next() {
		var id, total, counted, humans int64
		if err := rows.Scan(&id, &total, &counted, &humans); err != nil {
			return res, err
		}
		li, ok := ids[id]
		if !ok {
			continue
		}
		per[li] = agg{counted, humans, total}
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	var humansStored = make([]int64, nLinks)
	hrows, err := e.pool.Query(ctx, `SELECT link_id, count(*) FILTER (WHERE NOT is_bot) FROM click_logs GROUP BY 1`)
	if err != nil {
		return res, err
	}
	for hrows.Next() {
		var id, n int64
		if err := hrows.Scan(&id, &n); err != nil {
			return res, err
		}
		if li, ok := ids[id]; ok {
			humansStored[li] = n
		}
	}
	if err := hrows.Err(); err != nil {
		return res, err
	}
	for i, a := range per {
		res.counted += a.counted
		if d := a.counted - stored[i]; d > 0 {
			res.dup += d
		} else {
			res.lost -= d
		}
		// links.total_clicks counts humans (bots are in daily_stats.bot_clicks).
		if d := a.total - humansStored[i]; d > 0 {
			res.dup += d
			res.problems = append(res.problems, fmt.Sprintf("link %s: total_clicks %d, %d human clicks stored", e.load.slugs[i], a.total, humansStored[i]))
		} else if d < 0 {
			res.lost -= d
			res.problems = append(res.problems, fmt.Sprintf("link %s: total_clicks %d, %d human clicks stored", e.load.slugs[i], a.total, humansStored[i]))
		}
		if a.humans != humansStored[i] {
			res.problems = append(res.problems, fmt.Sprintf("link %s: daily_stats.clicks %d, %d human clicks stored", e.load.slugs[i], a.humans, humansStored[i]))
		}
	}
	return res, nil
}

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }
